"""Running a stream's request chains: one, one per `for_each` value, or one per parent row.

Chains run one after another, or up to ``max_concurrency`` at once on worker threads.
Either way the caller sees one ordered feed of events: every page of a chain arrives in
that chain's order, complete, followed by the chain's end (or its error). Workers are
bounded by a small queue, so a slow consumer (the Singer writer) holds them back instead
of letting pages pile up in memory.

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
) -> t.Iterator[Event]:
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
    caller's thread; else on up to ``max_concurrency`` worker threads. A chain's
    RHTTPError arrives as an event (the caller decides: fail or skip); any other
    exception propagates. Closing the iterator stops the workers.
    """
    if max_concurrency <= 1 or len(tasks) <= 1:
        connections = Connections()  # each chain is closed before the next one starts
        try:
            for task in tasks:
                yield from _run_one(task, make_chain, connections, inline=True)
        finally:
            connections.close()
        return
    feed: queue.Queue[Event | BaseException] = queue.Queue(maxsize=max_concurrency * 2)
    stop = threading.Event()
    pending: queue.SimpleQueue[ChainTask] = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)

    def put(item: Event | BaseException) -> bool:
        while not stop.is_set():
            try:
                feed.put(item, timeout=_STOP_POLL)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        connections = Connections()
        try:
            while not stop.is_set():
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    for event in _run_one(task, make_chain, connections, inline=False):
                        if not put(event):
                            return
                except BaseException as exc:  # a bug, not an HTTP failure: hand it over
                    put(exc)
                    return
        finally:
            connections.close()

    workers = [
        threading.Thread(target=worker, name=f"rhttp-chain-{i}", daemon=True)
        for i in range(min(max_concurrency, len(tasks)))
    ]
    for thread in workers:
        thread.start()
    finished = 0
    try:
        while finished < len(tasks):
            item = feed.get()
            if isinstance(item, BaseException):
                raise item
            if item.page is None:
                finished += 1
            yield item
    finally:
        stop.set()
        for thread in workers:
            thread.join(timeout=5)
