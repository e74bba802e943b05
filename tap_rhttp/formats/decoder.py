"""A spec's decoder: `result_format` with its `csv` and `xml` options, body -> records.

:class:`Decoder` is what a chain reads a whole body with (``read``: the body as `info`
shows it, and its records) and what ``streaming`` consults to read a large body record by
record. Both go through the same per-format readers (``readers``, ``delimited``,
``xmldoc``), so a page gives the same records however it was read.
"""

from __future__ import annotations

import dataclasses
import io
import typing as t

from tap_rhttp.formats.delimited import CsvOptions, iter_csv, iter_jsonl
from tap_rhttp.formats.readers import auto_format, read_body
from tap_rhttp.formats.records import body_to_records
from tap_rhttp.formats.xmldoc import XmlOptions, iter_xml

if t.TYPE_CHECKING:
    from tap_rhttp.formats.records import RecordsPath
    from tap_rhttp.types import JSON


def as_record(item: JSON) -> dict[str, JSON]:
    """A record: an object as is, anything else as ``{"value": item}``."""
    return item if isinstance(item, dict) else {"value": item}


@dataclasses.dataclass(frozen=True)
class Decoder:
    """How a spec reads its bodies.

    Attributes:
        result_format: the spec's `result_format`.
        csv: its `csv` option (defaults when not given).
        xml: its `xml` option (defaults when not given).
    """

    result_format: str = "auto"
    csv: CsvOptions = dataclasses.field(default_factory=CsvOptions)
    xml: XmlOptions = dataclasses.field(default_factory=XmlOptions)

    def format_for(self, content_type: str | None) -> str:
        """The format a body of this Content-Type is read as (`auto` decides by it)."""
        return auto_format(content_type) if self.result_format == "auto" else self.result_format

    def read(
        self, body: bytes, content_type: str | None, records_path: RecordsPath | None
    ) -> tuple[JSON, list[dict[str, JSON]]]:
        """A whole body as `info['body']` shows it, and its records.

        CSV is a list of row objects and JSON Lines a list of the lines' values, which
        `records_path` (if any) selects from as from a JSON body; XML is
        ``{"<root>": value}``, whose records are the elements at `xml.records`, or else
        what `records_path` selects.

        Raises:
            ResponseFormatError: the body does not parse as its format.
        """
        fmt = self.format_for(content_type)
        value: JSON
        if fmt == "csv":
            value = list(iter_csv(io.BytesIO(body), content_type, self.csv))
        elif fmt == "jsonl":
            value = list(iter_jsonl(io.BytesIO(body)))
        elif fmt == "xml":
            records: list[dict[str, JSON]] = []
            value = None
            for kind, item in iter_xml(io.BytesIO(body), self.xml, keep_document=True):
                if kind == "record":
                    records.append(as_record(item))
                else:
                    value = item
            if self.xml.records is not None:
                return value, records
        else:
            value = read_body(
                body, content_type, self.result_format, json_expected=records_path is not None
            )
        return value, body_to_records(value, records_path)

    def describe(self, content_type: str | None = None, *, response: bool = False) -> str:
        """The decoder in words, for explain: the format and the options it uses.

        Args:
            content_type: a response's Content-Type (with `response`).
            response: say what that response's body is read as; else describe the
                configured `result_format` and every option given.
        """
        fmt = self.format_for(content_type) if response else self.result_format
        if not response:
            parts = [f"result_format {self.result_format}"]
        elif self.result_format == "auto":
            parts = [f"{fmt} (auto, by Content-Type {content_type or 'none'})"]
        else:
            parts = [fmt]
        if fmt == "csv" or (fmt == "auto" and self.csv != CsvOptions()):
            shown = self.csv.describe(content_type if response else None)
            if fmt == "auto" and self.csv.delimiter is None:
                shown["delimiter"] = None  # decided by each body's Content-Type
            parts.append(f"csv {_options(shown)}")
        if fmt == "xml" or (fmt == "auto" and self.xml != XmlOptions()):
            parts.append(f"xml {_options(self.xml.describe())}")
        return "; ".join(parts)


def _options(options: dict[str, JSON]) -> str:
    shown = {k: v for k, v in options.items() if v is not None}
    return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in shown.items()) + "}"


def _text(value: JSON) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
