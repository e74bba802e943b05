"""Requests as r.http makes them, checked byte for byte at the local server."""

from __future__ import annotations

import typing as t

import pytest
import requests
from server import Reply, json_reply

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import PermanentRequestError, ResponseFormatError, TransientRequestError
from tap_rhttp.http.client import HttpClient
from tap_rhttp.http.urls import encode_pairs, format_param, merge_query
from tap_rhttp.redact import build_redactor


def cfg(url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"streams": [{"name": "s", "url": url, **spec}]}


def echo(sync: t.Any, server: t.Any, path: str = "/echo", **spec: t.Any) -> dict[str, t.Any]:
    (record,) = sync(cfg(server.url + path, **spec)).records("s")
    return record


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), ("a b", "a b"), (1, "1"), (0.1, "0.1"), (1e21, "1e+21"), (2.0, "2.0"), (-3, "-3")],
)
def test_param_values_print_shortest(value: t.Any, text: str) -> None:
    assert format_param(value) == text


def test_pairs_sorted_and_escaped_like_rethinkdb() -> None:
    assert encode_pairs({"b": "x y", "a": None, "c": "a,b:c/d&e=f", "é": "ü"}) == [
        "a=",
        "b=x%20y",
        "c=a%2Cb%3Ac%2Fd%26e%3Df",
        "%C3%A9=%C3%BC",
    ]


@pytest.mark.parametrize(
    ("url", "params", "override", "expected"),
    [
        ("http://h/p", {}, (), "http://h/p"),
        ("http://h/p", {"a": 1}, ("a",), "http://h/p?a=1"),
        ("http://h/p?a=1&b=2", {"a": 9}, ("a",), "http://h/p?b=2&a=9"),
        ("http://h/p?a=1&b=2", {"a": 9}, (), "http://h/p?a=1&b=2"),
        ("http://h/p?q=a%20b&q=c", {"q": "z"}, ("q",), "http://h/p?q=z"),
        ("http://h/p?keep=1,2&x=%3A", {"y": 1}, ("y",), "http://h/p?keep=1,2&x=%3A&y=1"),
        ("http://h/p?flag&e=", {"z": None}, ("z",), "http://h/p?flag&e=&z="),
        ("http://h/p#frag", {"a": 1}, ("a",), "http://h/p?a=1"),
    ],
)
def test_merge_query_never_sends_a_key_twice(
    url: str, params: dict[str, t.Any], override: tuple[str, ...], expected: str
) -> None:
    assert merge_query(url, params, override) == expected


def test_params_go_out_byte_for_byte(server: t.Any, sync: t.Any) -> None:
    record = echo(
        sync,
        server,
        "/echo?keep=a%20b&q=x&list=1,2",
        params={"q": "banana split", "limit": 2, "f": 0.1, "sym": "a,b:c/d", "n": None},
    )
    assert (
        record["target"]
        == "/echo?keep=a%20b&list=1,2&f=0.1&limit=2&n=&q=banana%20split&sym=a%2Cb%3Ac%2Fd"
    )


def test_default_headers_and_user_override(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, header={"user-agent": "mine/1", "X-Extra": "1"})
    headers = {k.lower(): v for k, v in record["headers"].items()}
    assert headers["user-agent"] == "mine/1"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["x-extra"] == "1"


@pytest.mark.parametrize("name", ["User-Agent", "Accept-Encoding", "Accept"])
def test_null_header_is_not_sent(server: t.Any, sync: t.Any, name: str) -> None:
    record = echo(sync, server, header={name: None})
    assert name.lower() not in {k.lower() for k in record["headers"]}


def test_post_string_body_and_user_content_type(server: t.Any, sync: t.Any) -> None:
    record = echo(
        sync, server, method="POST", data='{"a": 1}', header={"Content-Type": "application/json"}
    )
    assert record["body"] == '{"a": 1}'
    content_types = [v for k, v in record["headers"].items() if k.lower() == "content-type"]
    assert content_types == ["application/json"]


def test_post_form_encoding_matches_params_encoding(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, method="POST", data={"b": "x y", "a": 1.5, "n": None})
    assert record["body"] == "a=1.5&b=x%20y&n="


def test_delete_without_data_has_no_body(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, method="DELETE")
    assert record["method"] == "DELETE"
    assert record["body"] == ""


def test_json_body_is_compact_utf8(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, method="PATCH", data={"name": "Zoë", "n": [1, 2]})
    assert record["body"] == '{"name":"Zoë","n":[1,2]}'


def test_bearer_and_api_key_auth(server: t.Any, sync: t.Any) -> None:
    """What was sent is read at the server; the echo in the record is masked."""
    record = echo(sync, server, auth={"type": "bearer", "token": "tok-123456"})
    assert server.log[-1].headers["Authorization"] == "Bearer tok-123456"
    assert record["headers"]["Authorization"] == "Bearer ***REDACTED***"
    record = echo(sync, server, auth={"type": "api_key", "name": "X-Api-Key", "value": "k-9876"})
    assert server.log[-1].headers["X-Api-Key"] == "k-9876"
    assert record["headers"]["X-Api-Key"] == "***REDACTED***"
    record = echo(
        sync,
        server,
        "/echo?a=1",
        auth={"type": "api_key", "name": "api_key", "value": "k-9876", "in": "query"},
    )
    assert server.log[-1].target == "/echo?a=1&api_key=k-9876"
    assert record["target"] == "/echo?a=1&api_key=***REDACTED***"


def test_redirect_to_other_protocol_is_refused(server: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(f"{server.url}/redirect-to?url=ftp://127.0.0.1/x"))
    assert "Unsupported protocol (redirect target)." in str(info.value)


def test_redirect_hops_are_counted_exactly(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, "/redirect/3", redirects=3)
    assert record["path"] == "/echo"
    assert len(server.log) == 4
    with pytest.raises(PermanentRequestError, match="Number of redirects hit maximum amount"):
        sync(cfg(server.url + "/redirect/3", redirects=2))


def test_303_after_post_becomes_get(server: t.Any, sync: t.Any) -> None:
    record = echo(
        sync, server, f"/redirect-to?status=303&url={server.url}/echo", method="POST", data="x=1"
    )
    assert record["method"] == "GET"
    assert record["body"] == ""


def test_307_keeps_method_and_body(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, "/redirect-to?status=307&url=/echo", method="POST", data="x=1")
    assert record["method"] == "POST"
    assert record["body"] == "x=1"


def test_cookies_set_on_one_response_go_to_the_next_hop(server: t.Any, sync: t.Any) -> None:
    record = echo(sync, server, "/cookies/set?session=abc&next=/echo")
    assert record["headers"]["Cookie"] == "session=abc"


def test_timeout_covers_a_slow_drip_body(server: t.Any, sync: t.Any) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(TransientRequestError, match=r"timed out after 0\.500 seconds"):
        sync(cfg(server.url + "/drip?n=40&every=0.1", timeout=0.5))
    assert time.monotonic() - started < 2.5


def test_gzip_from_local_server(server: t.Any, sync: t.Any) -> None:
    records = sync(cfg(server.url + "/gzip")).records("s")
    assert len(records) == 50
    assert records[0] == {"gzipped": True, "n": 0}


def test_digest_nonce_is_reused_across_pages(server: t.Any, sync: t.Any) -> None:
    import hashlib
    import re

    from server import Reply, Request, json_reply

    realm, nonce, user, password = "r", "n0nce", "fred", "mxyzptlk"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    @server.route("/digest")
    def digest(request: Request) -> Reply:
        header = request.headers.get("Authorization", "")
        fields = dict(re.findall(r'(\w+)="?([^",]+)"?', header))
        if header.startswith("Digest ") and fields.get("nonce") == nonce:
            ha1 = md5(f"{user}:{realm}:{password}")
            ha2 = md5(f"{request.method}:{fields['uri']}")
            expected = md5(f"{ha1}:{nonce}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
            if fields.get("response") == expected:
                return json_reply([{"page": request.args.get("p"), "nc": fields["nc"]}])
        challenge = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
        return Reply(401, "", (("WWW-Authenticate", challenge),), "text/plain")

    config = cfg(
        server.url + "/digest",
        auth={"type": "digest", "user": user, "pass": password},
        params={"p": 1},
        page="{'params': {'p': info['params']['p'] + 1}}",
        page_limit=3,
    )
    records = sync(config).records("s")
    assert [r["page"] for r in records] == ["1", "2", "3"]
    assert [r["nc"] for r in records] == ["00000001", "00000002", "00000003"]
    statuses = [r.headers.get("Authorization", "").startswith("Digest") for r in server.log]
    assert statuses == [False, True, True, True]  # one challenge, then the nonce is reused


# ------------------------------------------------------------------ r.http's envelope


def test_an_error_after_a_redirect_names_the_url_asked_for_then_the_hop(
    server: t.Any, sync: t.Any
) -> None:
    asked = f"{server.url}/redirect-to?url=/status/404"
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(asked))
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{asked}` (after redirect to `{server.url}/status/404`) "
        "[stream s, page 1]: status code 404.\nheader:\n"
    )
    assert info.value.url == asked
    assert info.value.hop == f"{server.url}/status/404"


def test_a_refused_protocol_after_a_redirect_names_both(server: t.Any, sync: t.Any) -> None:
    asked = f"{server.url}/redirect-to?url=ftp://127.0.0.1/x"
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(asked))
    assert str(info.value) == (
        f"Error in HTTP GET of `{asked}` (after redirect to `ftp://127.0.0.1/x`) "
        "[stream s, page 1]: Unsupported protocol (redirect target)."
    )


@pytest.mark.parametrize(
    ("result_format", "reason"),
    [
        ("json", "failed to parse JSON response: Expecting value: line 1 column 1 (char 0)"),
        ("jsonp", "failed to parse JSONP response"),
    ],
)
def test_parse_failures_keep_the_envelope(
    server: t.Any, sync: t.Any, result_format: str, reason: str
) -> None:
    """Which stream, which page, which URL: a parse failure on page 2 of a sync says so."""

    @server.route("/half-json")
    def half(request: t.Any) -> Reply:
        if request.args.get("page") == "2":
            return Reply(200, "<html>oops</html>", (), "text/html")
        return json_reply([{"id": 1}], headers=[("Link", '</half-json?page=2>; rel="next"')])

    config = cfg(
        server.url + "/half-json", page="link-next", page_limit=-1, result_format=result_format
    )
    if result_format == "jsonp":
        config["streams"][0]["url"] = server.url + "/half-json?page=2"
    with pytest.raises(ResponseFormatError) as info:
        sync(config)
    url = server.url + "/half-json?page=2"
    page = 2 if result_format == "json" else 1
    assert str(info.value) == f"Error in HTTP GET of `{url}` [stream s, page {page}]: {reason}"


def test_a_parse_failure_after_a_redirect_names_the_hop(server: t.Any, sync: t.Any) -> None:
    asked = f"{server.url}/redirect-to?url=/body%3Fct%3Dtext/html%26b%3Dnope"
    with pytest.raises(ResponseFormatError) as info:
        sync(cfg(asked, result_format="json"))
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{asked}` (after redirect to "
        f"`{server.url}/body?ct=text/html&b=nope`) [stream s, page 1]: "
        "failed to parse JSON response: "
    )


def test_a_fan_out_error_names_the_chain(server: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(server.url + "/status/{{ item }}", for_each=[200, 404]))
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{server.url}/status/404` [stream s, for_each[1], page 1]: "
        "status code 404."
    )


# --------------------------------------------------------------- preparing, as requests does


def _sessions_own(client: HttpClient, url: str, sent: str | None) -> requests.PreparedRequest:
    """What ``Session.prepare_request`` made of the request the client's prepare makes."""
    headers = dict(client._headers)
    if sent and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = sent
    return client.session.prepare_request(
        requests.Request(
            method=client.options.method,
            url=url,
            headers=headers,
            data=client._body,
            auth=client.auth,
        )
    )


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"header": {"Accept": "application/json", "User-Agent": None, "X-Empty": ""}},
        {"method": "POST", "data": {"a": 1, "b": "é"}},
        {"method": "POST", "data": "raw text", "header": {"content-type": "text/plain"}},
        {"method": "PUT", "json": {"x": [1, 2]}},
        {"auth": {"type": "basic", "user": "u", "pass": "p@ss"}},
        {"auth": {"type": "digest", "user": "u", "pass": "p"}},
        {"auth": {"type": "bearer", "token": "tok"}},
        {"header": {"Accept-Encoding": None, "Connection": None}},
    ],
    ids=lambda spec: ",".join(spec) or "plain",
)
@pytest.mark.parametrize("netrc", [False, True])
def test_prepare_makes_what_the_session_makes(
    spec: dict[str, t.Any], netrc: bool, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "netrc"
    if netrc:
        path.write_text("machine 127.0.0.1 login nu password np\n")
    monkeypatch.setenv("NETRC", str(path))
    url = "http://127.0.0.1:9/a%2Fb/%E2%82%AC?q=1&r=a+b&s=%20#f"
    (parsed,) = load_specs({"streams": [{"name": "s", "url": url, **spec}]})
    client = HttpClient(parsed.request_options(), build_redactor([parsed]))
    client.session.cookies.set("jar", "v", domain="127.0.0.1")
    try:
        for _ in range(2):  # the second time, netrc comes from what the first one learned
            ours = client.prepare(url)
            theirs = _sessions_own(client, url, client._content_type)
            assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
            assert list(ours.headers.items()) == list(theirs.headers.items())
            assert ours.hooks == theirs.hooks
            jar, session_jar = t.cast("t.Any", ours)._cookies, t.cast("t.Any", theirs)._cookies
            assert dict(jar) == dict(session_jar)
            assert jar is not client.session.cookies
    finally:
        client.close()
    if netrc and "auth" not in spec:
        assert ours.headers["Authorization"].startswith("Basic ")
