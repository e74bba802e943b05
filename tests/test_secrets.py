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
import json
import logging
import os
import re
import subprocess
import sys
import time
import typing as t
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import pytest
from fault_server import FaultServer, Hit, json_reply, reply
from server import LocalServer, Reply, Request
from server import json_reply as local_json_reply
from tap_process import kill_when, states_with

from tap_rhttp.errors import SchemaDriftError
from tap_rhttp.paging.paginator import INFO_BODY_CHARS
from tap_rhttp.redact import MASK, Redactor, install_log_redaction
from tap_rhttp.run.context import RunContext

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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

    text = "Error in HTTP GET of `http://h/x?page=2&access_token=abc`: status code 500."

    assert redactor.text(text) == (
        f"Error in HTTP GET of `http://h/x?page=2&access_token={MASK}`: status code 500."
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


BODY_SECRET = "b0dy-secret-in-json-3f9a"


def test_a_secret_in_a_paginated_body_stays_out_of_page_errors(server: t.Any, sync: t.Any) -> None:
    """`info['data']` (the request body) is printed, redacted, when `page` fails."""

    @server.route("/body-secret")
    def handler(request: t.Any) -> t.Any:
        return local_json_reply({"items": [{"id": 1}], "next": "c2"})

    config = {
        "secrets": {"k": BODY_SECRET},
        "streams": [
            {
                "name": "s",
                "url": server.url + "/body-secret",
                "method": "POST",
                "json": {"auth": {"key": "{{ secrets['k'] }}"}, "cursor": None},
                "records_path": "$.items[*]",
                "page": "{'data': {'cursor': info['body']['missing']}}",
                "page_limit": 3,
            }
        ],
    }
    with pytest.raises(Exception) as info:
        sync(config)
    message = str(info.value)
    assert "No attribute `missing`" in message
    assert '"data":{"auth":{"key":"' + MASK + '"},"cursor":null}' in message
    assert BODY_SECRET not in message
    assert json.loads(server.requests_to("/body-secret")[0].body)["auth"]["key"] == BODY_SECRET


# ------------------------------------------------------------------ STATE: cursors stay

CURSOR_NAMES = ["pagination_token", "$skiptoken", "syncToken", "resumptionToken", "start_key"]
STATE_KEY = "state-api-key-5c1e9d"


def _cursor_server(server: LocalServer, name: str, pages: int = 8, per_page: int = 5) -> None:
    """Pages chained by an opaque cursor in a next link that also echoes our API key."""

    @server.route("/cursor")
    def cursor(request: Request) -> Reply:
        time.sleep(0.1)
        token = request.args.get(name, "c-1-start")
        page = int(token.split("-")[1])
        items = [{"id": (page - 1) * per_page + i} for i in range(1, per_page + 1)]
        following = f"c-{page + 1}-{'x' * page}" if page < pages else None
        link = None
        if following is not None:  # the server puts our key back into its link (many do)
            link = f"/cursor?{name}={following}&api_key={request.args['api_key']}"
        return local_json_reply({"items": items, "next": link})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CURSOR_NAMES)
def test_a_cursor_named_like_a_token_stays_in_state_and_a_killed_run_resumes_exactly(
    name: str, server: LocalServer, sync: t.Any, tmp_path: Path
) -> None:
    """SIGKILL mid-pagination, then resume: the cursor is saved, the secret is not."""
    _cursor_server(server, name)
    config = {
        "streams": [
            {
                "name": "paged",
                "url": server.url + "/cursor",
                "params": {"api_key": STATE_KEY},
                "page": "info['body']['next']",
                "page_limit": -1,
                "records_path": "$.items[*]",
                "primary_keys": ["id"],
                "schema": {"properties": {"id": {"type": "integer"}}},
            }
        ]
    }
    killed = kill_when(config, tmp_path, states_with("rhttp", 3))
    first_ids = [m["record"]["id"] for m in killed if m["type"] == "RECORD"]
    state = next(m["value"] for m in reversed(killed) if m["type"] == "STATE")
    (position,) = state["bookmarks"]["paged"]["rhttp"]["chains"].values()

    assert STATE_KEY not in json.dumps(state)
    saved_cursor = dict(parse_qsl(urlsplit(position["url"]).query))[name]
    assert saved_cursor.startswith(f"c-{position['requests'] + 1}-")  # the exact next page
    assert position["withheld"] == ["api_key"]

    server.log.clear()
    resumed = sync(config, state=state)
    second_ids = [r["id"] for r in resumed.records("paged")]

    first_request = server.log[0]
    assert first_request.args[name] == saved_cursor
    assert first_request.args["api_key"] == STATE_KEY  # given back from the config
    everything = list(range(1, 8 * 5 + 1))
    assert sorted(set(first_ids) | set(second_ids)) == everything  # nothing lost
    assert len(first_ids) + len(second_ids) - len(everything) <= 5  # the page in flight


def test_a_position_whose_secret_the_config_cannot_give_back_is_not_saved(
    server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Our key echoed under another name: withholding it would change the request."""

    @server.route("/leaky-next")
    def leaky(request: Request) -> Reply:
        page = int(request.args.get("p", "1"))
        following = f"/leaky-next?p={page + 1}&sig={STATE_KEY}" if page < 3 else None
        return local_json_reply({"items": [{"id": page}], "next": following})

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/leaky-next",
                "params": {"api_key": STATE_KEY},
                "page": "info['body']['next']",
                "page_limit": -1,
                "records_path": "$.items[*]",
                "schema": {"properties": {"id": {"type": "integer"}}},
            }
        ]
    }
    result = sync(config)

    assert [r["id"] for r in result.records("s")] == [1, 2, 3]
    assert STATE_KEY not in json.dumps(result.of_type("STATE"))
    assert "its position is not saved in STATE" in caplog.text


# ------------------------------------------------------------------ every logger, any handler

LOG_KEY = "log-api-key-3f8a2c"


@pytest.mark.timeout(60)
def test_a_log_config_file_with_its_own_urllib3_handler_prints_no_secret(
    leaky: FaultServer, tmp_path: Path
) -> None:
    """SINGER_SDK_LOG_CONFIG gives urllib3 a DEBUG handler of its own that does not
    propagate: its request lines are redacted all the same."""
    leaky.route("/x")(lambda hit: json_reply([{"id": 1}]))
    log_config = tmp_path / "logging.yml"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "OWN %(name)s %(levelname)s %(message)s"}},
                "handlers": {
                    "own": {
                        "class": "logging.StreamHandler",
                        "stream": "ext://sys.stderr",
                        "formatter": "plain",
                    }
                },
                "loggers": {"urllib3": {"level": "DEBUG", "handlers": ["own"], "propagate": False}},
            }
        )
    )
    config = {
        "streams": [
            {
                "name": "s",
                "url": f"{leaky.url}/x?access_token={URL_TOKEN}",
                "params": {"api_key": LOG_KEY},
                "schema": SCHEMA,
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["SINGER_SDK_LOG_CONFIG"] = str(log_config)
    env.pop("TAP_RHTTP_LOGLEVEL", None)

    done = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
    )

    assert done.returncode == 0, done.stderr
    assert f"OWN urllib3.connectionpool DEBUG http://127.0.0.1:{leaky.port}" in done.stderr
    assert f'"GET /x?access_token={MASK}&api_key={MASK} HTTP/1.1" 200' in done.stderr
    for secret in (LOG_KEY, URL_TOKEN):
        for form in forms(secret):
            assert form not in done.stderr
            assert form not in done.stdout


def test_log_redaction_covers_handlers_added_later_and_the_last_resort(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "late-handler-secret-77"
    redactor = Redactor([secret])  # installed while alive (the tap's run holds its own)
    install_log_redaction(redactor)
    late = logging.getLogger("tap_rhttp.test_secrets.late")
    late.propagate = False
    late.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    late.addHandler(handler)  # added after the redaction was installed
    orphan = logging.getLogger("tap_rhttp.test_secrets.orphan")
    orphan.propagate = False  # no handler at all: logging.lastResort prints the warning
    try:
        late.info("token %s", secret)
        orphan.warning("again %s", quote(secret))
        try:
            raise RuntimeError(secret)
        except RuntimeError:
            late.exception("failed")
    finally:
        late.removeHandler(handler)
    err = capsys.readouterr().err
    assert f"token {MASK}" in err
    assert f"again {MASK}" in err
    assert f"RuntimeError: {MASK}" in err
    assert secret not in err


# ------------------------------------------------------------------ echoes in any spelling

ECHOED = "tok.bearer+S3cr3t/value=echo1"  # + and / are what PHP and .NET escape


def php(text: str) -> str:
    """json_encode() as PHP writes it: ``/`` as ``\\/``."""
    return json.dumps(text)[1:-1].replace("/", "\\/")


def dotnet(text: str) -> str:
    """System.Text.Json's default: ``+``, ``'``, ``<``, ``>``, ``&`` as ``\\u002B``..."""
    out = json.dumps(text)[1:-1]
    for char in "+'<>&":
        out = out.replace(char, f"\\u{ord(char):04X}")
    return out


def every_char(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def decoded_views(text: str) -> str:
    """The text, and what JSON, URL and HTML unescaping make of it, one after another."""
    views = [text]
    unescaped = re.sub(
        r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text.replace("\\/", "/")
    )
    views += [unescaped, unquote(unescaped), html.unescape(unquote(unescaped))]
    return "\n".join(views)


@pytest.mark.timeout(30)
def test_php_and_dotnet_escaped_echoes_reach_neither_records_nor_errors(
    leaky: FaultServer, cli: t.Any
) -> None:
    body = (
        f'{{"items": [{{"id": 1, "php": "Bearer {php(ECHOED)}", "net": "{dotnet(ECHOED)}", "all": "{every_char(ECHOED)}", "mixed": "{dotnet(php(ECHOED))}"}}],'
        ' "next": "/fail"}'
    )
    leaky.route("/ok")(lambda hit: reply(200, body))
    error = f'{{"error": "bad token", "got": "{dotnet(ECHOED)}", "as": "{php(ECHOED)}"}}'
    leaky.route("/fail")(lambda hit: reply(403, error))
    config = {
        "streams": [
            {
                "name": "s",
                "url": f"{leaky.url}/ok",
                "auth": {"type": "bearer", "token": ECHOED},
                "page": "info['body']['next']",
                "page_limit": -1,
                "records_path": "$.items[*]",
                "schema": SCHEMA,
            }
        ]
    }

    done = cli(config, timeout=25)

    assert done.code == 1
    (record,) = [m["record"] for m in done.messages() if m["type"] == "RECORD"]
    assert record == {"id": 1, "php": f"Bearer {MASK}", "net": MASK, "all": MASK, "mixed": MASK}
    assert "status code 403." in done.stderr
    assert f'"got": "{MASK}", "as": "{MASK}"' in done.stderr
    for where, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        assert ECHOED not in decoded_views(text), where


@pytest.mark.timeout(30)
def test_server_tokens_are_masked_in_errors_but_kept_as_record_data(
    leaky: FaultServer, cli: t.Any
) -> None:
    """Set-Cookie and OAuth token fields the server sends: data in records, masked in
    messages; and an ordinary ``code=503`` is shown as the server sent it."""
    tokens = {"id": 1, "access_token": "srv-at-123456", "refresh_token": "srv-rt-654321"}
    leaky.route("/tokens")(
        lambda hit: json_reply([tokens], headers=[("Set-Cookie", "sid=srv-sid-111; Path=/")])
    )
    failure = {
        "error": "invalid_grant",
        "access_token": "srv-at-999999",
        "code": 503,
        "detail": "upstream said code=503",
    }
    leaky.route("/oauth")(
        lambda hit: reply(
            400, json.dumps(failure), [("Set-Cookie", "session=srv-session-222; HttpOnly")]
        )
    )
    config = {
        "streams": [
            {"name": "a_tokens", "url": f"{leaky.url}/tokens", "schema": SCHEMA},
            {
                "name": "b_oauth",
                "url": f"{leaky.url}/oauth",
                "params": {"code": 503},
                "schema": SCHEMA,
            },
        ]
    }

    done = cli(config, timeout=25)

    assert done.code == 1
    records = [m["record"] for m in done.messages() if m["type"] == "RECORD"]
    assert records == [tokens]  # the API's own data
    assert (
        f"Error in HTTP GET of `{leaky.url}/oauth?code=503` [stream b_oauth, page 1]: "
        "status code 400." in done.stderr
    )
    assert f"Set-Cookie: {MASK}" in done.stderr
    assert f'"access_token": "{MASK}"' in done.stderr
    assert '"code": 503' in done.stderr
    assert "upstream said code=503" in done.stderr
    for value in ("srv-at-999999", "srv-session-222"):
        assert value not in done.stderr


@pytest.mark.timeout(30)
def test_explain_redacts_before_it_cuts_an_excerpt(leaky: FaultServer, cli: t.Any) -> None:
    """The cut of info.body falls inside an echoed token: no part of it is printed."""
    token = "Zq9xWv-Kt7pLm2Rn8sQw4YbH6jDc3FgT0"  # 33 characters
    pad = INFO_BODY_CHARS - len('{"pad":"') - len('","echo":"') - 32
    leaky.route("/x")(
        lambda hit: json_reply({"pad": "p" * pad, "echo": token, "more": "q" * 300, "next": None})
    )
    config = {
        "streams": [
            {
                "name": "s",
                "url": f"{leaky.url}/x",
                "auth": {"type": "bearer", "token": token},
                "page": "info['body']['next']",
                "page_limit": -1,
            }
        ]
    }

    done = cli(config, "--explain", "--pages", "1", timeout=25)

    assert done.code == 0, done.stderr
    (body_line,) = [line for line in done.stdout.splitlines() if line.startswith("  body:")]
    assert f'"echo":"{MASK}' in body_line
    assert body_line.endswith("characters)")
    for start in range(len(token) - 5):
        assert token[start : start + 6] not in done.stdout


@pytest.mark.timeout(30)
def test_proxy_credentials_are_secrets(leaky: FaultServer, tmp_path: Path) -> None:
    """HTTP_PROXY's userinfo and the Proxy-Authorization it becomes, echoed by the proxy."""
    user, password = "puser", "proxy-pa55-9e2f"
    basic = credentials(user, password)

    def proxy(hit: Hit) -> Action:  # an error page quoting what the proxy received
        lines = "\n".join(f"{k}: {v}" for k, v in hit.headers.items())
        page = (
            f"<pre>{hit.method} {hit.target}\n{lines}\nvia http://{user}:{password}@proxy\n"
            f"rejected {user} / {password} ({basic})</pre>"
        )
        return reply(502, page, [], "text/html")

    leaky.route("/x")(proxy)
    config = {"streams": [{"name": "s", "url": "http://upstream.invalid/x", "reattempts": 1}]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["HTTP_PROXY"] = f"http://{user}:{password}@127.0.0.1:{leaky.port}"
    env["TAP_RHTTP_LOGLEVEL"] = "DEBUG"

    done = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=25,
        env=env,
    )

    assert done.returncode == 1
    (hit,) = leaky.hits()
    assert hit.header("Proxy-Authorization") == f"Basic {basic}"  # it went through the proxy
    assert "status code 502." in done.stderr
    assert f"Proxy-Authorization: Basic {MASK}" in done.stderr
    assert f"http://{user}:{MASK}@proxy" in done.stderr
    for form in (*forms(password), basic):
        assert form not in done.stderr
        assert form not in done.stdout


def test_a_template_value_from_a_parent_row_is_no_secret_but_one_from_secrets_is() -> None:
    """Rendered per row: ``next_key`` holds the row's cursor (data), ``sig`` a secret."""
    config = {
        "secrets": {"s": "ab1"},
        "streams": [
            {"name": "p", "url": "http://h.invalid/p", "schema": SCHEMA},
            {
                "name": "c",
                "url": "http://h.invalid/c",
                "parent": "p",
                "params": {"next_key": "{{ row['cursor'] }}", "sig": "{{ secrets['s'] }}"},
                "header": {"X-Auth-Token": "{{ row['token'] }}"},
            },
        ],
    }
    run = RunContext(config)
    row = {"id": 1, "cursor": "row-cursor-77", "token": "row-tok-99"}
    (task,) = run.stream("c").tasks(rows=[(0, row)])
    assert task.spec is not None
    redactor = run.redactor

    assert redactor.text("next_key=row-cursor-77 row-tok-99") == "next_key=row-cursor-77 row-tok-99"
    assert redactor.url("http://h.invalid/c?sig=ab1&next_key=x") == (
        f"http://h.invalid/c?sig={MASK}&next_key=x"
    )
