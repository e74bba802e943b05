"""Large bodies in flat memory: spool the bytes, parse the records one by one, replay them.

A JSON body parsed whole costs 7-10 times its size in Python objects (a 63 MB page took
over 600 MB). When a page's records are an array, either the body itself or under a
simple ``records_path`` (``$.a.b``, ``$.a.b[*]``), they need never all be in memory:

1. **Spool.** A successful response's body goes into a :class:`BodySpool` as it arrives:
   in memory up to :data:`SPOOL_THRESHOLD`, then in an anonymous temporary file. A
   smaller body is then read exactly as before.
2. **Parse incrementally.** A spilled body is parsed with ijson (yajl2 C backend), one
   array element at a time; each element (wrapped as ``{"value": item}`` when it is not
   an object, as :func:`~tap_rhttp.formats.body_to_records` does) is written as one JSON
   line to a second temporary file.
3. **Replay.** Only when the whole body has arrived *and* parsed without error is the page
   handed on, its records as :class:`SpooledRecords`, read back batch by batch.

Exactly once. The choice rejected was emitting records while the body is still arriving:
a body cut short, or a syntax error at record 150,000, would then fail the page after
part of it went downstream, and the page's retry (or the resumed run, which restarts at
this page) would send those records again. Spooling keeps the rule every other page
follows: a page's records go out after the page is completely read, or not at all.
The price is disk, not memory: about the body's size twice, in temporary files that are
unlinked from the start and closed with the page.

Same records as a full parse. Whenever the streamed reading could differ from
``orjson`` (or the standard library's fallback) on the same bytes, it is not used and the
spooled body is parsed whole, as before (so in memory, the documented fallback):

- the page expression reads ``info['body']`` (it needs the whole body);
- ``result_format`` is not ``json`` (or ``auto`` with a JSON Content-Type), or
  ``records_path`` is not a simple key path;
- the body does not start with ``[`` (no ``records_path``) or ``{`` (a key path), or the
  key path selects no array element (the value there may be an object, or missing);
- the body holds a lone UTF-16 surrogate escape (ijson would read it as ``?``);
- ijson fails, or a record cannot be written back as JSON by orjson: numbers beyond 64
  bits (ijson refuses them, orjson reads them differently), non-finite floats, nesting
  deeper than orjson's limit, invalid UTF-8, trailing data, truncation. The full parse
  then gives the exact result, or the exact error, a non-streamed page would give.

One known difference is kept: a body that repeats a key on the records path (RFC 8259
§4 leaves duplicate names undefined) yields the records of every occurrence when
streamed, where a full parse keeps the last one.

Secrets: as for any page, when the body mentions a secret of the config (in any of the
forms the redactor knows, up to 1 MB long) every record is masked with
``Redactor.literals`` before it is spooled.

A page whose body is streamed has ``Page.body = None``; since its page expression does
not read the body, only an error message about that expression shows ``"body": null``.

ijson is optional: without it every body is parsed whole.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tempfile
import time
import typing as t

import orjson

from tap_rhttp.formats import auto_format
from tap_rhttp.request import Response

if t.TYPE_CHECKING:
    import requests

    from tap_rhttp.formats import RecordsPath
    from tap_rhttp.redact import Redactor
    from tap_rhttp.request import HttpClient
    from tap_rhttp.spec import RequestSpec

try:
    import ijson
except ImportError:  # pragma: no cover - ijson is a dependency; degrade to whole bodies
    ijson = None

JSON = t.Any
#: Bodies up to this size stay in memory and are parsed whole.
SPOOL_THRESHOLD = 8 << 20
READ_CHUNK = 1 << 16
_REPLAY_CHUNK = 1 << 20
#: Scans of a spilled body read windows this large, overlapping by _SCAN_OVERLAP bytes, so
#: a match up to that long is found even where it straddles two windows.
_SCAN_WINDOW = 4 << 20
_SCAN_OVERLAP = 1 << 20
_WHITESPACE = b" \t\r\n"
_IDENTIFIER = re.compile(r"^[^.]+$")
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
#: Any surrogate escape (a fast scan), and one that is not half of a pair (a slow one).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)


class BodySpool:
    """A response body as it arrives: in memory up to `threshold` bytes, then on disk.

    Args:
        threshold: bytes kept in memory before the body moves to a temporary file
            (default: :data:`SPOOL_THRESHOLD`).
    """

    def __init__(self, threshold: int | None = None) -> None:
        self.threshold = SPOOL_THRESHOLD if threshold is None else threshold
        self.memory = bytearray()
        self.file: t.BinaryIO | None = None
        self.size = 0

    @property
    def spilled(self) -> bool:
        """True when the body outgrew memory and lives in a temporary file."""
        return self.file is not None

    def write(self, chunk: bytes) -> None:
        """Append received bytes."""
        self.size += len(chunk)
        if self.file is not None:
            self.file.write(chunk)
            return
        self.memory += chunk
        if len(self.memory) > self.threshold:
            self.file = t.cast("t.BinaryIO", tempfile.TemporaryFile())  # noqa: SIM115
            self.file.write(self.memory)
            self.memory = bytearray()

    def read_all(self) -> bytes:
        """The whole body (for a spilled one: the fallback that reads it into memory)."""
        if self.file is None:
            return bytes(self.memory)
        self.file.flush()
        return os.pread(self.file.fileno(), self.size, 0)

    def open(self) -> t.BinaryIO:
        """The spilled body, from its first byte."""
        assert self.file is not None
        self.file.flush()
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        """Free the memory or the temporary file."""
        self.memory = bytearray()
        if self.file is not None:
            self.file.close()


class _SpoolingBody:
    """Stands in for a response's urllib3 body stream and reads the body into a spool.

    ``HttpClient`` reads a body through ``raw.read1``; this stream answers that first
    call by reading the whole body into the spool (honouring the attempt's deadline
    between chunks, as ``HttpClient`` does) and then reports the end of the body. Any
    transport error propagates into ``HttpClient``, which maps it as usual. Every other
    attribute is the real stream's.
    """

    def __init__(self, raw: t.Any, spool: BodySpool, deadline: float | None) -> None:
        self._raw = raw
        self._spool = spool
        self._deadline = deadline
        self._drained = False

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._raw, name)

    def read1(self, amt: int = -1, decode_content: bool | None = None) -> bytes:
        self._drain()
        return b""

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        self._drain()
        return b""

    def stream(
        self, amt: int = READ_CHUNK, decode_content: bool | None = None
    ) -> t.Iterator[bytes]:
        self._drain()
        return iter(())

    def _drain(self) -> None:
        if self._drained:
            return
        self._drained = True
        connection = getattr(self._raw, "_connection", None) or getattr(
            self._raw, "connection", None
        )
        sock = getattr(connection, "sock", None)
        while True:
            if self._deadline is not None:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the attempt's deadline passed while reading the body")
                if isinstance(sock, socket.socket):
                    try:
                        sock.settimeout(remaining)
                    except OSError:
                        sock = None
            chunk = self._raw.read1(READ_CHUNK, decode_content=True)
            if not chunk:
                return
            self._spool.write(chunk)


class BodyCapture:
    """Routes the successful response bodies of one client into spools.

    Installed as a ``requests`` response hook on the client's session. Call
    :meth:`begin` before each attempt and :meth:`take` after a successful one. Bodies of
    error statuses and redirects are left to the client. A response that reaches the
    client by another way than the session's hooks (digest auth answers its 401 by
    sending again) is read whole, as before.
    """

    def __init__(self, client: HttpClient, threshold: int | None = None) -> None:
        self.threshold = threshold
        self.timeout = client.spec.timeout
        self._spool: BodySpool | None = None
        self._deadline: float | None = None
        client.session.hooks["response"].append(self._on_response)

    def begin(self) -> None:
        """A new attempt: a fresh spool, and the attempt's deadline."""
        self.discard()
        self._spool = BodySpool(self.threshold)
        self._deadline = time.monotonic() + self.timeout if self.timeout > 0 else None

    def take(self) -> BodySpool | None:
        """The spool of the attempt that succeeded (None if its body was read whole)."""
        spool, self._spool = self._spool, None
        if spool is not None and spool.size == 0:
            return None
        return spool

    def discard(self) -> None:
        """Drop a failed attempt's spool."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _on_response(self, response: requests.Response, *args: t.Any, **kwargs: t.Any) -> None:
        if self._spool is None or response.is_redirect:
            return
        if not 200 <= response.status_code < 300 or self._known_small(response):
            return
        response.raw = _SpoolingBody(response.raw, self._spool, self._deadline)

    def _known_small(self, response: requests.Response) -> bool:
        """An uncompressed body whose Content-Length fits in memory: the client reads it."""
        length = response.headers.get("Content-Length", "")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        threshold = SPOOL_THRESHOLD if self.threshold is None else self.threshold
        return encoding == "identity" and length.isdigit() and int(length) <= threshold


@dataclasses.dataclass
class SpooledResponse(Response):
    """A response whose body is in a spool (``body`` is empty)."""

    spool: BodySpool = dataclasses.field(default_factory=BodySpool, repr=False)
    parsed: tuple[JSON, t.Any] | None = dataclasses.field(default=None, repr=False)


def attach(response: Response, spool: BodySpool | None) -> Response:
    """The response with its spooled body: in ``body`` when small, else a SpooledResponse."""
    if spool is None:
        return response
    if not spool.spilled:
        body = spool.read_all()
        spool.close()
        return dataclasses.replace(response, body=body)
    fields = {f.name: getattr(response, f.name) for f in dataclasses.fields(Response)}
    return SpooledResponse(**fields, spool=spool)


def whole(response: SpooledResponse) -> Response:
    """The response with its spooled body read into memory (the fallback)."""
    fields = {f.name: getattr(response, f.name) for f in dataclasses.fields(Response)}
    fields["body"] = response.spool.read_all()
    return Response(**fields)


class SpooledRecords:
    """A page's records as JSON lines in a temporary file: sized, and iterable again.

    Each iteration reads the file from the start with its own offset, so a discovery
    sample and the sync can both read one page.
    """

    def __init__(self, file: t.BinaryIO, count: int) -> None:
        self._file = file
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> t.Iterator[dict[str, JSON]]:
        fd = self._file.fileno()
        loads = orjson.loads
        offset = 0
        tail = b""
        while True:
            chunk = os.pread(fd, _REPLAY_CHUNK, offset)
            if not chunk:
                break
            offset += len(chunk)
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                yield loads(line)
        if tail:
            yield loads(tail)

    def close(self) -> None:
        """Free the temporary file."""
        self._file.close()


def ijson_prefix(spec: RequestSpec, records_path: RecordsPath | None) -> str | None:
    """The ijson prefix of the records, or None when this spec's bodies are read whole."""
    if ijson is None or spec.method == "HEAD":
        return None
    if spec.page is not None and spec.page.reads("info", "body"):
        return None
    if spec.result_format not in ("json", "auto"):
        return None
    keys: tuple[str, ...] = ()
    if records_path is not None:
        found = records_path.keys
        if found is None or not all(_IDENTIFIER.match(key) for key in found):
            return None
        keys = found
    return ".".join((*keys, "item"))


def _first_byte(file: t.BinaryIO) -> bytes:
    file.seek(0)
    while True:
        chunk = file.read(4096)
        if not chunk:
            return b""
        stripped = chunk.lstrip(_WHITESPACE)
        if stripped:
            return stripped[:1]


def _lone_surrogate(data: bytes) -> bool:
    return _SURROGATE.search(data) is not None and _LONE_SURROGATE.search(data) is not None


def _windows(fd: int, size: int) -> t.Iterator[bytes]:
    """A file's bytes in overlapping windows (see _SCAN_WINDOW), without mapping it all."""
    offset = 0
    while offset < size:
        yield os.pread(fd, _SCAN_WINDOW, offset)
        if offset + _SCAN_WINDOW >= size:
            return
        offset += _SCAN_WINDOW - _SCAN_OVERLAP


def stream_records(
    response: SpooledResponse, spec: RequestSpec, prefix: str | None, redactor: Redactor
) -> SpooledRecords | None:
    """The records of a spilled body, parsed one at a time; None: parse it whole instead."""
    if prefix is None:
        return None
    fmt = spec.result_format
    if fmt == "auto" and auto_format(response.header("Content-Type")) != "json":
        return None
    file = response.spool.open()
    if _first_byte(file) != (b"[" if prefix == "item" else b"{"):
        return None
    fd = file.fileno()
    if any(_lone_surrogate(window) for window in _windows(fd, response.spool.size)):
        return None
    mask = any(redactor.mentions_secret(w) for w in _windows(fd, response.spool.size))
    out = t.cast("t.BinaryIO", tempfile.TemporaryFile())  # noqa: SIM115
    count = 0
    try:
        file.seek(0)
        dumps = orjson.dumps
        write = out.write
        for item in ijson.items(file, prefix, use_float=True):
            record = item if isinstance(item, dict) else {"value": item}
            write(dumps(redactor.literals(record) if mask else record))
            write(b"\n")
            count += 1
        out.flush()
    except Exception:  # any doubt: the whole-body parse gives the exact result or error
        out.close()
        return None
    if count == 0 and prefix != "item":
        out.close()  # the value at the path may be an object, or missing: parse whole
        return None
    return SpooledRecords(out, count)
