"""Request bodies by r.http's rules, and the sink a large response body is written to.

Request side: :func:`encode_body` applies r.http's per-method rules. Response side:
:class:`BodySpool` is the *body sink* a caller may hand to
:meth:`~tap_rhttp.http.client.HttpClient.fetch`: the client writes a successful body into
it as the bytes arrive, in memory up to a threshold and then into an anonymous temporary
file, so a 63 MB page never has to be held as one ``bytes`` object. Rejected: hooking the
``requests`` session and swapping ``response.raw`` for a spooling stand-in, which missed
responses that reach the client another way (a digest auth retry) and hid the read loop
in two places.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing as t

import orjson

from tap_rhttp.http.urls import encode_pairs

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

FORM = "application/x-www-form-urlencoded"
#: Bodies up to this size stay in memory (a spool spills to disk past it).
SPOOL_THRESHOLD = 8 << 20


def encode_body(
    method: str, data: JSON, *, as_json: bool = False
) -> tuple[bytes | None, str | None]:
    """The request body and its automatic Content-Type, by r.http's rules.

    POST: a string as is, an object form-encoded, both labelled
    ``application/x-www-form-urlencoded`` (libcurl labels POSTFIELDS so). PUT/PATCH/DELETE:
    a string as is with no automatic Content-Type (RethinkDB sends it in curl's upload
    mode, which adds none), anything else as compact JSON with ``application/json``.
    `as_json` (the `json` option, or `data` under a JSON Content-Type): any value as
    compact JSON, on every method that has a body.
    """
    if data is None or method in ("GET", "HEAD"):
        return None, None
    if as_json:
        return _json_bytes(data), "application/json"
    if isinstance(data, str):
        return data.encode("utf-8"), FORM if method == "POST" else None
    if method == "POST":
        return "&".join(encode_pairs(data)).encode("ascii"), FORM
    return _json_bytes(data), "application/json"


def _json_bytes(data: JSON) -> bytes:
    """Compact JSON, an integer past 64 bits (from a parent row, say) exact too."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:  # orjson cannot write such an integer
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


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

    def fits(self, content_length: str | None, content_encoding: str | None) -> bool:
        """Whether a body is known to stay in memory: uncompressed, with a small length.

        The client then reads such a body itself, with no copy through the spool.
        """
        encoding = (content_encoding or "identity").strip().lower()
        length = (content_length or "").strip()
        return (
            encoding == "identity"
            and length.isdigit()
            and len(length) <= 20
            and int(length) <= self.threshold
        )

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
