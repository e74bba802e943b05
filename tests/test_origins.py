"""Credentials stay with their origin: a second loopback server on another port gets none.

Origin A (the session's LocalServer) is the stream's own; origin B is a second LocalServer
on another port of the same host, which logs every header and query it receives. A
redirect from A to B, and a `Link` next URL from A to B, must carry no credential of any
kind to B (auth of every type, `secret_headers`, sensitive headers, a `Cookie` from the
config, cookies A set in the session's jar, a secret param, an API key in the query) unless
B is listed in `trusted_origins`; A itself always gets them.
"""

from __future__ import annotations

import base64
import logging
import typing as t
from urllib.parse import quote, quote_plus

import pytest
from server import LocalServer, Reply, Request, json_reply

from tap_rhttp.config.load import load_specs
from tap_rhttp.config.templates import render_spec
from tap_rhttp.errors import ConfigError, ConfigErrors
from tap_rhttp.http.client import HttpClient
from tap_rhttp.http.origins import OriginPolicy, origin_of, parse_origin, without_credentials
from tap_rhttp.redact import Redactor, build_redactor
from tap_rhttp.run.resume import ResumeState

if t.TYPE_CHECKING:
    from collections.abc import Iterator

USER = "alice"
PASSWORD = "origin-pa55-Qx7!"
TOKEN = "origin-bearer-tok-5e2c"
API_KEY = "origin-api-key-9d1f"
AUTH_TOKEN_HEADER = "origin-x-auth-token-71ab"
CUSTOM = "origin-custom-secret-3c4d"
CONFIG_COOKIE = "origin-config-cookie-8e9f"
JAR_COOKIE = "origin-jar-cookie-2b3c"
PARAM_KEY = "origin-param-key-6a7b"

AUTHS: dict[str, dict[str, str]] = {
    "basic": {"type": "basic", "user": USER, "pass": PASSWORD},
    "digest": {"type": "digest", "user": USER, "pass": PASSWORD},
    "bearer": {"type": "bearer", "token": TOKEN},
    "api_key header": {"type": "api_key", "name": "X-Key", "value": API_KEY, "in": "header"},
    "api_key query": {"type": "api_key", "name": "key", "value": API_KEY, "in": "query"},
}
DIGEST_CHALLENGE = 'Digest realm="rhttp", nonce="n0nce-{port}", qop="auth", opaque="0paque"'


def secrets_of(kind: str) -> set[str]:
    """Every spelling of every credential of a run with this auth kind."""
    values = {AUTH_TOKEN_HEADER, CUSTOM, CONFIG_COOKIE, JAR_COOKIE, PARAM_KEY}
    values |= {v for k, v in AUTHS[kind].items() if k in ("pass", "token", "value")}
    found: set[str] = set()
    for value in values:
        found |= {value, quote(value, safe=""), quote_plus(value)}
    if kind in ("basic", "digest"):
        found.add(base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    return found


def received(request: Request) -> str:
    """All a server saw of one request: the target and every header."""
    return request.target + "\n" + "\n".join(f"{k}: {v}" for k, v in request.headers.items())


def digest_guard(kind: str, server: LocalServer, request: Request) -> Reply | None:
    """With digest auth, a server challenges any request without a Digest header."""
    if kind == "digest" and not request.headers.get("Authorization", "").startswith("Digest "):
        challenge = DIGEST_CHALLENGE.format(port=server.port)
        return Reply(401, "auth please", [("WWW-Authenticate", challenge)], "text/plain")
    return None


@pytest.fixture
def other() -> Iterator[LocalServer]:
    """Origin B: a second loopback server, another port of the same host."""
    server = LocalServer().start()
    yield server
    server.stop()


def install(a: LocalServer, b: LocalServer, kind: str) -> None:
    """A: /hop sets a cookie and redirects to B; /link sets a cookie and links to B."""
    jar_cookie = ("Set-Cookie", f"jar={JAR_COOKIE}; Path=/")

    @a.route("/hop")
    def hop(request: Request) -> Reply:
        return digest_guard(kind, a, request) or Reply(
            302, b"", [jar_cookie, ("Location", f"{b.url}/landing?from=a")], None
        )

    @a.route("/link")
    def link(request: Request) -> Reply:
        return digest_guard(kind, a, request) or json_reply(
            [{"id": 1}], headers=[jar_cookie, ("Link", f'<{b.url}/landing?page=2>; rel="next"')]
        )

    @b.route("/landing")
    def landing(request: Request) -> Reply:
        return digest_guard(kind, b, request) or json_reply([{"id": 2}])


def config_for(a: LocalServer, path: str, kind: str, **extra: t.Any) -> dict[str, t.Any]:
    spec: dict[str, t.Any] = {
        "name": "s",
        "url": f"{a.url}{path}",
        "auth": AUTHS[kind],
        "params": {"api_key": PARAM_KEY},
        "header": {
            "X-Auth-Token": AUTH_TOKEN_HEADER,
            "X-Customer": CUSTOM,
            "Cookie": f"pref={CONFIG_COOKIE}",
        },
        "secret_headers": ["X-Customer"],
        "redirects": 2,
        "reattempts": 1,
        "on_error": "skip",
        "schema": {"properties": {"id": {"type": "integer"}}},
        **extra,
    }
    if path == "/link":
        spec.update(page="link-next", page_limit=3)
    return {"streams": [spec]}


@pytest.mark.parametrize("path", ["/hop", "/link"], ids=["redirect", "link-next"])
@pytest.mark.parametrize("kind", list(AUTHS))
def test_another_origin_gets_no_credential(
    kind: str, path: str, server: LocalServer, other: LocalServer, sync: t.Any
) -> None:
    install(server, other, kind)

    sync(config_for(server, path, kind))

    # A got every credential (after its own digest challenge).
    at_a = [r for r in server.log if r.path == path]
    assert any(any(s in received(r) for s in secrets_of(kind)) for r in at_a)
    # B was asked, and received none of them in any spelling.
    assert other.log, "the redirect / next link was not followed"
    for request in other.log:
        leaked = sorted(s for s in secrets_of(kind) if s in received(request))
        assert not leaked, f"{request.target} received {leaked}"
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers
    if kind == "digest":  # B's challenge was not answered
        assert len(other.log) == 1


@pytest.mark.parametrize("path", ["/hop", "/link"], ids=["redirect", "link-next"])
@pytest.mark.parametrize("kind", list(AUTHS))
def test_a_trusted_origin_gets_the_credentials(
    kind: str, path: str, server: LocalServer, other: LocalServer, sync: t.Any
) -> None:
    install(server, other, kind)

    result = sync(config_for(server, path, kind, trusted_origins=[other.url]))

    at_b = "\n".join(received(r) for r in other.log)
    expected = {
        "basic": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "digest": 'Digest username="alice"',
        "bearer": TOKEN,
        "api_key header": API_KEY,
        "api_key query": f"key={API_KEY}",
    }[kind]
    # A query API key goes into the stream's own URLs (and next links), not into the
    # Location a server redirects to.
    if not (kind == "api_key query" and path == "/hop"):
        assert expected in at_b
    for value in (AUTH_TOKEN_HEADER, CUSTOM):
        assert value in at_b
    if path == "/link":  # a next link carries the params; a redirect's Location decides
        assert f"api_key={PARAM_KEY}" in at_b
    assert sorted(r["id"] for r in result.records("s")) == ([1, 2] if path == "/link" else [2])


@pytest.mark.parametrize("kind", list(AUTHS))
def test_chains_sharing_connections_keep_their_own_credentials_and_cookies(
    kind: str, server: LocalServer, other: LocalServer, sync: t.Any
) -> None:
    """A child's row chains send through their worker's connections, one after another;
    each still decides credentials per hop, and keeps its own cookie jar."""
    install(server, other, kind)
    config = config_for(server, "/hop", kind)
    child = config["streams"][0]
    child.update(url=f"{server.url}/hop?row={{{{ row['id'] }}}}", parent="rows")
    parent = {"name": "rows", "url": f"{server.url}/records?n=4", "primary_keys": ["id"]}
    config["streams"].insert(0, parent)

    result = sync(config)

    if kind != "digest":  # (B's digest challenge is not answered: each row is skipped)
        assert [r["rows_id"] for r in result.records("s")] == [1, 2, 3, 4]
    at_a = [r for r in server.log if r.path == "/hop"]
    assert {r.args["row"] for r in at_a} == {"1", "2", "3", "4"}
    assert len({r.handler.client_address for r in at_a}) == 1  # one connection, shared
    for request in at_a:  # a cookie one row's chain was given never goes with another's
        assert JAR_COOKIE not in received(request), request.target
    assert any(any(s in received(r) for s in secrets_of(kind)) for r in at_a)
    assert len([r for r in other.log if r.path == "/landing"]) >= 4
    for request in other.log:
        leaked = sorted(s for s in secrets_of(kind) if s in received(request))
        assert not leaked, f"{request.target} received {leaked}"
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers


def test_withheld_credentials_are_reported_once(
    server: LocalServer, other: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    install(server, other, "bearer")
    caplog.set_level(logging.INFO)

    sync(config_for(server, "/link", "bearer"))

    lines = [r.getMessage() for r in caplog.records if "without its credentials" in r.getMessage()]
    assert len(lines) == 1
    assert f"127.0.0.1:{other.port}" in lines[0]


def test_a_port_change_is_another_origin(server: LocalServer, other: LocalServer) -> None:
    policy = OriginPolicy(f"{server.url}/x")
    assert policy.trusts(f"{server.url}/y?z=1")
    assert not policy.trusts(f"{other.url}/y")
    assert not policy.trusts(server.url.replace("http://", "https://") + "/y")
    assert OriginPolicy("https://api.example.com/v1").trusts("https://API.example.com:443/v2")
    assert not OriginPolicy("http://api.example.com/v1").trusts("https://api.example.com/v1")
    assert origin_of("ftp://example.com/x") is None


def test_credentials_leave_a_url_by_value_not_by_name() -> None:
    redactor = Redactor([API_KEY])
    url = f"https://u:pw@cdn.example/x?key={API_KEY}&X-Amz-Signature=server-made&page=2#f"
    assert without_credentials(url, redactor.is_secret) == (
        "https://cdn.example/x?X-Amz-Signature=server-made&page=2#f"
    )
    assert without_credentials(f"https://cdn.example/x?k={quote(API_KEY)}", redactor.is_secret) == (
        "https://cdn.example/x"
    )


def test_prepare_strips_every_credential_for_another_origin(server: LocalServer) -> None:
    (spec,) = load_specs(config_for(server, "/link", "bearer"))
    redactor = build_redactor([spec])
    client = HttpClient(spec.request_options(), redactor)
    client.session.cookies.set("jar", JAR_COOKIE, domain="127.0.0.1")
    try:
        home = client.prepare(f"{server.url}/x")
        away = client.prepare("http://127.0.0.1:1/x")
    finally:
        client.close()
    assert home.headers["Authorization"] == f"Bearer {TOKEN}"
    assert CONFIG_COOKIE in home.headers["Cookie"]
    assert not {"Authorization", "Cookie", "X-Auth-Token", "X-Customer"} & set(away.headers)
    assert away.headers["User-Agent"].startswith("tap-rhttp/")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://api2.example.com", True),
        ("https://api2.example.com/", True),
        ("http://127.0.0.1:8080", True),
        ("https://[::1]:8443", True),
        ("https://api2.example.com/v1", False),
        ("https://api2.example.com?x=1", False),
        ("https://user@api2.example.com", False),
        ("ftp://api2.example.com", False),
        ("api2.example.com", False),
        (3, False),
    ],
)
def test_trusted_origins_are_origins(value: t.Any, ok: bool) -> None:
    assert (parse_origin(value) is not None) is ok
    config = {"streams": [{"name": "s", "url": "https://a.example", "trusted_origins": [value]}]}
    if ok:
        assert load_specs(config)[0].trusted_origins
        return
    with pytest.raises(ConfigErrors) as caught:
        load_specs(config)
    message = str(caught.value)
    assert "streams[0].trusted_origins[0]" in message
    assert "is not an origin" in message


def test_trusted_origins_must_be_a_list() -> None:
    with pytest.raises(ConfigErrors, match=r"streams\[0\]\.trusted_origins: .*list of origins"):
        load_specs({"streams": [{"name": "s", "url": "https://a", "trusted_origins": "x"}]})


def _foreign_state(spec_hash: str, url: str) -> dict[str, t.Any]:
    chain = {"url": url, "params": {"page": 3}, "override": ["page"], "requests": 2}
    return {"bookmarks": {"s": {"rhttp": {"spec": spec_hash, "chains": {"-": chain}, "done": []}}}}


def test_a_resume_position_on_another_origin_is_ignored(
    server: LocalServer, other: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": f"{server.url}/pages/number",
                "auth": AUTHS["bearer"],
                "params": {"size": 2, "total": 3},
                "page": "r.branch(info['body'].count() == 0, None, "
                "{'params': {'page': info['params']['page'].default(1) + 1}})",
                "page_limit": -1,
            }
        ]
    }
    (spec,) = load_specs(config)
    spec_hash = ResumeState(spec, build_redactor([spec]), track_done=False).hash

    result = sync(config, state=_foreign_state(spec_hash, f"{other.url}/pages/number"))

    assert not other.log, "the foreign resume position was requested"
    assert [r["id"] for r in result.records("s")] == [1, 2, 3]
    assert server.log[0].args.get("page") is None  # started from the first page
    warnings = [r for r in caplog.records if "resume position on" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert f"127.0.0.1:{other.port}" in warnings[0].getMessage()


def test_a_resume_position_on_a_trusted_origin_is_used(
    server: LocalServer, other: LocalServer, sync: t.Any
) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": f"{server.url}/pages/number",
                "params": {"size": 2, "total": 5},
                "trusted_origins": [other.url],
                "page": "r.branch(info['body'].count() == 0, None, "
                "{'params': {'page': info['params']['page'].default(1) + 1}})",
                "page_limit": -1,
            }
        ]
    }
    (spec,) = load_specs(config)
    spec_hash = ResumeState(spec, build_redactor([spec]), track_done=False).hash

    result = sync(config, state=_foreign_state(spec_hash, f"{other.url}/pages/number"))

    assert other.log[0].args["page"] == "3"
    assert [r["id"] for r in result.records("s")] == [5]


@pytest.mark.parametrize(
    ("url", "item"),
    [
        ("https://a.example/users/{{ item }}/repos", ".."),
        ("https://a.example/users/{{ item }}/repos", "."),
        ("https://a.example/users/{{ item }}./repos", "."),
        ("{{ item }}", "https://a.example/users/%2e%2E/repos"),
        ("{{ item }}", "https://a.example/users/.%2E"),
    ],
)
def test_a_template_value_cannot_be_a_dot_segment(url: str, item: str) -> None:
    (spec,) = load_specs({"streams": [{"name": "s", "url": url, "for_each": [item]}]})
    with pytest.raises(ConfigError) as caught:
        render_spec(spec, {"item": item, "config": {}, "secrets": {}})
    assert caught.value.path == "streams[0].url"
    assert "path segment" in str(caught.value)


@pytest.mark.parametrize(
    ("item", "url"),
    [
        ("a/../b", "https://a.example/users/a%2F..%2Fb/repos"),
        ("...", "https://a.example/users/.../repos"),
        ("..x", "https://a.example/users/..x/repos"),
        ("?q=1#f", "https://a.example/users/%3Fq%3D1%23f/repos"),
        ("%2e%2e", "https://a.example/users/%252e%252e/repos"),
    ],
)
def test_other_template_values_stay_inside_their_segment(item: str, url: str) -> None:
    (spec,) = load_specs(
        {
            "streams": [
                {"name": "s", "url": "https://a.example/users/{{ item }}/repos", "for_each": [item]}
            ]
        }
    )
    assert render_spec(spec, {"item": item, "config": {}, "secrets": {}}).url == url


def test_a_dot_segment_item_fails_only_its_chain(
    server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/echo/{{ item }}/x",
                "for_each": ["a", "..", "b"],
                "on_error": "skip",
            }
        ]
    }
    result = sync(config)
    assert [r["path"] for r in result.records("s")] == ["/echo/a/x", "/echo/b/x"]
    assert [r.path for r in server.log] == ["/echo/a/x", "/echo/b/x"]
    assert "path segment" in caplog.text
