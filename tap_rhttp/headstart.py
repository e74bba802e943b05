"""A head start: a sync's first requests go out while singer-sdk is still importing.

Importing singer-sdk (with fsspec, jsonschema, referencing, joblib...) takes a third of
a second or more before a tap can make its first request, and on a short or
latency-bound sync that is much of the run. r.http requests need none of it: reading
the config, validating it and running the request chains only take this package,
``requests`` and ``orjson``. So the console script (``tap_rhttp.main``) first reads the
command line and, for a plain sync, starts the first stream's chains on threads; then it
imports the tap. When that stream's sync begins, it takes the chains over, with every
page they fetched meanwhile; discovery's schema sample is their first page.

Nothing changes in what is emitted: the stream only takes the chains over when they are
exactly the chains it would have started itself (same keys, same rendered specs
compared by :meth:`RequestSpec.fingerprint`, no resume position), with the same config.
Records and STATE are still produced by the stream, page by page, in chain order.

A head start is only taken when it is certain to be used, because its requests are made
before the tap has read everything:

- the command line is a plain sync: ``--config FILE`` (one or more), optionally
  ``--state FILE`` and ``--catalog FILE``, nothing else (no ``ENV`` config, no
  ``--discover``, ``--test``, ``--about``, ``--explain``);
- the config passes :func:`~tap_rhttp.spec.load_specs` (every check of the tap's own,
  which accepts nothing singer-sdk's schema check rejects: ``tests/test_config_agreement.py``)
  and sets none of singer-sdk's built-in settings (``stream_maps``...), which only the SDK
  checks, after importing;
- the stream is the first the sync runs (with a catalog: the first top-level stream that
  is selected or has a selected child, and it must be explicitly ``selected``), it has
  no ``parent``, its method is GET or HEAD (safe methods, RFC 9110 §9.2.1), its
  templates do not read ``bookmark``, and STATE holds no resume position for it.

Otherwise the tap starts as before. If the tap ends up not taking the chains over (a
config that differs by then, an earlier failure), they are stopped, their pages are
dropped unseen, and one log line says how many pages went unused. Until the stream
takes over, at most :data:`MAX_PAGES` pages and :data:`MAX_BYTES` bytes of bodies wait
in memory; after, the usual bound of the fan-out applies.

Logging is not set up yet when the first requests go out. Records made until then
(urllib3's request lines at DEBUG, the chains' retry warnings) are redacted and held,
then written once singer-sdk has set up logging, at the level it was configured with.

Rejected: importing singer-sdk lazily or in pieces (its package ``__init__`` imports
everything), and fetching only the discovery sample early (it saves one request, not
the import).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import decimal
import json
import logging
import threading
import typing as t
from pathlib import Path

from tap_rhttp.chain import Chain, ChainStats
from tap_rhttp.errors import ConfigErrors
from tap_rhttp.fanout import (
    ChainTask,
    Event,
    ResumeState,
    chain_tasks,
    run_chains,
    runs_inline,
)
from tap_rhttp.ratelimit import RateLimiter
from tap_rhttp.redact import RedactingFilter, build_redactor
from tap_rhttp.spec import SDK_SETTINGS, RequestSpec, load_specs, plain_json
from tap_rhttp.templates import spec_reads, template_context

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tap_rhttp.chain import Page
    from tap_rhttp.redact import Redactor

JSON = t.Any

#: Pages a head start holds before its stream takes them over.
MAX_PAGES = 64
#: Body bytes a head start holds before its stream takes them over.
MAX_BYTES = 4 * 1024 * 1024
#: Options of a plain sync, each followed by a file path.
_PATH_OPTIONS = ("--config", "--state", "--catalog")


@dataclasses.dataclass
class Plan:
    """What a head start would run: the config as read, its specs, and the stream."""

    config: dict[str, JSON]
    specs: list[RequestSpec]
    spec: RequestSpec


def _read_args(argv: Sequence[str]) -> dict[str, list[str]] | str:
    """The paths of a plain sync's options, or why the command line is not one."""
    found: dict[str, list[str]] = {option: [] for option in _PATH_OPTIONS}
    args = list(argv)
    while args:
        arg = args.pop(0)
        option, sep, value = arg.partition("=")
        if option not in found:
            return f"{arg!r} is not an option of a plain sync"
        if not sep:
            if not args:
                return f"{option} has no value"
            value = args.pop(0)
        found[option].append(value)
    if not found["--config"]:
        return "no --config"
    if "ENV" in found["--config"]:
        return "settings come from the environment (--config ENV)"
    if len(found["--state"]) > 1 or len(found["--catalog"]) > 1:
        return "--state or --catalog given twice"
    return found


def _load(path: str) -> JSON:
    """A JSON file as singer-sdk reads it (floats as Decimal)."""
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_float=decimal.Decimal)


def _selected(catalog: JSON) -> dict[str, bool | None] | str:
    """Each catalog stream's explicit `selected` flag (None: not stated)."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        return "the catalog has no `streams` list"
    flags: dict[str, bool | None] = {}
    for entry in catalog["streams"]:
        if not isinstance(entry, dict):
            return "a catalog stream is not an object"
        name = entry.get("tap_stream_id") or entry.get("stream")
        flag: bool | None = None
        for meta in entry.get("metadata") or []:
            if isinstance(meta, dict) and meta.get("breadcrumb") == []:
                values = meta.get("metadata") or {}
                selected = values.get("selected")
                flag = selected if isinstance(selected, bool) else None
                if values.get("inclusion") == "unsupported":
                    flag = False
        if isinstance(name, str):
            flags[name] = flag
    return flags


def _first_stream(specs: list[RequestSpec], catalog: JSON) -> RequestSpec | str:
    """The stream the sync runs first (singer-sdk syncs top-level streams in order)."""
    top = [spec for spec in specs if spec.parent is None]
    if not top:
        return "no top-level stream"
    if catalog is None:
        return top[0]
    flags = _selected(catalog)
    if isinstance(flags, str):
        return flags
    children: dict[str, list[str]] = collections.defaultdict(list)
    for spec in specs:
        if spec.parent is not None:
            children[spec.parent].append(spec.name)

    def runs(name: str) -> bool | None:
        """Whether the sync runs a stream: selected, or a parent of one (None: unsure)."""
        flag = flags.get(name)
        if flag is True:
            return True
        below = [runs(child) for child in children[name]]
        if True in below:
            return True
        return None if flag is None or None in below else False

    for spec in top:
        found = runs(spec.name)
        if found is None:
            return f"the catalog does not say whether stream {spec.name} runs"
        if found:
            if flags[spec.name] is not True:
                return f"stream {spec.name} runs only for its children"
            return spec
    return "no stream is selected"


def plan(argv: Sequence[str]) -> Plan | str:
    """The head start a command line allows, or why it allows none.

    Never raises for bad input: the tap reports that itself, before any request.
    """
    args = _read_args(argv)
    if isinstance(args, str):
        return args
    try:
        config: dict[str, JSON] = {}
        for path in args["--config"]:
            loaded = _load(path)
            if not isinstance(loaded, dict):
                return f"config file {path} is not a JSON object"
            config |= loaded
        state = _load(args["--state"][0]) if args["--state"] else {}
        catalog = _load(args["--catalog"][0]) if args["--catalog"] else None
    except (OSError, ValueError) as exc:
        return f"a file could not be read ({type(exc).__name__})"
    builtin = sorted(SDK_SETTINGS & set(config))
    if builtin:
        return f"singer-sdk settings are set ({', '.join(builtin)})"
    try:
        specs = load_specs(config)
    except ConfigErrors:
        return "the config has errors"
    spec = _first_stream(specs, catalog)
    if isinstance(spec, str):
        return spec
    if spec.method not in ("GET", "HEAD"):
        return f"stream {spec.name} uses {spec.method}, not a safe method"
    if spec.replication_key is not None and spec_reads(spec, "bookmark"):
        return f"stream {spec.name}'s templates read the bookmark"
    bookmarks = state.get("bookmarks") if isinstance(state, dict) else None
    saved = bookmarks.get(spec.name) if isinstance(bookmarks, dict) else None
    if isinstance(saved, dict) and saved.get(ResumeState.KEY) is not None:
        return f"STATE holds a resume position for stream {spec.name}"
    return Plan(config=config, specs=specs, spec=spec)


class _LogRelay(logging.Handler):
    """Keeps the head start's log records until a stream's logger takes them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.held: list[logging.LogRecord] = []
        self.target: logging.Logger | None = None

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.target is None:
                self.held.append(record)
                return
        self._forward(record, self.target)

    @staticmethod
    def _forward(record: logging.LogRecord, target: logging.Logger) -> None:
        if target.isEnabledFor(record.levelno):
            record.name = target.name
            target.handle(record)

    def attach(self, target: logging.Logger) -> None:
        """Send the held records, and every later one, to `target`."""
        with self.lock:  # type: ignore[union-attr]
            held, self.held = self.held, []
            self.target = target
        for record in held:
            self._forward(record, target)


class _EarlyLog(logging.Handler):
    """Log records made before singer-sdk sets up logging: redacted, held, then replayed.

    Sits on the root logger, first. Until singer-sdk adds its own handler, every record
    (urllib3's request lines at DEBUG, say) is redacted and held; from then on it only
    redacts, in place, before singer-sdk's handler writes the record. :meth:`flush_held`
    replays the held records through their loggers, at the levels then configured.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RedactingFilter(redactor))
        self.held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if all(handler is self for handler in logging.getLogger().handlers):
            self.held.append(record)

    def install(self) -> None:
        """Hold every record from now on (the root logger lets DEBUG through until
        singer-sdk sets the level it is configured with)."""
        root = logging.getLogger()
        root.handlers.insert(0, self)  # first: it redacts before any later handler writes
        root.setLevel(logging.DEBUG)

    def flush_held(self) -> None:
        """Stop holding; write what was held where it would have gone.

        (Not ``release``: that name is :class:`logging.Handler`'s lock release.)
        """
        logging.getLogger().removeHandler(self)
        held, self.held = self.held, []
        for record in held:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)


class _End:
    """The pump's last item when the chains ended before the stream took them over."""


class _Handover:
    """The pump's last item once the stream took over: the chains' events, to go on with."""

    def __init__(self, events: t.Generator[Event, None, None]) -> None:
        self.events = events


def _size(item: Event | BaseException | _End | _Handover) -> int:
    if isinstance(item, Event) and item.page is not None:
        return len(item.page.response.body) + 1
    return 1


class HeadStart:
    """The first stream's chains, started before the tap exists, until it takes them.

    Args:
        plan: what to run (see :func:`plan`).
        max_pages: pages held until the stream takes over.
        max_bytes: body bytes held until the stream takes over.
    """

    def __init__(self, plan: Plan, *, max_pages: int = MAX_PAGES, max_bytes: int = MAX_BYTES):
        spec = plan.spec
        self.spec = spec
        self.config = plan.config
        self.redactor: Redactor = build_redactor(plan.specs, plan.config.get("secrets"))
        self.stats = ChainStats()
        self.limiter = (
            RateLimiter(rate=spec.rate_limit, max_concurrency=None) if spec.rate_limit else None
        )
        self.relay = _LogRelay()
        self.early_log = _EarlyLog(self.redactor)
        # A logger of its own, outside logging's registry: nothing configured for other
        # loggers applies to it, and its records reach the stream through the relay.
        self.logger = logging.Logger(f"tap-rhttp.headstart.{spec.name}", logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self.relay)
        self.tasks: list[ChainTask] = chain_tasks(
            spec, template_context(plan.config), self.redactor
        )
        self._inline = runs_inline(self.tasks, spec.max_concurrency)
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._buffer: collections.deque[tuple[Event | BaseException | _End | _Handover, int]] = (
            collections.deque()
        )
        self._bytes = 0
        self._firsts: dict[str, Event] = {}
        self._wanted = 0  # discovery is waiting for a chain's first event
        self._stopped = False
        self._claimed = False
        self._thread = threading.Thread(target=self._pump, name="rhttp-head-start", daemon=True)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Start the chains."""
        self._thread.start()

    def _make_chain(self, spec: RequestSpec) -> Chain:
        """A chain as the stream would make it (see ``RHTTPStream.make_chain``)."""
        return Chain(
            spec,
            self.redactor,
            self.logger,
            limiter=self.limiter,
            stats=self.stats,
            read_ahead=self._inline,
            stream_bodies=True,
        )

    def _pump(self) -> None:
        events = run_chains(self.tasks, self._make_chain, self.spec.max_concurrency)
        handed = False
        try:
            for event in events:
                if not self._put(event):
                    return
                if self._claimed:  # the stream's thread goes on with `events` itself
                    handed = self._put(_Handover(events), force=True)
                    return
        except BaseException as exc:  # a bug, not an HTTP failure: the stream raises it
            self._put(exc, force=True)
        finally:
            if not handed:
                events.close()
                self._put(_End(), force=True)

    def _full(self, size: int) -> bool:
        return bool(self._buffer) and (
            len(self._buffer) >= self._max_pages or self._bytes + size > self._max_bytes
        )

    def _put(self, item: Event | BaseException | _End | _Handover, *, force: bool = False) -> bool:
        size = _size(item)
        with self._cond:
            if isinstance(item, Event):
                self._firsts.setdefault(item.task.key, item)
                self._cond.notify_all()
            while not force and not self._stopped and not self._wanted and self._full(size):
                self._cond.wait()
            if self._stopped:
                return False
            self._buffer.append((item, size))
            self._bytes += size
            self._cond.notify_all()
            return True

    def stop(self) -> None:
        """Stop the chains; held pages are dropped unseen."""
        with self._cond:
            self._stopped = True
            self._buffer.clear()
            self._bytes = 0
            self._cond.notify_all()

    # ------------------------------------------------------------------ taking over

    def first_page(self, spec: RequestSpec) -> Page | None:
        """The first page of the chain that `spec` (rendered) would start, for discovery.

        Waits for it. Returns None when no chain of the head start is that chain; raises
        the chain's error if its first request failed. The page stays for the sync.
        """
        task = self.tasks[0] if self.tasks else None
        if task is None or task.spec is None or task.spec.fingerprint() != spec.fingerprint():
            return None
        with self._cond:
            self._wanted += 1
            self._cond.notify_all()
            try:
                while task.key not in self._firsts and not self._stopped:
                    self._cond.wait()
            finally:
                self._wanted -= 1
            event = self._firsts.get(task.key)
        if event is None:
            return None
        if event.error is not None:
            raise event.error
        return event.page

    def claim(self) -> Iterator[Event]:
        """Hand the chains over: the held events, then the rest as they come.

        The pump thread stops after the next event and hands the chains' event feed to
        the caller's thread, which then reads it as a stream without a head start does
        (no extra hand-over between threads per page).
        """
        with self._cond:
            self._claimed = True
            self._cond.notify_all()
        return self._events()

    def matches(self, tasks: Sequence[ChainTask]) -> bool:
        """Whether `tasks` are exactly the head start's chains (keys, specs, starts)."""
        return _signature(tasks) == _signature(self.tasks)

    def _events(self) -> Iterator[Event]:
        finished = False
        try:
            while True:
                with self._cond:
                    while not self._buffer and not self._stopped:
                        self._cond.wait()
                    if not self._buffer:  # stopped under a reader: never end short silently
                        raise RuntimeError("the head start was stopped while its pages were read")
                    item, size = self._buffer.popleft()
                    self._bytes -= size
                    self._cond.notify_all()
                if isinstance(item, _End):
                    finished = True
                    return
                if isinstance(item, _Handover):
                    finished = True
                    try:
                        yield from item.events
                    finally:
                        item.events.close()
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not finished:
                self.stop()


def _signature(tasks: Sequence[ChainTask]) -> list[tuple[str, str, JSON, int]]:
    return [
        (
            task.key,
            task.spec.fingerprint() if task.spec is not None else f"error: {task.error}",
            None if task.start is None else task.start.target,
            task.done,
        )
        for task in tasks
    ]


# --------------------------------------------------------------------------- the process's one

_current: HeadStart | None = None


def begin(argv: Sequence[str]) -> HeadStart | None:
    """Start a head start for this command line, when it allows one (see :func:`plan`)."""
    global _current  # one command, one process, one head start
    try:
        found = plan(argv)
        if isinstance(found, str):
            return None
        head = HeadStart(found)
    except Exception:  # never stand between the user and the tap's own errors
        return None
    head.early_log.install()
    head.start()
    _current = head
    atexit.register(head.stop)
    return head


def current() -> HeadStart | None:
    """The running head start, if any (None once taken over or discarded)."""
    return _current


def confirm(config: t.Mapping[str, JSON], logger: logging.Logger) -> HeadStart | None:
    """Keep the head start only if the tap's config is the one it was started with.

    The SDK may add its own defaults; every setting the head start read must be the
    same, and anything else must be one of the SDK's.
    """
    head = _current
    if head is None:
        return None
    head.early_log.flush_held()
    mine, theirs = plain_json(head.config), plain_json(dict(config))
    extra = set(theirs) - set(mine) - SDK_SETTINGS
    if extra or any(theirs.get(key) != value for key, value in mine.items()):
        discard("the tap's config differs from the one it was started with", logger)
        return None
    head.relay.attach(logger)
    return head


def discard(reason: str, logger: logging.Logger | None = None) -> None:
    """Stop the head start: its pages are never emitted; say how many requests went unused."""
    global _current
    head, _current = _current, None
    if head is None:
        return
    head.stop()
    head.early_log.flush_held()
    (logger or logging.getLogger("tap-rhttp")).info(
        "stream %s: the head start was not used (%s); the %d page(s) it fetched are dropped "
        "unseen and the stream starts afresh.",
        head.spec.name,
        reason,
        head.stats.pages,
    )


def take(
    name: str, tasks: Sequence[ChainTask], logger: logging.Logger
) -> tuple[HeadStart, Iterator[Event]] | None:
    """Stream `name`'s head start and its events, when its chains are exactly `tasks`.

    From then on the head start is the caller's, and its log lines go to `logger`.
    A head start for this stream whose chains differ is discarded.
    """
    global _current
    head = _current
    if head is None or head.spec.name != name:
        return None
    if not head.matches(tasks):
        discard("the stream's chains differ from the head start's", logger)
        return None
    _current = None
    head.relay.attach(logger)
    return head, head.claim()
