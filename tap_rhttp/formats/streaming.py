"""Large bodies in flat memory: spool the bytes, parse the records one by one, replay them.

A JSON body parsed whole costs 7-10 times its size in Python objects (a 63 MB page took
over 600 MB). When a page's records are an array, either the body itself or under a
simple ``records_path`` (``$.a.b``, ``$.a.b[*]``), they need never all be in memory:

1. **Spool.** A successful response's body goes into a
   :class:`~tap_rhttp.http.body.BodySpool` (the client's body sink) as it arrives: in
   memory up to its threshold, then in an anonymous temporary file. A smaller body is
   then read exactly as before.
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

CSV, JSON Lines and XML bodies (``result_format`` ``csv``, ``jsonl``, ``xml``, or
``auto`` picking them by Content-Type) stream the same way, through the very readers a
whole body is read with (``delimited.iter_csv``, ``delimited.iter_jsonl``,
``xmldoc.iter_xml``), so the records and the error for a broken body are the same
either way; such an error is raised at once (a whole read would only repeat it, in
memory). They stream when CSV and JSON Lines have no ``records_path`` (or ``$``), and
when XML has ``xml.records``; else, or when a record cannot be written back by orjson,
the body is read whole.

One known difference is kept: a body that repeats a key on the records path (RFC 8259
§4 leaves duplicate names undefined) yields the records of every occurrence when
streamed, where a full parse keeps the last one.

Secrets: as for any page, when the body mentions a secret of the config (in any of the
forms the redactor knows, up to 1 MB long) every record is masked with
``Redactor.literals`` before it is spooled.

A page whose body is streamed has ``Page.body = None``; since its page expression does
not read the body, only an error message about that expression shows ``"body": null``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import typing as t

import ijson
import orjson

from tap_rhttp.errors import ResponseFormatError
from tap_rhttp.formats.delimited import iter_csv, iter_jsonl
from tap_rhttp.formats.xmldoc import iter_xml

if t.TYPE_CHECKING:
    from tap_rhttp.formats.decoder import Decoder
    from tap_rhttp.formats.records import RecordsPath
    from tap_rhttp.http.client import Response
    from tap_rhttp.redact import Redactor
    from tap_rhttp.types import JSON

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


def whole(response: Response) -> Response:
    """The response with its spooled body read into memory (the fallback)."""
    assert response.spool is not None
    return dataclasses.replace(response, body=response.spool.read_all(), spool=None)


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

    def lines(self, count: int) -> t.Iterator[list[bytes]]:
        """The records as the JSON lines they are kept as, `count` at a time."""
        fd = self._file.fileno()
        offset = 0
        tail = b""
        batch: list[bytes] = []
        while True:
            chunk = os.pread(fd, _REPLAY_CHUNK, offset)
            if not chunk:
                break
            offset += len(chunk)
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            batch += lines
            while len(batch) >= count:
                yield batch[:count]
                del batch[:count]
        if tail:
            batch.append(tail)
        if batch:
            yield batch

    def close(self) -> None:
        """Free the temporary file."""
        self._file.close()


def ijson_prefix(
    *, method: str, result_format: str, body_read: bool, records_path: RecordsPath | None
) -> str | None:
    """The ijson prefix of the records, or None when such bodies are always read whole.

    Args:
        method: the request method (HEAD has no body).
        result_format: the spec's `result_format`.
        body_read: the page expression reads ``info['body']`` (it needs the whole body).
        records_path: the compiled `records_path`, if any.
    """
    if method == "HEAD" or body_read:
        return None
    if result_format not in ("json", "auto"):
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


def may_stream(*, method: str, body_read: bool) -> bool:
    """Whether a chain's large bodies may be streamed at all.

    Not for HEAD (no body), nor when the page expression reads ``info['body']`` (it
    needs the whole body).
    """
    return method != "HEAD" and not body_read


def stream_records(
    response: Response,
    decoder: Decoder,
    records_path: RecordsPath | None,
    redactor: Redactor,
) -> SpooledRecords | None:
    """The records of a spilled body, parsed one at a time; None: parse it whole instead.

    Raises:
        ResponseFormatError: a CSV, JSON Lines or XML body that does not parse (the
            error a whole read gives: both use the same reader).
    """
    assert response.spool is not None
    content_type = response.header("Content-Type")
    fmt = decoder.format_for(content_type)
    file = response.spool.open()
    fd = file.fileno()
    size = response.spool.size
    if fmt == "json":
        prefix = ijson_prefix(
            method="GET", result_format="json", body_read=False, records_path=records_path
        )
        if prefix is None or _first_byte(file) != (b"[" if prefix == "item" else b"{"):
            return None
        if any(_lone_surrogate(window) for window in _windows(fd, size)):
            return None
        mask = any(redactor.mentions_secret(w) for w in _windows(fd, size))
        file.seek(0)
        try:
            spooled = _spool(ijson.items(file, prefix, use_float=True), redactor, mask)
        except ResponseFormatError:  # a full disk (see _spool)
            raise
        except Exception:  # any doubt: the whole-body parse gives the exact result or error
            return None
        if len(spooled) == 0 and prefix != "item":
            spooled.close()  # the value at the path may be an object, or missing: parse whole
            return None
        return spooled
    items: t.Iterator[JSON]
    if fmt in ("csv", "jsonl") and (records_path is None or records_path.keys == ()):
        file.seek(0)
        items = iter_csv(file, content_type, decoder.csv) if fmt == "csv" else iter_jsonl(file)
    elif fmt == "xml" and decoder.xml.records is not None:
        file.seek(0)
        items = (item for _, item in iter_xml(file, decoder.xml, keep_document=False))
    else:
        return None
    mask = any(redactor.mentions_secret(w) for w in _windows(fd, size))
    file.seek(0)
    try:
        return _spool(items, redactor, mask)
    except ResponseFormatError:
        raise
    except Exception:  # a record orjson cannot write (an integer past 64 bits): whole
        return None


def _spool(items: t.Iterable[JSON], redactor: Redactor, mask: bool) -> SpooledRecords:
    """Write each item as one JSON line (wrapped when not an object) to a temporary file."""
    out = t.cast("t.BinaryIO", tempfile.TemporaryFile())  # noqa: SIM115
    count = 0
    try:
        dumps = orjson.dumps
        write = out.write
        for item in items:
            record = item if isinstance(item, dict) else {"value": item}
            write(dumps(redactor.literals(record) if mask else record))
            write(b"\n")
            count += 1
        out.flush()
    except OSError as exc:  # a full disk: parsing whole instead could exhaust memory
        out.close()
        raise ResponseFormatError(
            f"could not write the page's records to a temporary file: {exc} (free disk "
            "space, or point TMPDIR at a larger disk)."
        ) from None
    except BaseException:
        out.close()
        raise
    return SpooledRecords(out, count)
