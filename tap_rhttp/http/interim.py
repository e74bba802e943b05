"""Interim (1xx) responses skipped before the final one, as RFC 9110 §15.2 asks.

A server may send any number of informational responses before the final one: ``103
Early Hints`` (RFC 8297) is the common one, ``102 Processing`` an older one, and a
``100 Continue`` nobody asked for. ``http.client`` (under urllib3 and requests) skips
only ``100``: a ``103`` came back as the response itself, with the real response left
unread on the socket. :class:`InterimSkippingResponse` reports every 1xx but ``101``
(which only ever answers an ``Upgrade`` request, and tap-rhttp sends none) to
``http.client`` as ``100``, whose own loop then skips its header block, with the same
line and header limits. At most :data:`MAX_INTERIM` are skipped per request, so a server
cannot hold a request with an endless series of them (the attempt's deadline also
applies).

``HTTPResponse._read_status`` is the one method of ``http.client`` that reads a status
line; it has kept its name and return value since Python 3.0. ``tests/test_hostile_http``
fails if that changes.
"""

from __future__ import annotations

import http.client

#: Interim responses skipped before a request fails.
MAX_INTERIM = 32


class TooManyInterimResponses(http.client.HTTPException):
    """The server sent more than :data:`MAX_INTERIM` 1xx responses to one request."""


class InterimSkippingResponse(http.client.HTTPResponse):
    """``http.client``'s response, skipping every interim response but ``101``."""

    _interim = 0

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        if 100 <= status < 200 and status != 101:
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise TooManyInterimResponses(
                    f"more than {MAX_INTERIM} interim (1xx) responses before the final one"
                )
            return version, http.client.CONTINUE, reason  # http.client skips its headers
        return version, status, reason
