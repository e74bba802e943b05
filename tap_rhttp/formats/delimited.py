"""CSV (and TSV) and JSON Lines bodies, read one record at a time from a binary stream.

Both readers take a file-like object and yield records as they parse, so the same code
reads a small body in memory (``io.BytesIO``) and a large one spooled to disk (see
``streaming``): the records, and the error for a broken body, are the same either way.

CSV is read by the standard library's :mod:`csv` module (``strict=True``: a quote out of
place is an error, not a guess). CSV has no types, so every value is the string the body
holds, exactly (an empty field is ``""``); nothing is converted, so nothing is lost. A row
whose field count differs from the header's is an error naming its line, never a row
padded with nulls or cut short. Blank lines are skipped.

JSON Lines (NDJSON): one JSON value per non-blank line, each parsed as strictly as a JSON
body; a bad line is an error naming its line number.

Bounds (a server may send anything): a CSV row may span at most :data:`MAX_ROW_CHARS`
characters and a JSON line :data:`MAX_LINE_BYTES` bytes; each field of a CSV row at
most the :mod:`csv` module's field limit (128 KiB).

Rejected: reading a line with ``readline()`` without a limit (one 500 MB line would be
held whole), and splitting an over-long line into pieces for :mod:`csv` (it treats the
end of each piece as the end of a line).
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import re
import typing as t

from tap_rhttp.errors import ResponseFormatError
from tap_rhttp.formats.readers import media_type, parse_json

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: Characters one CSV row may span (all its lines together).
MAX_ROW_CHARS = 4 << 20
#: Bytes one JSON Lines line may have.
MAX_LINE_BYTES = 16 << 20
_BLANK = b" \t\r\n"
_POSITION_RE = re.compile(r"line 1 column (\d+) \(char \d+\)")
_BOM = codecs.BOM_UTF8


@dataclasses.dataclass(frozen=True)
class CsvOptions:
    """The `csv` option: how a CSV body is read (see the README's Bodies section).

    Attributes:
        delimiter: the field separator; None: ``,``, or a tab for a
            ``text/tab-separated-values`` body.
        quotechar: the quote character, or None for no quoting at all.
        escapechar: the escape character (none by default: quotes are doubled).
        doublequote: a doubled quote inside a quoted field is one quote.
        skipinitialspace: drop spaces right after a delimiter.
        header: the first row names the fields.
        fieldnames: the field names to use (with `header`, they replace the header row's).
    """

    delimiter: str | None = None
    quotechar: str | None = '"'
    escapechar: str | None = None
    doublequote: bool = True
    skipinitialspace: bool = False
    header: bool = True
    fieldnames: tuple[str, ...] | None = None

    def describe(self, content_type: str | None = None) -> dict[str, JSON]:
        """The options in effect for a body of `content_type` (explain prints them)."""
        return {
            "delimiter": self.delimiter_for(content_type),
            "quotechar": self.quotechar,
            "escapechar": self.escapechar,
            "doublequote": self.doublequote,
            "skipinitialspace": self.skipinitialspace,
            "header": self.header,
            "fieldnames": list(self.fieldnames) if self.fieldnames is not None else None,
        }

    def delimiter_for(self, content_type: str | None) -> str:
        """The delimiter for a body: the configured one, else by its Content-Type."""
        if self.delimiter is not None:
            return self.delimiter
        kind, _ = media_type(content_type)
        return "\t" if kind == TSV_TYPE else ","


TSV_TYPE = "text/tab-separated-values"


def _error(message: str) -> ResponseFormatError:
    return ResponseFormatError(f"failed to parse CSV response: {message}")


class _Lines:
    """The lines of a text stream for :func:`csv.reader`, each row within MAX_ROW_CHARS."""

    def __init__(self, text: t.TextIO) -> None:
        self.text = text
        self.used = 0  # characters of the row in progress
        self.number = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        room = MAX_ROW_CHARS - self.used
        try:
            line = self.text.readline(room + 1)
        except UnicodeDecodeError as exc:  # text is decoded ahead, a block at a time
            raise _error(
                f"at line {self.number + 1} or in the lines just after it: the body is not "
                f"valid {exc.encoding} text ({exc.reason})."
            ) from None
        if not line:
            raise StopIteration
        self.number += 1
        self.used += len(line)
        if self.used > MAX_ROW_CHARS:
            raise _error(f"line {self.number}: a row longer than {MAX_ROW_CHARS} characters.")
        return line


def _encoding(content_type: str | None) -> str:
    _, charset = media_type(content_type)
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            encoding = "utf-8"
    return "utf-8-sig" if encoding == "utf-8" else encoding


def iter_csv(
    stream: t.BinaryIO, content_type: str | None, options: CsvOptions
) -> t.Iterator[dict[str, JSON]]:
    """The records of a CSV body, one per row (field name -> the field's text).

    Args:
        stream: the body, from its first byte (left open).
        content_type: the response's Content-Type (its charset decodes the body;
            UTF-8 when none, a leading byte order mark dropped).
        options: the spec's `csv` option.

    Raises:
        ResponseFormatError: bad CSV, a row of the wrong width, a duplicate field name,
            text that is not valid in the body's charset, or a row past the bounds.
    """
    text = io.TextIOWrapper(
        t.cast("t.IO[bytes]", stream), encoding=_encoding(content_type), newline=""
    )
    lines = _Lines(text)
    try:
        reader = csv.reader(
            lines,
            delimiter=options.delimiter_for(content_type),
            quotechar=options.quotechar,
            quoting=csv.QUOTE_MINIMAL if options.quotechar is not None else csv.QUOTE_NONE,
            escapechar=options.escapechar,
            doublequote=options.doublequote,
            skipinitialspace=options.skipinitialspace,
            strict=True,
        )
        header_pending = options.header
        names = options.fieldnames
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _error(f"line {lines.number}: {exc}.") from None
            lines.used = 0
            if not row:
                continue  # a blank line
            if header_pending:  # the header row (replaced by `fieldnames` when given)
                header_pending = False
                if names is None:
                    names = tuple(row)
                    if len(set(names)) != len(names):
                        counts = collections.Counter(names)
                        twice = next(n for n in names if counts[n] > 1)
                        raise _error(f"line {lines.number}: the header names `{twice}` twice.")
                continue
            if names is None:  # the config check requires `fieldnames` without a header
                raise _error("no field names: give `csv.fieldnames` or `csv.header: true`.")
            if len(row) != len(names):
                raise _error(
                    f"line {lines.number}: a row of {len(row)} field(s), but there are "
                    f"{len(names)} field names."
                )
            yield dict(zip(names, row, strict=True))
    finally:
        text.detach()


def iter_jsonl(stream: t.BinaryIO) -> t.Iterator[JSON]:
    """The values of a JSON Lines body, one per non-blank line.

    Raises:
        ResponseFormatError: a line that is not one JSON value (named by its number), or
            longer than MAX_LINE_BYTES.
    """
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise ResponseFormatError(
                f"failed to parse JSONL response: line {number} is longer than "
                f"{MAX_LINE_BYTES} bytes."
            )
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        line = line.strip(_BLANK)
        if not line:
            continue
        try:
            yield parse_json(line)
        except ResponseFormatError as exc:
            inner = str(exc).removeprefix("failed to parse JSON response: ")
            inner = _POSITION_RE.sub(r"column \1", inner)  # the line is named already
            raise ResponseFormatError(
                f"failed to parse JSONL response: line {number}: {inner}"
            ) from None
