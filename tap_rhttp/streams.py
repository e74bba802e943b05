"""RHTTPStream: thin glue from singer-sdk's stream hooks to the request chain.

Everything HTTP (requests, retries, formats, pagination) happens in ``chain`` and the
modules below it; this class only tells the SDK which records exist, so the SDK keeps
doing what it is good at: catalog and selection, STATE and bookmarks, stream maps,
type conformance and message writing.
"""

from __future__ import annotations

import typing as t

from singer_sdk.streams import Stream

from tap_rhttp.chain import Chain, ChainStats
from tap_rhttp.ratelimit import RateLimiter

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_rhttp.redact import Redactor
    from tap_rhttp.request import Response
    from tap_rhttp.spec import RequestSpec

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override


class RHTTPStream(Stream):
    """One configured r.http spec as a Singer stream."""

    def __init__(
        self,
        tap: Tap,
        spec: RequestSpec,
        schema: dict[str, t.Any],
        redactor: Redactor,
        *,
        prefetched: dict[str, Response] | None = None,
    ) -> None:
        """Create the stream of one spec.

        Args:
            tap: the tap.
            spec: the validated spec.
            schema: the declared, inferred or catalog schema.
            redactor: masks secrets in messages.
            prefetched: discovery's sample responses, reused once by the sync.
        """
        self.spec = spec
        self.redactor = redactor
        self.prefetched = prefetched if prefetched is not None else {}
        self.stats = ChainStats()
        self.limiter = RateLimiter(rate=spec.rate_limit) if spec.rate_limit else None
        super().__init__(tap=tap, schema=schema, name=spec.name)
        self.primary_keys = list(spec.primary_keys)

    def chain(self) -> Chain:
        """A new request chain for this stream."""
        return Chain(
            self.spec,
            self.redactor,
            self.logger,
            limiter=self.limiter,
            prefetched=self.prefetched,
            stats=self.stats,
        )

    @override
    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict[str, t.Any]]:
        """Every record of every page, in order, each page once it is complete."""
        chain = self.chain()
        try:
            for page in chain.pages():
                yield from page.records
        finally:
            chain.close()
