"""Running a stream's request chains: one, one per `for_each` value, or one per parent row.

Chains run one after another, or up to ``max_concurrency`` at once on worker threads.
Either way the caller sees one ordered feed of events: every page of a chain arrives in
that chain's order, complete, followed by the chain's end (or its error). Workers are
bounded by a small queue, so a slow consumer (the Singer writer) holds them back instead
of letting pages pile up in memory.

The resume position is kept here too, as plain data (:class:`ResumeState`): after each
completely emitted page, the next request of every chain in progress, and which chains
are finished. It holds URLs and params only, never secrets, and a hash of the spec so a
changed config never resumes from a stale position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import threading
import typing as t

import orjson

from tap_rhttp.errors import RHTTPError
from tap_rhttp.request import PageRequest
from tap_rhttp.templates import render_spec, template_env

if t.TYPE_CHECKING:
    from tap_rhttp.chain import Chain, Page
    from tap_rhttp.redact import Redactor
    from tap_rhttp.spec import RequestSpec

JSON = t.Any
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
    row: dict[str, JSON] | None = None,
) -> list[ChainTask]:
    """The chains a sync of `spec` runs: one for a parent row, one per `for_each` value,
    or one. Each gets its rendered spec (or the error rendering raised); secrets that only
    exist once rendered (from `env` or `secrets`) are taught to `redactor`.
    """

    def task(key: str, label: str, env: dict[str, JSON], row: JSON = None) -> ChainTask:
        try:
            rendered = render_spec(spec, env)
        except RHTTPError as exc:
            return ChainTask(key=key, label=label, error=exc, row=row)
        if rendered is not spec:
            redactor.learn(rendered)
        return ChainTask(key=key, label=label, spec=rendered, row=row)

    if spec.parent is not None:
        parent_row = dict(row or {})
        env = template_env(spec, context, row=parent_row, bookmark=bookmark)
        return [task("row", "parent row", env, parent_row)]
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


def _run_one(task: ChainTask, make_chain: t.Callable[[RequestSpec], Chain]) -> t.Iterator[Event]:
    if task.error is not None:
        yield Event(task, error=task.error)
        return
    assert task.spec is not None
    chain = make_chain(task.spec)
    try:
        for page in chain.pages(task.start, task.done):
            yield Event(task, page=page)
    except RHTTPError as exc:
        yield Event(task, error=exc)
        return
    finally:
        chain.close()
    yield Event(task)


def runs_inline(tasks: t.Sized, max_concurrency: int) -> bool:
    """Whether :func:`run_chains` runs the tasks one after another on the caller's thread
    (its chains may then read ahead; on fan-out workers they need not)."""
    return max_concurrency <= 1 or len(tasks) <= 1


def run_chains(
    tasks: t.Sequence[ChainTask],
    make_chain: t.Callable[[RequestSpec], Chain],
    max_concurrency: int = 1,
) -> t.Generator[Event, None, None]:
    """Run every task's chain and feed their events, in order per chain.

    A chain's RHTTPError arrives as an event (the caller decides: fail or skip); any
    other exception propagates. Closing the iterator stops the workers.
    """
    if runs_inline(tasks, max_concurrency):
        for task in tasks:
            yield from _run_one(task, make_chain)
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
        while not stop.is_set():
            try:
                task = pending.get_nowait()
            except queue.Empty:
                return
            try:
                for event in _run_one(task, make_chain):
                    if not put(event):
                        return
            except BaseException as exc:  # a bug, not an HTTP failure: hand it over
                put(exc)
                return

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


# --------------------------------------------------------------------------- resume


def spec_hash(spec: RequestSpec, redactor: Redactor) -> str:
    """A short, secret-free fingerprint of a spec, to detect a changed config."""
    shown = redactor.value(dict(spec.raw))
    shown.pop("auth", None)
    text = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:16]


class ResumeState:
    """Where each chain of a stream stands, as it goes into STATE.

    Shape (under the stream's state, key ``rhttp``)::

        {"spec": "<hash>", "chains": {"<key>": {"url": ..., "params": {...},
         "override": [...], "requests": 3}}, "done": ["<key>", ...]}
    """

    KEY = "rhttp"

    def __init__(self, spec: RequestSpec, redactor: Redactor, *, track_done: bool) -> None:
        self.spec = spec
        self.redactor = redactor
        self.hash = spec_hash(spec, redactor)
        self.track_done = track_done
        self.chains: dict[str, dict[str, JSON]] = {}
        self.done: list[str] = []

    def load(self, saved: JSON, logger: t.Any) -> None:
        """Adopt a saved position, unless the spec changed since it was saved."""
        if not isinstance(saved, dict):
            return
        if saved.get("spec") != self.hash:
            logger.warning(
                "stream %s: STATE holds a resume position for a different version of this "
                "spec (the config changed); starting from the first page.",
                self.spec.name,
            )
            return
        chains = saved.get("chains")
        self.chains = dict(chains) if isinstance(chains, dict) else {}
        done = saved.get("done")
        self.done = [str(d) for d in done] if isinstance(done, list) else []

    def start_of(self, key: str, spec: RequestSpec) -> tuple[PageRequest | None, int]:
        """The saved next request of a chain, with the spec's own params merged back."""
        saved = self.chains.get(key)
        if not saved:
            return None, 0
        params = {**dict(spec.params), **saved.get("params", {})}
        request = PageRequest(
            url=str(saved["url"]),
            params=params,
            override=frozenset(saved.get("override", ())),
        )
        return request, int(saved.get("requests", 0))

    def _secret_free(self, request: PageRequest, spec: RequestSpec) -> dict[str, JSON] | None:
        base, _, query = request.url.partition("?")
        if self.redactor.text(base) != base:
            return None  # a secret in the path: this position cannot be saved safely
        parts = [
            part
            for part in query.split("&")
            if part
            and not self.redactor.is_sensitive_param(part.split("=", 1)[0])
            and self.redactor.text(part) == part
        ]
        url = f"{base}?{'&'.join(parts)}" if parts else base
        own = dict(spec.params)
        params = {
            k: v
            for k, v in request.params.items()
            if own.get(k, object()) != v
            and not self.redactor.is_sensitive_param(k)
            and (not isinstance(v, str) or self.redactor.text(v) == v)
        }
        override = sorted(k for k in request.override if not self.redactor.is_sensitive_param(k))
        return {"url": url, "params": params, "override": override}

    def advance(self, key: str, page: Page, spec: RequestSpec) -> None:
        """Record a completely emitted page: the chain's next request, or its end."""
        if page.next is None:
            self.finish(key)
            return
        saved = self._secret_free(page.next, spec)
        if saved is None:
            self.chains.pop(key, None)
            return
        saved["requests"] = page.number
        self.chains[key] = saved

    def finish(self, key: str) -> None:
        """A chain is over (or skipped)."""
        self.chains.pop(key, None)
        if self.track_done and key not in self.done:
            self.done.append(key)

    def to_state(self) -> dict[str, JSON] | None:
        """The STATE entry, or None when nothing is in progress."""
        if not self.chains and not self.done:
            return None
        return {"spec": self.hash, "chains": dict(self.chains), "done": list(self.done)}
