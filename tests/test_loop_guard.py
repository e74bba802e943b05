"""The loop guard remembers each request as a fixed-size digest, not its whole URL.

A chain of 1000 pages whose next links are 60 kB each kept 55-58 MB alive for the
chain's life as whole URLs; a digest is 16 bytes whatever the URL.
"""

from __future__ import annotations

import tracemalloc
import typing as t
import urllib.parse

import pytest

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import PaginationError
from tap_rhttp.http.client import Response
from tap_rhttp.paging.paginator import LOOP_URL_CHARS, Paginator
from tap_rhttp.redact import Redactor


def paginator() -> Paginator:
    (spec,) = load_specs(
        {
            "streams": [
                {
                    "name": "s",
                    "url": "http://h/x",
                    "page": "info['body']['next']",
                    "page_limit": -1,
                }
            ]
        }
    )
    return Paginator(spec, Redactor())


def long_link(n: int) -> str:
    return f"http://h/x?n={n}&cursor=" + "c" * 60_000


@pytest.mark.timeout(60)
def test_a_thousand_long_next_links_keep_little_memory() -> None:
    guard = paginator()
    current = guard.first()
    assert current is not None
    response = Response(200, [], b"{}", "http://h/x", 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1000):
            following = guard.next(current, response, {"next": long_link(n)})
            assert following is not None
            current = following
        # urllib.parse caches its last 128 splits (a bound of its own): not the guard's
        t.cast("t.Any", urllib.parse).clear_cache()  # not in typeshed
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert guard.requests == 1001
    assert kept < 2_000_000, kept  # whole URLs: over 60 MB


def test_a_repeat_of_a_long_link_is_still_named_with_both_pages() -> None:
    guard = paginator()
    current = guard.first()
    assert current is not None
    response = Response(200, [], b"{}", "http://h/x", 0.0)
    for n in range(3):
        following = guard.next(current, response, {"next": long_link(n)})
        assert following is not None
        current = following
    with pytest.raises(PaginationError) as caught:
        guard.next(current, response, {"next": long_link(1)})
    message = str(caught.value)
    shown = long_link(1)[:LOOP_URL_CHARS] + " ..."  # a 60 kB URL is shown cut
    assert f"led page 5 back to `{shown}`, the same request as page 3;" in message


def test_requests_that_differ_in_one_character_are_not_a_loop() -> None:
    guard = paginator()
    current = guard.first()
    assert current is not None
    response = Response(200, [], b"{}", "http://h/x", 0.0)
    for link in ("http://h/x?a=1", "http://h/x?a=2", "http://h/x?a=\ud800", "http://h/x?a=3"):
        following = guard.next(current, response, {"next": link})
        assert following is not None
        current = following
