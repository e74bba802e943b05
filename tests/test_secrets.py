"""Planted secrets never reach stdout or stderr, whatever the server echoes back.

Each whole run plants secrets in every place a config can hold one: ``auth`` (basic,
digest, bearer, an API key in the query), an ``X-Api-Key`` header, a header marked in
``secret_headers``, a sensitive param, an ``access_token`` written in the ``url``, and URL
userinfo. The loopback server then echoes them: in a redirect ``Location``, in response
headers, and in HTML error pages that quote the request line and every request header.
The run is at DEBUG (``TAP_RHTTP_LOGLEVEL``), so urllib3 logs every request line. No
planted string may appear anywhere in stdout or stderr, in any form that would give it
away: raw, percent-encoded, ``+``-encoded, or (for basic credentials) ``base64(user:pass)``.

The rule for records. A record is data the API returned, so a record may carry any field
the API chose to send, including fields called ``key`` or ``token``: those are not
masked by name. But the contract (issue 4, §4) says the tap's own secrets never reach
records, and an echo endpoint (httpbin's ``/get``, ``/headers``, any API that reflects its
request in a debug field) returns exactly those. So in records, every secret from the
config is masked wherever it appears, and nothing else is. The whole-run tests below keep
echoes out of successful bodies so they check logs, STATE and SCHEMA on their own;
:func:`test_records_never_carry_config_secrets` checks the echo case.
"""

from __future__ import annotations

import base64
import html
import typing as t
from urllib.parse import quote, quote_plus

import pytest
from fault_server import FaultServer, Hit, json_reply, reply

from tap_rhttp.errors import SchemaDriftError
from tap_rhttp.redact import MASK, Redactor

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from fault_server import Action

USER = "alice"
BASIC_PASS = "b4sic-pa55-Zq8!x"
DIGEST_PASS = "d1gest-pa55-Wm3/y"
BEARER = "tok.bearer+S3cr3t/value=="
QUERY_AUTH = "qry-auth-key-6e1d3b"
URL_USER, URL_PASS = "bob", "url-pa55:w0rd@x"
HEADER_KEY = "hdr-x-api-key-7f3c9a"
CUSTOM = "custom-secret-header-5d2e"
PARAM_KEY = "param-api-key-91b7e0"
URL_TOKEN = "url-access-token-c4a8f2"

COMMON = (HEADER_KEY, CUSTOM, PARAM_KEY, URL_TOKEN)
SCHEMA = {"properties": {"id": {"type": "integer"}}}

#: Per auth kind: the `auth` option, whether the URL carries userinfo, and its secrets.
KINDS: dict[str, tuple[dict[str, str] | None, bool, tuple[str, ...]]] = {
    "basic": ({"type": "basic", "user": USER, "pass": BASIC_PASS}, False, (BASIC_PASS,)),
    "digest": ({"type": "digest", "user": USER, "pass": DIGEST_PASS}, False, (DIGEST_PASS,)),
    "bearer": ({"type": "bearer", "token": BEARER}, False, (BEARER,)),
    "api_key in query, URL userinfo": (
        {"type": "api_key", "name": "k", "value": QUERY_AUTH, "in": "query"},
        True,
        (QUERY_AUTH, URL_PASS),
    ),
}


def forms(secret: str) -> set[str]:
    """Every spelling that would give a secret away."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
    }


def credentials(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def giveaways(kind: str) -> set[str]:
    auth, userinfo, own = KINDS[kind]
    found: set[str] = set()
    for secret in (*COMMON, *own):
        found |= forms(secret)
    if auth is not None and auth.get("type") in ("basic", "digest"):
        found.add(credentials(auth["user"], auth["pass"]))
    if userinfo:
        found.add(credentials(URL_USER, URL_PASS))
    return found


def assert_no_giveaway(kind: str, text: str, where: str) -> None:
    leaked = sorted(g for g in giveaways(kind) if g in text)
    assert not leaked, f"{where} leaks {leaked}"


def echo_page(hit: Hit, status: int) -> Action:
    """An error page quoting the request line and every request header, as many do."""
    lines = [f"{name}: {value}" for name, value in hit.headers.items()]
    body = (
        f"<html><body><h1>{status}</h1><pre>{hit.method} {hit.target} HTTP/1.1\n"
        + "\n".join(lines)
        + "</pre></body></html>"
    )
    headers = [("X-Echo-Target", hit.target), ("Set-Cookie", "sid=srv-cookie-91ab; Path=/")]
    return reply(status, body, headers, "text/html")


def leaky_routes(server: FaultServer, *, digest: bool) -> None:
    """/start redirects to /ok (echoing the query in Location); /ok links to /fail."""

    def guard(handler: t.Callable[[Hit], Action]) -> t.Callable[[Hit], Action]:
        def guarded(hit: Hit) -> Action:
            if digest and not (hit.header("Authorization") or "").startswith("Digest "):
                challenge = 'Digest realm="rhttp", nonce="n0nce", qop="auth", opaque="0paque"'
                return reply(401, "auth please", [("WWW-Authenticate", challenge)], "text/plain")
            return handler(hit)

        return guarded

    @guard
    def start(hit: Hit) -> Action:
        location = f"/ok?{hit.query}&echo={quote(hit.header('Authorization') or '', safe='')}"
        return reply(302, "", [("Location", location)], None)

    @guard
    def ok(hit: Hit) -> Action:
        cookie = ("Set-Cookie", "session=srv-session-77cd; Path=/")
        return json_reply({"items": [{"id": 1}], "next": "/fail"}, headers=[cookie])

    @guard
    def fail(hit: Hit) -> Action:
        return echo_page(hit, 503 if hit.nth == 1 else 500)

    server.route("/start")(start)
    server.route("/ok")(ok)
    server.route("/fail")(fail)


def stream_config(server: FaultServer, kind: str, **extra: t.Any) -> dict[str, t.Any]:
    auth, userinfo, _ = KINDS[kind]
    host = server.url.removeprefix("http://")
    if userinfo:
        host = f"{URL_USER}:{quote(URL_PASS, safe='')}@{host}"
    stream: dict[str, t.Any] = {
        "name": "s",
        "url": f"http://{host}/start?access_token={URL_TOKEN}",
        "params": {"api_key": PARAM_KEY, "page": 1},
        "header": {"X-Api-Key": HEADER_KEY, "X-Customer": CUSTOM},
        "secret_headers": ["X-Customer"],
        "page": "info['body']['next']",
        "page_limit": -1,
        "records_path": "$.items[*]",
        "schema": SCHEMA,
        "reattempts": 2,
        "backoff_base": 1,
        "backoff_max": 1,
        **extra,
    }
    if auth is not None:
        stream["auth"] = auth
    return {"streams": [stream]}


@pytest.fixture
def leaky() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_failed_run_at_debug_prints_no_secret(
    kind: str, leaky: FaultServer, cli: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaky_routes(leaky, digest=kind == "digest")
    monkeypatch.setenv("TAP_RHTTP_LOGLEVEL", "DEBUG")

    done = cli(stream_config(leaky, kind), timeout=25)

    # The run went where the secrets are echoed: redirect, success, 503, then 500.
    assert done.code == 1
    answered = [h.path for h in leaky.hits() if kind != "digest" or h.header("Authorization")]
    assert answered == ["/start", "/ok", "/fail", "/fail"]
    assert [m["type"] for m in done.messages()].count("RECORD") == 1
    # DEBUG was on: urllib3 logged each request line, masked.
    assert "urllib3.connectionpool" in done.stderr
    assert f'"GET /start?access_token={MASK}&api_key={MASK}' in done.stderr
    assert "Error in HTTP GET of `" in done.stderr
    assert "status code 500." in done.stderr
    assert "Traceback" not in done.stderr

    assert_no_giveaway(kind, done.stderr, "stderr")
    assert_no_giveaway(kind, done.stdout, "stdout (SCHEMA, RECORD, STATE)")


def echo_everything(hit: Hit) -> Action:
    """What httpbin's /anything does: the request reflected in the body."""
    return json_reply(
        [
            {
                "id": 1,
                "url": hit.target,
                "headers": hit.headers,
                # Fields named like secrets that the API itself returns are data.
                "key": "PROJ-123",
                "token": "next-cursor-abc",
            }
        ]
    )


@pytest.mark.timeout(30)
def test_records_never_carry_config_secrets(leaky: FaultServer, sync: t.Any) -> None:
    leaky.route("/start")(echo_everything)
    streams = []
    for index, kind in enumerate(k for k in KINDS if k != "digest"):
        (stream,) = stream_config(leaky, kind)["streams"]
        for option in ("page", "page_limit", "records_path"):
            del stream[option]
        streams.append({**stream, "name": f"s{index}"})

    result = sync({"streams": streams})

    for index, kind in enumerate(k for k in KINDS if k != "digest"):
        (record,) = result.records(f"s{index}")
        assert record["key"] == "PROJ-123"  # the API's own fields are kept
        assert record["token"] == "next-cursor-abc"
        assert MASK in record["url"]
        assert_no_giveaway(kind, repr(record), f"record of {kind}")


@pytest.mark.timeout(30)
def test_records_keep_fields_named_like_secrets(leaky: FaultServer, sync: t.Any) -> None:
    """Whatever the record rule, an API's `key`/`token` fields are data, not secrets."""
    leaky.route("/start")(
        lambda hit: json_reply([{"id": 1, "key": "PROJ-123", "token": "c-1", "api_key": None}])
    )

    result = sync({"streams": [{"name": "s", "url": leaky.url + "/start", "schema": SCHEMA}]})

    assert result.records("s") == [{"id": 1, "key": "PROJ-123", "token": "c-1", "api_key": None}]


@pytest.mark.timeout(30)
def test_a_drift_error_quotes_no_secret(leaky: FaultServer, sync: t.Any) -> None:
    """The value a `schema_drift: fail` error quotes comes from a record: masked too."""
    token = "drift-t0ken-9f8e7d"
    leaky.route("/start")(
        lambda hit: json_reply([{"id": 1, "echo": 7}, {"id": 2, "echo": f"Bearer {token}"}])
    )
    config = {
        "streams": [
            {
                "name": "s",
                "url": leaky.url + "/start",
                "auth": {"type": "bearer", "token": token},
                "schema": {"properties": {"id": {"type": "integer"}, "echo": {"type": "integer"}}},
                "schema_drift": "fail",
            }
        ]
    }
    with pytest.raises(SchemaDriftError) as info:
        sync(config)
    message = str(info.value)
    assert "field `echo` is integer in the schema, but a record has a string" in message
    assert MASK in message
    assert token not in message


# --------------------------------------------------------------------------- units


def test_url_secrets_are_learned_as_literals() -> None:
    """A secret written in a URL is masked where a server echoes it bare."""
    redactor = Redactor()
    redactor.add_url_secrets(
        f"http://{URL_USER}:{quote(URL_PASS, safe='')}@h/x?access_token={quote(URL_TOKEN)}"
        f"&page=2&k=zz#id_token={PARAM_KEY}"
    )

    echoed = f"{URL_PASS} {URL_TOKEN} {PARAM_KEY} {credentials(URL_USER, URL_PASS)} page 2"

    assert redactor.text(echoed) == f"{MASK} {MASK} {MASK} {MASK} page 2"


def test_url_secrets_leave_ordinary_params_alone() -> None:
    redactor = Redactor()
    redactor.add_url_secrets("http://h/x?page=2345&cursor=abcdef&page_token=zzzzzz")

    assert redactor.text("page=2345 abcdef zzzzzz") == "page=2345 abcdef zzzzzz"


def test_envelope_keeps_its_backtick_after_a_masked_param() -> None:
    redactor = Redactor()

    text = "Error in HTTP GET of `http://h/x?page=2&token=abc`: status code 500."

    assert redactor.text(text) == (
        f"Error in HTTP GET of `http://h/x?page=2&token={MASK}`: status code 500."
    )


def test_literals_masks_config_secrets_only() -> None:
    redactor = Redactor([BEARER])
    record = {
        "key": "PROJ-1",
        "token": "cursor",
        "echo": {"Authorization": f"Bearer {BEARER}", BEARER: [quote(BEARER, safe="")]},
        "n": 3,
        "ok": True,
    }

    assert redactor.literals(record) == {
        "key": "PROJ-1",
        "token": "cursor",
        "echo": {"Authorization": f"Bearer {MASK}", MASK: [MASK]},
        "n": 3,
        "ok": True,
    }
    assert Redactor().literals(record) is record
