"""OAuth2: a local token endpoint per grant, and an API that only takes its tokens.

The token endpoint (``/oauth/token`` on the loopback server) issues numbered access
tokens, checks the client credentials (Basic header or body) and each grant's own values,
and for the refresh_token grant rotates the refresh token: each refresh returns a new one
and invalidates the old, as many SaaS APIs do. The API (``/api/items``) answers 401 to a
missing, unknown, expired or revoked token. Tests count token requests at the server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import stat
import threading
import time
import typing as t
from urllib.parse import parse_qsl

import pytest
from proxy_server import ForwardProxy
from server import LocalServer, Reply, Request, json_reply

from tap_rhttp.errors import ConfigError, ConfigErrors, PermanentRequestError, TransientRequestError
from tap_rhttp.http.oauth2 import MAX_TOKEN_RESPONSE
from tap_rhttp.redact import MASK
from tap_rhttp.run.context import RunContext

if t.TYPE_CHECKING:
    from pathlib import Path

CLIENT_ID = "tap-client"
CLIENT_SECRET = "oauth-client-secret-7Qm2"
USERNAME = "robot"
PASSWORD = "oauth-user-pa55-9Zx4"
REFRESH_0 = "refresh-token-zero-41c8"
API_HEADER = "api-only-header-6d2a"


class TokenServer:
    """A token endpoint and an API on one LocalServer; state in `server.state`."""

    def __init__(self, server: LocalServer, *, expires_in: float | None = None) -> None:
        self.server = server
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.issued: dict[str, float] = {}  # access token -> issued at (monotonic)
        self.revoked: set[str] = set()
        self.refresh = REFRESH_0  # the one valid refresh token
        self.rotations = 0
        self.forms: list[dict[str, str]] = []
        self.api_401 = 0
        self.api_ok = 0
        self.revoke_after: int | None = None  # revoke the first token after n good API calls
        self.barrier: threading.Barrier | None = None  # holds the first API calls together
        self.pages = 3
        self.delay = 0.0
        server.route("/oauth/token")(self.token)
        server.route("/api/items")(self.items)

    def token_requests(self) -> list[Request]:
        return self.server.requests_to("/oauth/token")

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            return user == CLIENT_ID and secret == CLIENT_SECRET
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") in (
            CLIENT_SECRET,
            None,
        )

    def token(self, request: Request) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        with self.lock:
            self.forms.append(form)
            if request.method != "POST" or not self._client_ok(request, form):
                return json_reply({"error": "invalid_client"}, 401)
            grant = form.get("grant_type")
            body: dict[str, t.Any] = {"token_type": "bearer"}
            if grant == "client_credentials":
                pass
            elif grant == "password":
                if (form.get("username"), form.get("password")) != (USERNAME, PASSWORD):
                    return json_reply({"error": "invalid_grant"}, 400)
            elif grant == "refresh_token":
                if form.get("refresh_token") != self.refresh:
                    return json_reply({"error": "invalid_grant"}, 400)
                self.rotations += 1
                self.refresh = f"refresh-token-{self.rotations}-rotated-{os.getpid()}"
                body["refresh_token"] = self.refresh
            else:
                return json_reply({"error": "unsupported_grant_type"}, 400)
            access = f"access-token-{len(self.issued) + 1}-{os.getpid()}"
            self.issued[access] = time.monotonic()
            body["access_token"] = access
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
        return json_reply(body)

    def _valid(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        issued = self.issued.get(token)
        if issued is None or token in self.revoked:
            return False
        return self.expires_in is None or time.monotonic() - issued < self.expires_in

    def items(self, request: Request) -> Reply:
        if self.barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait()
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if not self._valid(request):
                self.api_401 += 1
                return Reply(
                    401,
                    "unauthorized",
                    [("WWW-Authenticate", 'Bearer error="invalid_token"')],
                    "text/plain",
                )
            self.api_ok += 1
            if self.revoke_after is not None and self.api_ok >= self.revoke_after:
                self.revoked.add(next(iter(self.issued)))
                self.revoke_after = None
        page = int(request.args.get("page", "1"))
        group = request.args.get("g", "")
        headers = []
        if page < self.pages:
            nxt = f"/api/items?page={page + 1}" + (f"&g={group}" if group else "")
            headers.append(("Link", f'<{nxt}>; rel="next"'))
        return json_reply([{"id": f"{group}{page}"}], headers=headers)


def oauth(grant: str = "client_credentials", **extra: t.Any) -> dict[str, t.Any]:
    auth: dict[str, t.Any] = {"type": "oauth2", "grant": grant, "client_id": CLIENT_ID, **extra}
    if grant in ("client_credentials", "password"):
        auth.setdefault("client_secret", CLIENT_SECRET)
    if grant == "password":
        auth.update(username=USERNAME, password=PASSWORD)
    if grant == "refresh_token":
        auth.setdefault("refresh_token", REFRESH_0)
        auth.setdefault("client_secret", CLIENT_SECRET)
    return auth


def stream(server: LocalServer, auth: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    auth = {"token_url": server.url + "/oauth/token", **auth}
    return {
        "name": "items",
        "url": server.url + "/api/items",
        "auth": auth,
        "header": {"X-Api-Only": API_HEADER},
        "page": "link-next",
        "page_limit": -1,
        "reattempts": 1,
        "schema": {"properties": {"id": {"type": "string"}}},
        **extra,
    }


@pytest.fixture
def tokens(server: LocalServer) -> TokenServer:
    return TokenServer(server)


@pytest.mark.parametrize(
    ("grant", "client_auth"),
    [
        ("client_credentials", "basic"),
        ("client_credentials", "body"),
        ("password", "basic"),
        ("refresh_token", "body"),
    ],
)
def test_each_grant_gets_a_token_and_the_api_gets_it(
    grant: str, client_auth: str, tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    auth = oauth(grant, client_auth=client_auth, scopes=["read", "write"], audience="api://x")
    result = sync({"streams": [stream(server, auth)]})

    assert [r["id"] for r in result.records("items")] == ["1", "2", "3"]
    (request,) = tokens.token_requests()
    (form,) = tokens.forms
    assert form["grant_type"] == grant
    assert form["audience"] == "api://x"
    if grant != "refresh_token":
        assert form["scope"] == "read write"
    if client_auth == "basic":
        assert request.headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in form
    else:
        assert "Authorization" not in request.headers
        assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    # The token endpoint got the client credentials only: no API header, no bearer token.
    assert "X-Api-Only" not in request.headers
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    api = server.requests_to("/api/items")
    assert {r.headers["Authorization"] for r in api} == {f"Bearer {next(iter(tokens.issued))}"}
    assert all(r.headers["X-Api-Only"] == API_HEADER for r in api)


def test_extra_token_params_are_sent(tokens: TokenServer, server: LocalServer, sync: t.Any) -> None:
    auth = oauth(extra={"resource": "https://api.example", "tenant": 7})
    sync({"streams": [stream(server, auth)]})
    (form,) = tokens.forms
    assert form["resource"] == "https://api.example"
    assert form["tenant"] == "7"


def test_one_token_per_run_for_every_stream(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    auth = oauth()
    second = {**stream(server, auth), "name": "again"}
    result = sync({"streams": [stream(server, auth), second]})
    assert len(result.records("items")) == len(result.records("again")) == 3
    assert len(tokens.token_requests()) == 1


@pytest.mark.timeout(30)
def test_a_token_is_refreshed_before_it_expires_mid_run(server: LocalServer, sync: t.Any) -> None:
    tokens = TokenServer(server, expires_in=1.2)  # refreshed once 0.6 s of it are left
    tokens.pages = 6
    tokens.delay = 0.3  # the run takes about 1.8 s: past one token's lifetime

    result = sync({"streams": [stream(server, oauth())]})

    assert len(result.records("items")) == 6
    assert tokens.api_401 == 0  # never sent an expired token
    assert len(tokens.token_requests()) >= 2
    used = [r.headers["Authorization"] for r in server.requests_to("/api/items")]
    assert len(set(used)) >= 2


def test_a_401_on_a_stale_token_refreshes_it_once_and_retries(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    tokens.revoke_after = 1  # the first token is revoked after page 1

    result = sync({"streams": [stream(server, oauth())]})

    assert [r["id"] for r in result.records("items")] == ["1", "2", "3"]
    assert tokens.api_401 == 1
    assert len(tokens.token_requests()) == 2
    pages = [r.args.get("page", "1") for r in server.requests_to("/api/items")]
    assert pages == ["1", "2", "2", "3"]  # page 2 once refused, then once more


def test_a_second_401_fails_without_looping(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    tokens.revoked.add("never")  # make every token invalid:
    tokens.issued.clear()
    server.routes["/oauth/token"] = lambda request: json_reply({"access_token": "useless-token-1"})

    with pytest.raises(PermanentRequestError) as caught:
        sync({"streams": [stream(server, oauth())]})

    assert caught.value.status == 401
    assert len(server.requests_to("/api/items")) == 2  # the request, and once more
    assert len(server.requests_to("/oauth/token")) == 2  # the token, and one refresh
    assert "useless-token-1" not in str(caught.value)


@pytest.mark.timeout(30)
def test_concurrent_chains_share_one_token_and_one_refresh(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    tokens.pages = 2
    tokens.barrier = threading.Barrier(3, timeout=5)  # three chains in flight at once
    tokens.revoke_after = 3  # revoked once every chain has its first page

    config = {
        "streams": [
            stream(
                server,
                oauth(),
                url=server.url + "/api/items?g={{ item }}",
                for_each=["a", "b", "c"],
                max_concurrency=3,
            )
        ]
    }
    result = sync(config)

    assert sorted(r["id"] for r in result.records("items")) == ["a1", "a2", "b1", "b2", "c1", "c2"]
    assert not tokens.barrier.broken
    assert tokens.api_401 == 3  # each chain's page 2 was refused once
    assert len(tokens.token_requests()) == 2  # one token, one shared refresh


@pytest.mark.timeout(40)
def test_a_rotating_refresh_token_is_kept_between_runs(
    tokens: TokenServer,
    server: LocalServer,
    cli: t.Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "meltano" / "tap-rhttp-token.json"
    config = {"streams": [stream(server, oauth("refresh_token", token_cache=str(cache)))]}
    monkeypatch.setenv("TAP_RHTTP_LOGLEVEL", "DEBUG")

    first = cli(config)
    assert first.code == 0, first.stderr
    assert tokens.refresh != REFRESH_0
    saved = json.loads(cache.read_text())
    assert saved["refresh_token"] == tokens.refresh
    assert set(saved) == {"version", "token_url", "client_id", "seed", "refresh_token"}
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary left

    second = cli(config)  # the config still says REFRESH_0, which the server now refuses
    assert second.code == 0, second.stderr
    assert [f["refresh_token"] for f in tokens.forms] == [REFRESH_0, saved["refresh_token"]]
    assert json.loads(cache.read_text())["refresh_token"] == tokens.refresh

    every = [REFRESH_0, saved["refresh_token"], tokens.refresh, *tokens.issued, CLIENT_SECRET]
    for run in (first, second):
        leaked = [s for s in every if s in run.stdout + run.stderr]
        assert not leaked, f"output leaks {leaked}"
        assert len([m for m in run.messages() if m["type"] == "RECORD"]) == 3


def test_without_a_token_cache_a_rotated_refresh_token_is_lost(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    config = {"streams": [stream(server, oauth("refresh_token"))]}
    sync(config)
    with pytest.raises(PermanentRequestError, match="invalid_grant"):
        sync(config)


def test_a_cache_for_another_client_is_not_used(
    tokens: TokenServer, server: LocalServer, sync: t.Any, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    cache.write_text(
        json.dumps(
            {
                "version": 1,
                "token_url": server.url + "/oauth/token",
                "client_id": "someone-else",
                "seed": None,
                "refresh_token": "not-ours",
            }
        )
    )
    sync({"streams": [stream(server, oauth("refresh_token", token_cache=str(cache)))]})
    assert tokens.forms[0]["refresh_token"] == REFRESH_0


def test_a_token_endpoint_error_reads_like_rhttp_and_is_asked_once(
    server: LocalServer, sync: t.Any
) -> None:
    tokens = TokenServer(server)
    tokens.pages = 1
    auth = oauth(client_secret="wrong-secret-value-42")
    config = {
        "streams": [
            stream(
                server,
                auth,
                url=server.url + "/api/items?g={{ item }}",
                for_each=["a", "b", "c"],
                on_error="skip",
            )
        ]
    }
    result = sync(config)
    assert result.records("items") == []
    assert len(tokens.token_requests()) == 1  # a refused client is not asked again

    with pytest.raises(PermanentRequestError) as caught:
        sync({"streams": [stream(server, auth)]})
    message = str(caught.value)
    assert message.startswith(
        f"Error in HTTP POST of `{server.url}/oauth/token` [stream items, page 1]: OAuth2 token "
        "request "
        "(client_credentials grant) failed: status code 401."
    )
    assert "invalid_client" in message
    assert "wrong-secret-value-42" not in message
    assert not server.requests_to("/api/items")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"token_type": "bearer"},
            "the response has no `access_token` (its fields: ['token_type'])",
        ),
        (
            "x" * (MAX_TOKEN_RESPONSE + 10),
            f"the response is larger than {MAX_TOKEN_RESPONSE} bytes",
        ),
        ("not json", "the response has no `access_token` (its fields: not a JSON object)"),
    ],
)
def test_a_bad_token_response_is_a_clear_error(
    body: t.Any, expected: str, server: LocalServer, sync: t.Any
) -> None:
    TokenServer(server)
    server.routes["/oauth/token"] = lambda request: json_reply(body)
    with pytest.raises(PermanentRequestError) as caught:
        sync({"streams": [stream(server, oauth())]})
    assert expected in str(caught.value)


def test_a_token_never_reaches_records_or_logs(
    tokens: TokenServer, server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    @server.route("/api/echo")
    def echo(request: Request) -> Reply:
        return json_reply({"seen": request.headers.get("Authorization")})

    config = {
        "streams": [{**stream(server, oauth()), "url": server.url + "/api/echo", "schema": None}]
    }
    del config["streams"][0]["page"], config["streams"][0]["page_limit"]
    result = sync(config)

    (record,) = result.records("items")
    assert record == {"seen": f"Bearer {MASK}"}
    (token,) = tokens.issued
    assert token not in json.dumps(result.messages)
    assert token not in caplog.text


def test_the_token_goes_to_the_api_origin_only(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    other = LocalServer().start()
    try:

        @server.route("/api/hop")
        def hop(request: Request) -> Reply:
            return json_reply([{"id": "1"}], headers=[("Link", f'<{other.url}/x>; rel="next"')])

        other.route("/x")(lambda request: json_reply([{"id": "2"}]))
        config = {"streams": [{**stream(server, oauth()), "url": server.url + "/api/hop"}]}
        result = sync(config)
    finally:
        other.stop()
    assert [r["id"] for r in result.records("items")] == ["1", "2"]
    assert [r.path for r in other.log] == ["/x"]
    assert "Authorization" not in other.log[0].headers


@pytest.mark.parametrize(
    ("auth", "path", "words"),
    [
        ({"grant": "client_credentials"}, "auth.client_secret", "needs `client_secret`"),
        (
            {"grant": "refresh_token", "client_secret": "s"},
            "auth.refresh_token",
            "needs `refresh_token`",
        ),
        ({"grant": "password", "client_secret": "s"}, "auth.username", "needs `username`"),
        ({"grant": "implicit"}, "auth.grant", "is not supported"),
        ({"client_secret": "s", "client_auth": "jwt"}, "auth.client_auth", "is not supported"),
        ({"client_secret": "s", "scopes": [1]}, "auth.scopes", "list of scope names"),
        ({"client_secret": "s", "extra": {"a": [1]}}, "auth.extra", "extra token request"),
        ({"client_secret": "s", "tokenurl": "x"}, "auth.tokenurl", "not an option of `oauth2`"),
        ({"client_secret": "s", "token_url": "ftp://x/t"}, "auth.token_url", "http:// or https://"),
    ],
)
def test_oauth2_config_is_checked(auth: dict[str, t.Any], path: str, words: str) -> None:
    spec = {
        "name": "s",
        "url": "https://api.example/x",
        "auth": {"type": "oauth2", "token_url": "https://auth.example/t", "client_id": "c", **auth},
    }
    with pytest.raises(ConfigErrors) as caught:
        RunContext({"streams": [spec]})
    message = str(caught.value)
    assert f"streams[0].{path}" in message
    assert words in message
    assert '"s"' not in message or "client_secret" not in path


def test_scopes_may_be_one_string() -> None:
    spec = {
        "name": "s",
        "url": "https://api.example/x",
        "auth": {
            "type": "oauth2",
            "token_url": "https://auth.example/t",
            "client_id": "c",
            "client_secret": "secret-value-1",
            "scopes": "read:a  write:b",
        },
    }
    (loaded,) = RunContext({"streams": [spec]}).specs
    assert loaded.auth is not None
    assert loaded.auth.scopes == ("read:a", "write:b")


def test_the_token_request_goes_through_the_streams_proxy(
    tokens: TokenServer, server: LocalServer, sync: t.Any
) -> None:
    with ForwardProxy() as proxy:
        sync({"streams": [stream(server, oauth(), proxy=proxy.url())]})
        targets = [hit.target for hit in proxy.hits()]
    assert targets[0] == server.url + "/oauth/token"
    assert server.url + "/api/items" in targets


@pytest.mark.timeout(20)
def test_the_token_request_honours_the_streams_timeout(server: LocalServer, sync: t.Any) -> None:
    TokenServer(server)

    @server.route("/oauth/slow")
    def slow(request: Request) -> Reply:
        time.sleep(2)
        return json_reply({"access_token": "late-token-value"})

    auth = oauth(token_url=server.url + "/oauth/slow")
    started = time.monotonic()
    with pytest.raises(TransientRequestError) as caught:
        sync({"streams": [stream(server, auth, timeout=0.5)]})
    assert time.monotonic() - started < 1.8
    assert str(caught.value).startswith(
        f"Error in HTTP POST of `{server.url}/oauth/slow` [stream items, page 1]: OAuth2 token "
        "request "
        "(client_credentials grant) failed: timed out after 0.500 seconds."
    )


def test_a_templated_token_url_is_checked_once_rendered(server: LocalServer, sync: t.Any) -> None:
    config = {
        "secrets": {"token_url": "ftp://auth.example/token"},
        "streams": [stream(server, oauth(token_url="{{ secrets['token_url'] }}"))],
    }
    with pytest.raises(ConfigError, match=r"streams\[0\]\.auth\.token_url: the rendered"):
        sync(config)
