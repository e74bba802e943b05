"""Running a stream's request chains: one, one per `for_each` value, or one per parent row.

Chains run one after another, or up to ``max_concurrency`` at once on worker threads.
Either way the caller sees one ordered feed of events: every page of a chain arrives in
that chain's order, complete, followed by the chain's end (or its error). Workers are
bounded by a small queue, so a slow consumer (the Singer writer) holds them back instead
of letting pages pile up in memory. A child stream keeps its workers across parent pages
(:class:`ChainPool`): the rows of the next parent page start while the current page's
chains finish, and are read, in turn, after them.

Where each chain stands for STATE is ``resume``'s job.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import typing as t

from tap_rhttp.config.templates import render_spec, template_env, template_sources
from tap_rhttp.config.windows import window_value
from tap_rhttp.errors import RHTTPError
from tap_rhttp.http.client import Connections

if t.TYPE_CHECKING:
    import datetime

    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.paging.paginator import PageRequest
    from tap_rhttp.redact import Redactor
    from tap_rhttp.run.chain import Chain, Page
    from tap_rhttp.types import JSON
_STOP_POLL = 0.1


@dataclasses.dataclass
class ChainTask:
    """One chain to run: a key for STATE, the rendered spec, and where to start."""

    key: str
    label: str
    spec: RequestSpec | None = None
    error: Exception | None = None  # rendering failed: the chain fails before any request
    start: PageRequest | None = None
    done: int = 0
    row: dict[str, JSON] | None = None
    skip: int = 0  # records of the resumed page already emitted (BATCH mode)


@dataclasses.dataclass
class Event:
    """A page of a chain, or a chain's end (``page is None``), or its failure."""

    task: ChainTask
    page: Page | None = None
    error: Exception | None = None
    #: The next event of the same feed is already waiting (fan-out): the caller may
    #: handle it before writing out what this one produced (one write for several pages).
    more: bool = False


def chain_tasks(
    spec: RequestSpec,
    context: t.Mapping[str, JSON],
    redactor: Redactor,
    *,
    bookmark: JSON = None,
    rows: t.Sequence[tuple[int, dict[str, JSON]]] = (),
    windows: t.Sequence[tuple[datetime.datetime, datetime.datetime]] = (),
    now: float | None = None,
) -> list[ChainTask]:
    """The chains a sync of `spec` runs: one per parent row (keyed by its index in the
    parent page), one per `for_each` value, one per time window (keyed by its start), or
    one. Each gets its rendered spec (or the error rendering raised); secrets that only
    exist once rendered (from `env` or `secrets`) are taught to `redactor`. `now` is the
    run's instant, which ``r.now()`` returns in every template.
    """

    from_data, from_secrets = template_sources(spec) if spec.templates else ((), ())

    def task(key: str, label: str, env: dict[str, JSON], row: JSON = None) -> ChainTask:
        try:
            rendered = render_spec(spec, env, now=now)
        except RHTTPError as exc:
            return ChainTask(key=key, label=label, error=exc, row=row)
        if rendered is not spec:
            redactor.learn(rendered, from_data=from_data, from_secrets=from_secrets)
        return ChainTask(key=key, label=label, spec=rendered, row=row)

    if spec.parent is not None:
        return [
            task(
                str(index),
                f"parent row {index}",
                template_env(spec, context, row=dict(row), bookmark=bookmark),
                dict(row),
            )
            for index, row in rows
        ]
    if spec.windows is not None:
        out = []
        for start, end in windows:
            window = window_value(start, end)
            env = template_env(spec, context, window=window, bookmark=bookmark)
            out.append(
                task(str(window["start"]), f"window {window['start']}..{window['end']}", env)
            )
        return out
    if spec.for_each is not None:
        return [
            task(
                str(index),
                f"for_each[{index}]",
                template_env(spec, context, item=item, bookmark=bookmark),
            )
            for index, item in enumerate(spec.for_each)
        ]
    return [task("-", "", template_env(spec, context, bookmark=bookmark))]


#: Makes a task's chain (the task has its rendered spec); ``inline`` is True when the
#: chain runs on the caller's thread (it may then read ahead: on fan-out workers the next
#: chain's pages already overlap the caller's work, and a helper thread per chain would
#: only add a hand-over per page). The chain sends through the given connection pools,
#: those of the chains run before it on the same thread (one worker, or the caller's
#: chains one after another): one connection per worker, not one per chain.
MakeChain = t.Callable[["ChainTask", bool, Connections], "Chain"]


def _run_one(
    task: ChainTask, make_chain: MakeChain, connections: Connections, *, inline: bool
) -> t.Generator[Event, None, None]:
    if task.error is not None:
        yield Event(task, error=task.error)
        return
    assert task.spec is not None
    chain = make_chain(task, inline, connections)
    try:
        for page in chain.pages(task.start, task.done):
            yield Event(task, page=page)
    except RHTTPError as exc:
        yield Event(task, error=exc)
        return
    finally:
        chain.close()
    yield Event(task)


def run_chains(
    tasks: t.Sequence[ChainTask],
    make_chain: MakeChain,
    max_concurrency: int = 1,
) -> t.Generator[Event, None, None]:
    """Run every task's chain and feed their events, in order per chain.

    With one task, or ``max_concurrency`` 1, the chains run one after another on the
    caller's thread; else on up to ``max_concurrency`` worker threads (a
    :class:`ChainPool` for these tasks alone). A chain's RHTTPError arrives as an event
    (the caller decides: fail or skip); any other exception propagates. Closing the
    iterator stops the workers.
    """
    if max_concurrency <= 1 or len(tasks) <= 1:
        connections = Connections()  # each chain is closed before the next one starts
        try:
            for task in tasks:
                yield from _run_one(task, make_chain, connections, inline=True)
        finally:
            connections.close()
        return
    pool = ChainPool(make_chain, max_concurrency)
    try:
        yield from pool.submit(tasks).events()
    finally:
        pool.close()


class Batch:
    """Tasks handed to a :class:`ChainPool` together, and the events of their chains.

    The events wait in a small queue of the batch's own: workers that run ahead of the
    reader are held back once it is full.
    """

    def __init__(self, pool: ChainPool, tasks: t.Sequence[ChainTask], size: int) -> None:
        self.tasks = list(tasks)
        self._pool = pool
        self._feed: queue.Queue[Event | BaseException] = queue.Queue(maxsize=size)
        self._over = threading.Event()  # read to the end, or given up
        self._read = False

    @property
    def over(self) -> bool:
        """Whether the batch was read to its end or cancelled (its workers move on)."""
        return self._over.is_set()

    def put(self, item: Event | BaseException) -> bool:
        """Hand over an event (a worker); False when nobody will read it any more."""
        while not self._over.is_set():
            try:
                self._feed.put(item, timeout=_STOP_POLL)
                return True
            except queue.Full:
                continue
        return False

    def events(self) -> t.Generator[Event, None, None]:
        """The batch's events, in order per chain, as its chains produce them.

        Each event's ``more`` says whether the next one is already waiting. Read once;
        leaving early cancels the batch.

        Raises:
            RuntimeError: an earlier batch of the pool is still unread (the pool starts
                batches in order, so reading out of order could wait forever).
        """
        if self._read:
            raise RuntimeError("a batch's events are read once")
        self._pool.check_order(self)
        self._read = True
        finished = 0
        try:
            while finished < len(self.tasks):
                item = self._feed.get()
                if isinstance(item, BaseException):
                    raise item
                if item.page is None:
                    finished += 1
                item.more = not self._feed.empty()
                yield item
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Nobody will read (more of) the batch: its chains stop at their next page, and
        those not started yet never start."""
        self._over.set()
        while True:
            try:
                item = self._feed.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Event) and item.page is not None:
                item.page.close()


class ChainPool:
    """Up to `width` worker threads that run the chains of one batch of tasks after another.

    The workers outlive a batch: a child stream hands over the rows of the next parent
    page while the current page's chains are still running, as soon as workers are free.
    Batches start in the order they are submitted (every chain of a batch has started
    before any chain of the next), and must be read in that order. Each worker keeps its
    connections (:class:`~tap_rhttp.http.client.Connections`) for the chains it runs.
    Close the pool when done: it cancels what is unread and ends the workers.

    Args:
        make_chain: builds a task's chain (on the worker, with its connections).
        width: the most chains running at once (`max_concurrency`).
    """

    def __init__(self, make_chain: MakeChain, width: int) -> None:
        self._make_chain = make_chain
        self._width = width
        self._queue: queue.SimpleQueue[tuple[Batch, ChainTask] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._batches: list[Batch] = []  # submitted, oldest first, until read or cancelled

    def submit(self, tasks: t.Sequence[ChainTask]) -> Batch:
        """Start these tasks' chains after those of every earlier batch; read its events
        with :meth:`Batch.events`, after the earlier batches'."""
        batch = Batch(self, tasks, self._width * 2)
        self._batches = [b for b in self._batches if not b.over]
        self._batches.append(batch)
        for task in batch.tasks:
            self._queue.put((batch, task))
        wanted = min(self._width, len(self._workers) + len(batch.tasks))
        while len(self._workers) < wanted:
            thread = threading.Thread(
                target=self._work, name=f"rhttp-chain-{len(self._workers)}", daemon=True
            )
            self._workers.append(thread)
            thread.start()
        return batch

    def check_order(self, batch: Batch) -> None:
        """Raise RuntimeError when a batch submitted before `batch` is still unread."""
        for earlier in self._batches:
            if earlier is batch:
                return
            if not earlier.over:
                raise RuntimeError("a pool's batches are read in the order they were submitted")

    def close(self) -> None:
        """Cancel every unread batch and end the workers (each closes its connections)."""
        for batch in self._batches:
            batch.cancel()
        self._batches = []
        for _ in self._workers:
            self._queue.put(None)
        for thread in self._workers:
            thread.join(timeout=5)
        self._workers = []

    def _work(self) -> None:
        connections = Connections()
        try:
            while (item := self._queue.get()) is not None:
                batch, task = item
                if batch.over:
                    continue
                events = _run_one(task, self._make_chain, connections, inline=False)
                try:
                    for event in events:
                        if not batch.put(event):  # cancelled: the chain stops here
                            if event.page is not None:
                                event.page.close()
                            break
                except BaseException as exc:  # a bug, not an HTTP failure: hand it over
                    batch.put(exc)
                finally:
                    events.close()
        finally:
            connections.close()


_Item = t.TypeVar("_Item")


class Lookahead(t.Generic[_Item]):
    """An iterator whose next item can be looked at before it is taken.

    A failure to get the next item while looking is raised when that item is taken, so
    looking never changes where an error surfaces in the caller's order of work.
    """

    def __init__(self, items: t.Iterable[_Item]) -> None:
        self._items = iter(items)
        self._next: list[_Item] = []
        self._error: Exception | None = None
        self._ended = False

    def __iter__(self) -> Lookahead[_Item]:
        return self

    def __next__(self) -> _Item:
        if self._next:
            return self._next.pop()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._ended:
            raise StopIteration
        return next(self._items)

    def peek(self) -> _Item | None:
        """The next item, left to be taken; None at the end (or when getting it failed)."""
        if not self._next and self._error is None and not self._ended:
            try:
                self._next.append(next(self._items))
            except StopIteration:
                self._ended = True
            except Exception as exc:
                self._error = exc
        return self._next[0] if self._next else None

    def close(self) -> None:
        """Close the underlying iterator, if it is a generator."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()
