"""Depagination against a loopback server that pages server side (contract §4).

Every test runs the tap, in process, against endpoints named by the shape they page in
(``pagination_server``), and asserts the records emitted, the exact number of requests
and the exact query string of each (``server.log[i].target``).
"""

from __future__ import annotations

import json
import random
import re
import time
import typing as t
from urllib.parse import quote

import pytest
from pagination_server import TOTAL, expected_ids, install
from singer_sdk.contrib.msgspec import MsgSpecWriter

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import (
    ExpressionError,
    NonExistenceError,
    PaginationError,
    PermanentRequestError,
    RHTTPError,
)
from tap_rhttp.http.client import Response
from tap_rhttp.paging import link as link_module
from tap_rhttp.paging.link import header_info, parse_link_header
from tap_rhttp.paging.paginator import INFO_BODY_CHARS, PageRequest, Paginator
from tap_rhttp.redact import MASK, Redactor
from tap_rhttp.tap import TapRHTTP

if t.TYPE_CHECKING:
    from server import LocalServer

LINK_NEXT_SPELLED_OUT = "lambda info: info['header']['link']['rel=\"next\"'].default(None)"


@pytest.fixture
def api(server: LocalServer) -> LocalServer:
    """The shared server with the paginating endpoints added for this test."""
    install(server)
    return server


def cfg(url: str, page: str, page_limit: int, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"streams": [{"name": "s", "url": url, "page": page, "page_limit": page_limit, **spec}]}


def targets(server: LocalServer) -> list[str]:
    return [request.target for request in server.log]


def ids(records: t.Iterable[dict[str, t.Any]]) -> list[t.Any]:
    return [record["id"] for record in records]


class _Capture(MsgSpecWriter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def write_message(self, message: t.Any) -> None:
        self.lines.append(bytes(self.format_message(message)))


def sync_failing(config: dict[str, t.Any]) -> tuple[list[dict[str, t.Any]], RHTTPError]:
    """Run a sync that must fail; return the records written before it failed, and the error."""
    writer = _Capture()
    tap = TapRHTTP(config=config, parse_env_config=False, message_writer=writer)
    with pytest.raises(RHTTPError) as caught:
        tap.sync_all()
    messages = [json.loads(line) for line in writer.lines]
    return [m["record"] for m in messages if m["type"] == "RECORD"], caught.value


# ------------------------------------------------------------------ the seed's examples


def test_seed_link_next_with_page_limit_3(api: LocalServer, sync: t.Any) -> None:
    """`page='link-next', page_limit=3`: three requests, though the server has more pages."""
    config = cfg(f"{api.url}/link/quoted", "link-next", 3, params={"per_page": 1})
    assert ids(sync(config).records("s")) == [1, 2, 3]
    assert targets(api) == [
        "/link/quoted?per_page=1",
        "/link/quoted?per_page=1&page=2",  # the link carries per_page: not sent twice
        "/link/quoted?per_page=1&page=3",
    ]


def test_seed_body_meta_next_with_page_limit_5(api: LocalServer, sync: t.Any) -> None:
    """The lambda from the seed page, verbatim: stops at the page without `meta.next`."""
    config = cfg(
        f"{api.url}/meta-next",
        "lambda info: info['body']['meta']['next'].default(None)",
        5,
        records_path="$.items[*]",
    )
    assert ids(sync(config).records("s")) == expected_ids()
    assert targets(api) == ["/meta-next", "/meta-next?page=2", "/meta-next?page=3"]


SEED_PAGE_PARAMS = "{'params': {'page': info['params']['page'] + 1}}"


def test_seed_page_params_unlimited_runs_until_the_server_says_no(
    api: LocalServer, cli: t.Any
) -> None:
    """`page_limit=-1` with an expression that never returns null.

    Only null or `page_limit` ends pagination, and an empty page does not: against an API
    that answers 404 past its last page, the run is an error after every record was
    written, exactly as r.http fails there. The user's command line, end to end.
    """
    done = cli(cfg(f"{api.url}/numbered-strict", SEED_PAGE_PARAMS, -1, params={"page": 1}))
    records = [m["record"] for m in done.messages() if m["type"] == "RECORD"]
    assert ids(records) == expected_ids()
    assert targets(api) == [f"/numbered-strict?page={n}" for n in (1, 2, 3, 4)]
    assert done.code == 1
    assert (
        f"Error in HTTP GET of `{api.url}/numbered-strict?page=4` [stream s, page 4]: "
        "status code 404." in done.stderr
    )


def test_seed_page_params_unlimited_in_process(api: LocalServer) -> None:
    """The same run in process: the 404 is a permanent error, raised after every record."""
    records, error = sync_failing(
        cfg(f"{api.url}/numbered-strict", SEED_PAGE_PARAMS, -1, params={"page": 1}, reattempts=3)
    )
    assert ids(records) == expected_ids()
    assert isinstance(error, PermanentRequestError)
    assert error.status == 404
    assert targets(api) == [f"/numbered-strict?page={n}" for n in (1, 2, 3, 4)]  # no retry


def test_seed_page_params_past_the_end_keeps_going_until_page_limit(
    api: LocalServer, sync: t.Any
) -> None:
    """Empty pages past the end do not stop the seed's expression: `page_limit` does."""
    config = cfg(f"{api.url}/numbered", SEED_PAGE_PARAMS, 6, params={"page": 1})
    assert ids(sync(config).records("s")) == expected_ids()
    assert targets(api) == [f"/numbered?page={n}" for n in range(1, 7)]


# ------------------------------------------------------------------ link-next robustness

LINK_STYLES = [
    "quoted",  # <abs>; rel="next"
    "bare",  # rel=next
    "upper",  # REL="NEXT"
    "multi",  # rel="next last" on the page before the last
    "relative",  # <relative?page=2>, resolved against the current URL
    "root",  # </link/root?page=2>
    "query",  # <?page=2>
    "several",  # one Link header line per link
    "title",  # extra params, quoted ',' and ';', rel not first
]


@pytest.mark.parametrize("page", ["link-next", LINK_NEXT_SPELLED_OUT])
@pytest.mark.parametrize("style", LINK_STYLES)
def test_link_next_finds_the_next_link(
    api: LocalServer, sync: t.Any, style: str, page: str
) -> None:
    result = sync(cfg(f"{api.url}/link/{style}", page, -1))
    assert ids(result.records("s")) == expected_ids()
    assert targets(api) == [f"/link/{style}", f"/link/{style}?page=2", f"/link/{style}?page=3"]


def test_link_keys_are_the_raw_parameter_text_too(api: LocalServer, sync: t.Any) -> None:
    """As in RethinkDB, `info.header.link` is keyed by each parameter's raw text."""
    result = sync(cfg(f"{api.url}/link/upper", "info['header']['link']['REL=\"NEXT\"']", 2))
    assert ids(result.records("s")) == [1, 2, 3, 4]
    assert targets(api) == ["/link/upper", "/link/upper?page=2"]


def test_relative_link_resolves_against_the_url_after_redirects(
    api: LocalServer, sync: t.Any
) -> None:
    """RFC 3986 §5.1.3: the base of a relative reference is the URL that was retrieved."""
    start = f"{api.url}/redirect-to?url={quote('/link/relative', safe='')}"
    assert ids(sync(cfg(start, "link-next", -1)).records("s")) == expected_ids()
    assert targets(api) == [
        "/redirect-to?url=%2Flink%2Frelative",
        "/link/relative",
        "/link/relative?page=2",
        "/link/relative?page=3",
    ]


def test_head_pages_feed_page_from_their_headers(api: LocalServer, sync: t.Any) -> None:
    result = sync(cfg(f"{api.url}/link/quoted", "link-next", -1, method="HEAD"))
    assert result.records("s") == []
    assert [(r.method, r.target) for r in api.log] == [
        ("HEAD", "/link/quoted"),
        ("HEAD", "/link/quoted?page=2"),
        ("HEAD", "/link/quoted?page=3"),
    ]


def test_malformed_link_header_fails_link_next(api: LocalServer) -> None:
    records, error = sync_failing(cfg(f"{api.url}/link/malformed", "link-next", -1))
    assert ids(records) == [1, 2]  # the page is complete: its records are written first
    assert targets(api) == ["/link/malformed"]
    assert isinstance(error, PaginationError)
    message = str(error)
    assert message.startswith(
        f"Error in HTTP GET of `{api.url}/link/malformed` [stream s, page 1]: "
        "cannot read the Link header "
        "for `page`: malformed Link header near "
    )
    assert "Error occurred during `page` (link-next) called with:" in message
    assert ',"link":"' in message  # the raw header is shown


def test_malformed_link_header_is_fine_when_page_reads_another_header(
    api: LocalServer, sync: t.Any
) -> None:
    result = sync(cfg(f"{api.url}/link/malformed", "info['header']['x-next'].default(None)", -1))
    assert ids(result.records("s")) == expected_ids()
    assert targets(api) == [
        "/link/malformed",
        "/link/malformed?page=2",
        "/link/malformed?page=3",
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://h/2>; rel="next"', {'rel="next"': "https://h/2"}),
        ("<https://h/2>; rel=next", {"rel=next": "https://h/2", 'rel="next"': "https://h/2"}),
        ('<https://h/2>; REL="NEXT"', {'REL="NEXT"': "https://h/2", 'rel="next"': "https://h/2"}),
        (
            '<https://h/5>; rel="next last"',
            {
                'rel="next last"': "https://h/5",
                'rel="next"': "https://h/5",
                'rel="last"': "https://h/5",
            },
        ),
        (
            '<https://h/2>; title="a, b; c"; rel="next", </5>; rel="last"',
            {'title="a, b; c"': "https://h/2", 'rel="next"': "https://h/2", 'rel="last"': "/5"},
        ),
        # the first link with a parameter wins, as r.http's keys are unique
        ('</a>; rel="next", </b>; rel="next"', {'rel="next"': "/a"}),
        (
            "<https://h/?a=1,2>; rel=next",
            {"rel=next": "https://h/?a=1,2", 'rel="next"': "https://h/?a=1,2"},
        ),
        ("", {}),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


@pytest.mark.parametrize("header", ["https://h/2; rel=next", '<https://h/2>; rel="next", oops'])
def test_parse_link_header_rejects_a_link_without_brackets(header: str) -> None:
    with pytest.raises(ValueError, match="malformed Link header"):
        parse_link_header(header)


# ------------------------------------------------------------------ info.header


def test_header_names_are_lower_cased(api: LocalServer) -> None:
    records, error = sync_failing(cfg(f"{api.url}/link/malformed", "info['header']['X-Next']", -1))
    assert ids(records) == [1, 2]
    assert isinstance(error, NonExistenceError)
    assert "No attribute `X-Next` in object:" in str(error)
    assert '"x-next":"' in str(error)


def test_header_info_last_value_wins_and_links_join() -> None:
    headers = [
        ("X-Token", "stale"),
        ("x-token", "fresh"),
        ("Link", '</a>; rel="first"'),
        ("LINK", '</b>; rel="next"'),
    ]
    assert header_info(headers, parse_link=True) == {
        "x-token": "fresh",
        "link": {'rel="first"': "/a", 'rel="next"': "/b"},
    }
    assert header_info(headers, parse_link=False)["link"] == '</a>; rel="first", </b>; rel="next"'


TOKEN_FROM_HEADER = (
    "r.branch(info['header']['x-page-token'].default(None) == None, None, "
    "{'params': {'token': info['header']['x-page-token']}})"
)


def test_repeated_header_keeps_its_last_value(api: LocalServer, sync: t.Any) -> None:
    """The server sends `X-Page-Token: stale` then `x-page-token: t2`: `page` sees `t2`."""
    result = sync(cfg(f"{api.url}/tokens", TOKEN_FROM_HEADER, -1))
    assert ids(result.records("s")) == expected_ids()
    assert targets(api) == ["/tokens", "/tokens?token=t2", "/tokens?token=t3"]


# ------------------------------------------------------------------ return values (§4)


def test_null_stops_and_the_last_page_is_still_emitted(api: LocalServer, sync: t.Any) -> None:
    page = "r.branch(info['body']['path'] == '/echo', '/echo/2', None)"
    result = sync(cfg(f"{api.url}/echo", page, -1))
    assert [r["path"] for r in result.records("s")] == ["/echo", "/echo/2"]
    assert targets(api) == ["/echo", "/echo/2"]


def test_a_literal_null_makes_one_request(api: LocalServer, sync: t.Any) -> None:
    assert len(sync(cfg(f"{api.url}/echo", "None", -1)).records("s")) == 1
    assert targets(api) == ["/echo"]


@pytest.mark.parametrize(
    ("returned", "second"),
    [
        # relative: resolved against /echo/1; current params merged; the URL's own `b` wins
        ("'two?b=url&c=3'", "/echo/two?b=url&c=3&a=1"),
        ("'/echo/two'", "/echo/two?a=1&b=x%20y"),
        ("'?a=url'", "/echo/1?a=url&b=x%20y"),
        ("'{base}/echo/abs?c=3'", "/echo/abs?c=3&a=1&b=x%20y"),
    ],
)
def test_a_string_is_the_next_url(
    api: LocalServer, sync: t.Any, returned: str, second: str
) -> None:
    returned = returned.format(base=api.url)
    page = f"r.branch(info['body']['path'] == '/echo/1', {returned}, None)"
    sync(cfg(f"{api.url}/echo/1", page, 2, params={"a": 1, "b": "x y"}))
    assert targets(api) == ["/echo/1?a=1&b=x%20y", second]


def test_url_and_params_merge_params_and_info_params_is_the_merge(
    api: LocalServer, sync: t.Any
) -> None:
    """`{url, params}` adds params (never removes); `info.params` is the merged params,
    not what the URL string carries (`a=url` is in the URL, `info.params.a` stays 1)."""
    page = (
        "r.branch("
        "info['body']['path'] == '/echo/1', {'url': '/echo/two?a=url', 'params': {'c': 3}}, "
        "info['body']['path'] == '/echo/two', "
        "{'url': '/echo/three', 'params': {'seen': info['params'].to_json_string()}}, "
        "None)"
    )
    sync(cfg(f"{api.url}/echo/1", page, -1, params={"a": 1, "b": 2}))
    seen = quote(json.dumps({"a": 1, "b": 2, "c": 3}, separators=(",", ":")), safe="")
    assert targets(api) == [
        "/echo/1?a=1&b=2",
        "/echo/two?a=url&b=2&c=3",
        f"/echo/three?a=1&b=2&c=3&seen={seen}",
    ]


def test_returned_params_win_over_the_returned_urls_own_query(
    api: LocalServer, sync: t.Any
) -> None:
    page = "{'url': '/echo/two?c=url&d=4', 'params': {'c': 3}}"
    sync(cfg(f"{api.url}/echo", page, 2))
    assert targets(api) == ["/echo", "/echo/two?d=4&c=3"]


def test_returned_params_never_remove_one_and_null_sends_it_empty(
    api: LocalServer, sync: t.Any
) -> None:
    sync(cfg(f"{api.url}/echo", "{'params': {'b': None}}", 2, params={"a": 1, "b": 2}))
    assert targets(api) == ["/echo?a=1&b=2", "/echo?a=1&b="]


def test_params_alone_keep_the_current_url(api: LocalServer, sync: t.Any) -> None:
    page = "r.branch(info['params']['page'] < 3, {'params': {'page': info['params']['page'] + 1}}, None)"
    sync(cfg(f"{api.url}/echo/1?keep=me&page=0", page, -1, params={"page": 1}))
    assert targets(api) == [
        "/echo/1?keep=me&page=1",
        "/echo/1?keep=me&page=2",
        "/echo/1?keep=me&page=3",
    ]


def test_params_alone_after_a_string_keep_that_url(api: LocalServer, sync: t.Any) -> None:
    page = (
        "r.branch(info['body']['path'] == '/echo', '/echo/two?page=7&x=1', "
        "info['body']['path'] == '/echo/two' and info['body']['args']['page'][0] == '7', "
        "{'params': {'page': 9}}, None)"
    )
    sync(cfg(f"{api.url}/echo", page, -1, params={"page": 1}))
    assert targets(api) == ["/echo?page=1", "/echo/two?page=7&x=1", "/echo/two?x=1&page=9"]


def test_url_null_stops(api: LocalServer, sync: t.Any) -> None:
    result = sync(cfg(f"{api.url}/echo", "{'url': None, 'params': {'x': 1}}", -1))
    assert len(result.records("s")) == 1
    assert targets(api) == ["/echo"]


BAD_RETURNS = [
    ("{}", "OBJECT returned by `page` must contain `url` and/or `params` fields."),
    (
        "{'next': 'x'}",
        "OBJECT returned by `page` must contain `url` and/or `params` fields. "
        "It has the `next` field.",
    ),
    (
        # `data` moves a request body (see tests/test_body_pagination.py); a GET has none
        "{'params': {'page': 2}, 'data': {'page': 2}}",
        "`page` returned `data`, but this request has no body to merge it into "
        "(give the spec `data` or `json`).",
    ),
    (
        "{'url': '/echo/2', 'headers': {}, 'body': 1}",
        "OBJECT returned by `page` has the `body` and `headers` fields, which `page` cannot "
        "return: it may contain `url` and/or `params` fields only.",
    ),
    ("7", "Expected `page` to return an OBJECT, but found NUMBER."),
    ("1.5", "Expected `page` to return an OBJECT, but found NUMBER."),
    ("['/echo/2']", "Expected `page` to return an OBJECT, but found ARRAY."),
    ("True", "Expected `page` to return an OBJECT, but found BOOL."),
    ("False", "Expected `page` to return an OBJECT, but found BOOL."),
    (
        "{'url': 5}",
        "Expected `url` in OBJECT returned by `page` to be a STRING or NULL, but found NUMBER.",
    ),
    ("{'params': None}", "Expected `params` to be an OBJECT, but found NULL:\nnull"),
    ("{'params': [1]}", "Expected `params` to be an OBJECT, but found ARRAY:\n[1]"),
    (
        "{'params': {'a': {'b': 1}}}",
        'Expected `params.a` to be a NUMBER, STRING or NULL, but found OBJECT:\n{"b":1}',
    ),
    (
        "{'params': {'a': True}}",
        "Expected `params.a` to be a NUMBER, STRING or NULL, but found BOOL:\ntrue",
    ),
]


@pytest.mark.parametrize(("page", "inner"), BAD_RETURNS)
def test_unusable_return_values_are_errors(api: LocalServer, page: str, inner: str) -> None:
    records, error = sync_failing(cfg(f"{api.url}/echo", page, -1))
    assert len(records) == 1  # the page that was read is still written
    assert targets(api) == ["/echo"]
    assert isinstance(error, PaginationError)
    assert str(error).startswith(
        f"Error in HTTP GET of `{api.url}/echo` [stream s, page 1]: {inner}\n"
    )
    assert f"\nError occurred during `page` ({page}) called with:\n" in str(error)


# ------------------------------------------------------------------ page_limit


def test_page_limit_0_makes_no_request(api: LocalServer, sync: t.Any) -> None:
    result = sync(cfg(f"{api.url}/numbered", "r.error('never evaluated')", 0))
    assert result.records("s") == []
    assert [m["stream"] for m in result.of_type("SCHEMA")] == ["s"]
    assert api.log == []


def test_page_limit_1_makes_one_request_and_never_evaluates_page(
    api: LocalServer, sync: t.Any
) -> None:
    result = sync(cfg(f"{api.url}/numbered", "r.error('page must not be evaluated')", 1))
    assert ids(result.records("s")) == [1, 2]
    assert targets(api) == ["/numbered"]


def test_page_is_evaluated_when_the_limit_allows_more(api: LocalServer) -> None:
    """The counterpart of the test above: the same expression does fail at page_limit 2."""
    records, error = sync_failing(cfg(f"{api.url}/numbered", "r.error('evaluated')", 2))
    assert ids(records) == [1, 2]
    assert isinstance(error, ExpressionError)
    assert str(error).startswith(
        f"Error in HTTP GET of `{api.url}/numbered` [stream s, page 1]: evaluated\n"
    )


@pytest.mark.parametrize("limit", [2, 3, 5])
def test_page_limit_n_makes_exactly_n_requests(api: LocalServer, sync: t.Any, limit: int) -> None:
    config = cfg(f"{api.url}/numbered", SEED_PAGE_PARAMS, limit, params={"page": 1, "per_page": 1})
    assert ids(sync(config).records("s")) == list(range(1, limit + 1))
    assert targets(api) == [f"/numbered?page={n}&per_page=1" for n in range(1, limit + 1)]


def test_page_limit_minus_1_stops_only_at_null(api: LocalServer, sync: t.Any) -> None:
    config = cfg(f"{api.url}/link/quoted", "link-next", -1, params={"per_page": 1})
    assert ids(sync(config).records("s")) == expected_ids()
    assert len(api.log) == TOTAL


# ------------------------------------------------------------------ empty pages


def test_an_empty_page_emits_nothing_and_does_not_stop(api: LocalServer, sync: t.Any) -> None:
    page = (
        "r.branch(info['body']['next_page'] == None, None, "
        "{'params': {'page': info['body']['next_page']}})"
    )
    result = sync(cfg(f"{api.url}/gappy", page, -1, records_path="$.items[*]"))
    assert ids(result.records("s")) == expected_ids()  # pages of 2, 0, 0, 3 records
    assert targets(api) == ["/gappy", "/gappy?page=2", "/gappy?page=3", "/gappy?page=4"]


# ------------------------------------------------------------------ the loop guard


@pytest.mark.parametrize(
    ("start", "page", "params", "made", "again", "first"),
    [
        ("/loop/self", "info['body']['next']", {}, ["/loop/self"], 2, 1),
        ("/loop/a", "info['body']['next']", {}, ["/loop/a", "/loop/b"], 3, 1),
        ("/echo", "{'params': {'page': 1}}", {"page": 1}, ["/echo?page=1"], 2, 1),
        (
            "/echo",
            "{'params': {'page': (info['params']['page'] + 1) % 3}}",
            {"page": 0},
            ["/echo?page=0", "/echo?page=1", "/echo?page=2"],
            4,
            1,
        ),
    ],
    ids=["A-A", "A-B-A", "same-params", "params-cycle"],
)
def test_a_repeated_request_is_an_error_naming_both_pages(
    api: LocalServer,
    start: str,
    page: str,
    params: dict[str, t.Any],
    made: list[str],
    again: int,
    first: int,
) -> None:
    records, error = sync_failing(cfg(f"{api.url}{start}", page, -1, params=params))
    assert len(records) == len(made)
    assert targets(api) == made
    assert isinstance(error, PaginationError)
    assert (
        f"`page` of stream `s` led page {again} back to `{api.url}{made[first - 1]}`, "
        f"the same request as page {first}; stopping instead of looping forever."
    ) in str(error)


def test_the_loop_guard_does_not_fire_on_different_requests(api: LocalServer, sync: t.Any) -> None:
    """`page=1` then `page=1&x=1`: a different request, not a loop."""
    page = "r.branch(info['params'].has_fields('x'), None, {'params': {'x': 1}})"
    sync(cfg(f"{api.url}/echo", page, -1, params={"page": 1}))
    assert targets(api) == ["/echo?page=1", "/echo?page=1&x=1"]


# ------------------------------------------------------------------ errors in `page`


def test_an_error_in_page_reads_like_rhttp_and_hides_secrets(api: LocalServer) -> None:
    pad = "p" * 2 * INFO_BODY_CHARS
    url = f"{api.url}/echo?access_token=SECRETVALUE&pad={pad}"
    records, error = sync_failing(cfg(url, "info['body']['missing']", -1))
    assert len(records) == 1
    assert isinstance(error, NonExistenceError)
    message = str(error)
    assert "SECRETVALUE" not in message
    head, excerpt, during, info_text = message.split("\n")
    assert head == (
        f"Error in HTTP GET of `{api.url}/echo?access_token={MASK}&pad={pad}` "
        "[stream s, page 1]: No attribute `missing` in object:"
    )
    assert excerpt.startswith('{"method":"GET","target":"/echo?access_token=' + MASK)
    assert during == "Error occurred during `page` (info['body']['missing']) called with:"
    assert info_text.startswith('{"params":{},"header":{"server":')
    assert '"content-type":"application/json"' in info_text
    body = info_text.split(',"body":', 1)[1]
    assert body.startswith('{"method":"GET","target":"/echo?access_token=' + MASK)
    assert body.endswith(" ...}")  # cut short
    assert len(body) == INFO_BODY_CHARS + len(" ...}")


def test_a_secret_cut_in_half_by_an_excerpt_is_still_masked(api: LocalServer) -> None:
    """The evaluator quotes ~200 characters of the object; a cut secret must not leak."""
    secret = "S3CR3T" * 40
    page = "info['body']['args']['nope']"
    records, error = sync_failing(
        cfg(f"{api.url}/echo", page, -1, params={"a": "x" * 150, "api_key": secret})
    )
    assert len(records) == 1
    assert "S3CR3T" not in str(error)
    assert "No attribute `nope` in object:" in str(error)


def test_an_error_in_page_shows_the_merged_params(api: LocalServer) -> None:
    """`info.params` is the merged params, not what the URL string carries."""
    records, error = sync_failing(cfg(f"{api.url}/echo?page=7", SEED_PAGE_PARAMS, -1))
    assert len(records) == 1
    assert isinstance(error, NonExistenceError)
    assert str(error).startswith(
        f"Error in HTTP GET of `{api.url}/echo?page=7` [stream s, page 1]: "
        "No attribute `page` in object:\n{}\n"
    )
    assert '{"params":{},"header":' in str(error)


def test_a_type_error_in_page_is_not_absorbed_by_default(api: LocalServer) -> None:
    page = "{'params': {'page': (info['body']['path'] + 1).default(1)}}"
    records, error = sync_failing(cfg(f"{api.url}/echo", page, -1))
    assert len(records) == 1
    assert type(error) is ExpressionError
    assert re.match(
        rf"Error in HTTP GET of `{re.escape(api.url)}/echo` \[stream s, page 1\]: \S", str(error)
    )


# ------------------------------------------------------------------ the state machine


def _paginator(url: str, page: str, page_limit: int) -> Paginator:
    (spec,) = load_specs(
        {"streams": [{"name": "s", "url": url, "page": page, "page_limit": page_limit}]}
    )
    return Paginator(spec, Redactor())


def test_str_shows_the_state() -> None:
    paginator = _paginator("http://h/x", "link-next", 3)
    paginator.first()
    assert str(paginator) == "Paginator(page='link-next', page_limit=3, requests=1)"


def test_resume_respects_page_limit() -> None:
    request = PageRequest("http://h/x?page=3", {}, frozenset())
    assert _paginator("http://h/x", "link-next", 3).resume(request, 3) is None
    paginator = _paginator("http://h/x", "link-next", 3)
    assert paginator.resume(request, 2) == request
    assert paginator.requests == 3
    assert paginator.exhausted
    assert _paginator("http://h/x", "link-next", -1).resume(request, 50) == request


def test_an_error_message_masks_many_secrets_quickly() -> None:
    """A body full of sensitive fields: every one masked, cut or whole, in little time."""
    paginator = _paginator("http://h/x", "info['body']['nope']", -1)
    first = paginator.first()
    assert first is not None
    body = {"users": [{"password": f"pw-{i:06d}-" + "x" * 40} for i in range(20_000)]}
    response = Response(200, [("Content-Type", "application/json")], b"{}", "http://h/x", 0.0)
    started = time.monotonic()
    with pytest.raises(NonExistenceError) as caught:
        paginator.next(first, response, body)
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "No attribute `nope` in object:" in message
    assert "pw-" not in message
    assert f'"password":"{MASK}' in message


def _split_char_by_char(text: str, sep: str) -> list[str]:
    """The Link splitter's rule, one character at a time (what the regex must match)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = bracketed = False
    for char in text:
        if char == '"' and not bracketed:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracketed = True
        elif char == ">" and not quoted:
            bracketed = False
        if char == sep and not quoted and not bracketed:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def test_link_header_splitting_agrees_with_the_rule_char_by_char() -> None:
    rng = random.Random(8288)
    for _ in range(20_000):
        text = "".join(rng.choice('"<>,;a =') for _ in range(rng.randint(0, 24)))
        for sep in ",;":
            assert link_module._split_outside_quotes(text, sep) == _split_char_by_char(text, sep)
