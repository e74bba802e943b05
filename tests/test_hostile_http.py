"""Interim (1xx) responses before the final one are skipped (RFC 9110 §15.2).

``http.client`` skips only ``100 Continue``; a ``103 Early Hints`` was taken for the
response itself (``status code 103``), its real response left on the socket.
"""

from __future__ import annotations

import http.client
import inspect
import typing as t

import pytest
from fault_server import FaultServer, Hit, head_bytes

from tap_rhttp.http.interim import MAX_INTERIM, InterimSkippingResponse

if t.TYPE_CHECKING:
    import socket
    from collections.abc import Iterator

BODY = b'[{"id": 1}, {"id": 2}]'


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def interim_then_final(*interim: bytes) -> t.Callable[[Hit], t.Any]:
    def handler(hit: Hit) -> t.Any:
        def act(sock: socket.socket) -> None:
            for block in interim:
                sock.sendall(block)
            sock.sendall(
                head_bytes(
                    200, [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
                )
                + BODY
            )

        return act

    return handler


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
UNKNOWN_1XX = b"HTTP/1.1 199 Whatever\r\nX-A: b\r\nX-C: d\r\n\r\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "interim",
    [
        (EARLY_HINTS,),
        (CONTINUE,),
        (CONTINUE, PROCESSING, EARLY_HINTS, EARLY_HINTS, UNKNOWN_1XX),
        (EARLY_HINTS,) * MAX_INTERIM,
    ],
    ids=["103", "100", "mixed", "max"],
)
def test_interim_responses_are_skipped(
    fault: FaultServer, sync: t.Any, interim: tuple[bytes, ...]
) -> None:
    fault.routes["/hints"] = interim_then_final(*interim)
    config = {"streams": [{"name": "s", "url": fault.url + "/hints", "reattempts": 1}]}
    result = sync(config)
    assert result.records() == [{"id": 1}, {"id": 2}]
    assert len(fault.hits("/hints")) == 1  # the discovery sample is the sync's page


@pytest.mark.timeout(30)
def test_interim_responses_before_a_paginated_page_keep_its_link_header(
    fault: FaultServer, sync: t.Any
) -> None:
    def page(hit: Hit) -> t.Any:
        n = int(hit.args.get("p", "1"))
        link = [("Link", f'</p?p={n + 1}>; rel="next"')] if n < 3 else []
        body = f'[{{"id": {n}}}]'.encode()

        def act(sock: socket.socket) -> None:
            sock.sendall(EARLY_HINTS + b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=next\r\n\r\n")
            head = head_bytes(
                200,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *link],
            )
            sock.sendall(head + body)

        return act

    fault.routes["/p"] = page
    config = {
        "streams": [
            {
                "name": "s",
                "url": fault.url + "/p",
                "page": "link-next",
                "page_limit": -1,
                "schema": {"properties": {"id": {"type": "integer"}}},
            }
        ]
    }
    assert sync(config).records() == [{"id": 1}, {"id": 2}, {"id": 3}]


@pytest.mark.timeout(30)
def test_an_endless_series_of_interim_responses_fails_the_request(
    fault: FaultServer, cli: t.Any
) -> None:
    fault.routes["/forever"] = interim_then_final(*(EARLY_HINTS,) * (MAX_INTERIM + 1))
    config = {
        "streams": [
            {
                "name": "s",
                "url": fault.url + "/forever",
                "reattempts": 1,
                "schema": {"properties": {}},
            }
        ]
    }
    done = cli(config)
    assert done.code == 1
    assert f"more than {MAX_INTERIM} interim (1xx) responses before the final one" in done.stderr
    assert "Traceback" not in done.stderr


def test_http_client_still_reads_status_lines_where_the_skip_hooks_in() -> None:
    """The skip relies on ``HTTPResponse._read_status`` and ``begin`` skipping ``100``."""
    read_status = http.client.HTTPResponse._read_status  # type: ignore[attr-defined]
    assert inspect.signature(read_status).parameters.keys() == {"self"}
    source = inspect.getsource(http.client.HTTPResponse.begin)
    assert "self._read_status()" in source
    assert "status != CONTINUE" in source
    assert issubclass(InterimSkippingResponse, http.client.HTTPResponse)
