"""`tap-rhttp --explain [--pages N]`, run as a user runs it, against the loopback server."""

from __future__ import annotations

import re
import shlex
import typing as t

import pytest
from server import Reply, json_reply

if t.TYPE_CHECKING:
    from conftest import CliResult
    from server import LocalServer, Request

Cli = t.Callable[..., "CliResult"]
MASK = "***REDACTED***"


def _no_singer_output(result: CliResult) -> None:
    assert not [line for line in result.stdout.splitlines() if line.startswith("{")]
    for kind in ("RECORD", "SCHEMA", "STATE"):
        assert f'"type": "{kind}"' not in result.stdout
        assert f'"type":"{kind}"' not in result.stdout


def _curls(stdout: str) -> list[list[str]]:
    """Every curl command of the report, split as a shell would split it."""
    commands = re.findall(r"^\$ (curl .*?)(?=\n[^ ])", stdout, re.M | re.S)
    return [shlex.split(command.replace("\\\n", " ")) for command in commands]


def _link_pages(server: LocalServer, path: str, pages: list[list[dict[str, t.Any]]]) -> None:
    """`path?page=N` serves pages[N-1] with a Link rel="next" to N+1 while there is one."""

    @server.route(path)
    def handler(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        headers = []
        if page < len(pages):
            headers.append(("Link", f'<{path}?page={page + 1}>; rel="next"'))
        return json_reply(pages[page - 1], headers=headers)


PAGES: list[list[dict[str, t.Any]]] = [
    [{"id": 1, "score": 1, "note": "a", "tags": ["x"]}, {"id": 2, "score": 2, "note": "b"}],
    [{"id": 3, "score": 2.5, "note": None, "tags": []}],
    [{"id": 4, "score": 3, "note": "d", "tags": ["y"]}],
    [{"id": 5, "score": 4, "note": "e", "tags": []}],
    [{"id": 6, "score": 5, "note": "f", "tags": ["z"]}],
]


@pytest.mark.parametrize(
    ("pages", "expected"), [((), 3), (("--pages", "1"), 1), (("--pages", "4"), 4)]
)
def test_pages_caps_the_requests_exactly(
    server: LocalServer, cli: Cli, pages: tuple[str, ...], expected: int
) -> None:
    _link_pages(server, "/explain/paged", PAGES)
    config = {
        "streams": [
            {
                "name": "paged",
                "url": f"{server.url}/explain/paged",
                "page": "link-next",
                "page_limit": -1,
            }
        ]
    }

    result = cli(config, "--explain", *pages)

    assert result.code == 0, result.stderr
    assert len(server.requests_to("/explain/paged")) == expected
    _no_singer_output(result)
    out = result.stdout
    assert [int(n) for n in re.findall(r"^-- request (\d+)$", out, re.M)] == list(
        range(1, expected + 1)
    )
    assert f"(not sent: --pages {expected} reached)" in out
    assert f"== paged: {expected} request(s), {sum(map(len, PAGES[:expected]))} record(s)" in out
    # What the page expression saw, and what it chose.
    assert '"link":{"rel=\\"next\\"":' in out
    assert (
        f'`page` returned "/explain/paged?page=2" -> GET {server.url}/explain/paged?page=2' in out
    )
    # Each printed curl is exactly the request the server received.
    targets = [server.url + r.target for r in server.requests_to("/explain/paged")]
    assert [next(a for a in argv if a.startswith("http")) for argv in _curls(out)] == targets


def test_report_ends_each_chain_with_its_reason_and_the_inferred_schema(
    server: LocalServer, cli: Cli
) -> None:
    _link_pages(server, "/explain/short", PAGES[:2])
    config = {
        "streams": [
            {
                "name": "short",
                "url": f"{server.url}/explain/short",
                "page": "link-next",
                "page_limit": -1,
                "schema_sample": {"pages": 1},
            },
            {"name": "single", "url": f"{server.url}/records?n=4"},
            {
                "name": "limited",
                "url": f"{server.url}/explain/short",
                "page": "link-next",
                "page_limit": 1,
            },
        ]
    }

    result = cli(config, "--explain", "--pages", "5")

    assert result.code == 0, result.stderr
    out = result.stdout
    assert "next: none: `page` returned null, so this was the last page." in out
    assert "next: none: no `page` option, so one request." in out
    assert "next: none: page_limit 1 reached." in out
    assert "== short: 2 request(s), 3 record(s)" in out
    assert "== single: 1 request(s), 4 record(s)" in out
    assert len(server.requests_to("/explain/short")) == 3  # 2 + 1, never a 6th
    # The schema over every record seen: 2.5 widens score; every inferred field is
    # nullable, since a later page may carry a null the sample did not...
    short = out.split("== stream short", 1)[1].split("== stream single", 1)[0]
    assert re.search(r"^  id +integer or null$", short, re.M)
    assert re.search(r"^  note +string or null$", short, re.M)
    assert re.search(r"^  score +number or null$", short, re.M)
    assert re.search(r"^  tags +array of string or null$", short, re.M)
    # ...and the report says that a run, which samples only the first page here, would not
    # see it.
    assert (
        "note: a run infers from its sample (`schema_sample`: 1 page(s), up to 1000 "
        "record(s)), which types these fields differently: score." in short
    )
    assert re.search(
        r'^  JSON: \{"type":"object","description":"Inferred by tap-rhttp","properties":\{"id"',
        short,
        re.M,
    )


def test_a_null_only_field_is_said_to_be_left_untyped(server: LocalServer, cli: Cli) -> None:
    rows = [[{"id": 1, "parent_id": None}], [{"id": 2, "parent_id": None}]]
    _link_pages(server, "/explain/nulls", rows)
    stream = {"url": f"{server.url}/explain/nulls", "page": "link-next", "page_limit": -1}
    config = {
        "streams": [
            {"name": "nulls", **stream},
            {"name": "strict", **stream, "schema_drift": "fail"},
            {"name": "typed", **stream, "schema_overrides": {"parent_id": {"type": "integer"}}},
        ]
    }
    result = cli(config, "--explain")
    assert result.code == 0, result.stderr
    nulls, strict, typed = (
        result.stdout.split(f"== stream {name} ", 1)[1].split("== stream ", 1)[0]
        for name in ("nulls", "strict", "typed")
    )
    assert (
        "note: only null in the records seen, so left untyped (no column yet): parent_id. "
        "A run types such a field when a value arrives (`schema_drift: evolve`: a new "
        "column); `schema_overrides` types it now." in nulls
    )
    assert not re.search(r"^  parent_id ", nulls, re.M)
    assert "(`schema_drift: fail`: the run fails there)" in strict
    assert "left untyped" not in typed
    assert re.search(r"^  parent_id +integer$", typed, re.M)


def test_secrets_never_reach_the_report(server: LocalServer, cli: Cli) -> None:
    token, key, password = "tok-PLANTED-7d3f9a", "key-PLANTED-41c2e8", "pw-PLANTED-aa93"
    config = {
        "streams": [
            {
                "name": "echoed",
                "url": f"{server.url}/echo",
                "auth": {"type": "bearer", "token": token},
                "params": {"api_key": key, "q": "visible"},
                "page": "info['body']['nothing'].default(None)",
                "page_limit": 2,
            },
            {
                "name": "posted",
                "url": f"{server.url}/echo/post",
                "method": "POST",
                "data": {"user": "fred", "password": password},
                "auth": {"type": "basic", "user": "fred", "pass": password},
            },
        ]
    }

    result = cli(config, "--explain")

    assert result.code == 0, result.stderr
    # The server really got the secrets, and echoed them into the body the report shows.
    assert token in server.requests_to("/echo")[0].headers["Authorization"]
    assert key in server.requests_to("/echo")[0].query
    assert password in server.requests_to("/echo/post")[0].body.decode()
    for secret in (token, key, password):
        assert secret not in result.stdout
        assert secret not in result.stderr
    out = result.stdout
    assert "-H 'Authorization: Bearer ***REDACTED***'" in out
    assert "-H 'Authorization: Basic ***REDACTED***'" in out
    assert f"api_key={MASK}" in out
    assert "q=visible" in out
    assert f"--data-binary 'password={MASK}&user=fred'" in out
    body_line = next(line for line in out.splitlines() if line.startswith("  body:"))
    assert MASK in body_line  # the echoed URL and Authorization header, masked


def test_curl_repeats_the_request(server: LocalServer, cli: Cli) -> None:
    config = {
        "streams": [
            {
                "name": "put",
                "url": f"{server.url}/echo/put?a=1",
                "method": "PUT",
                "params": {"b": "two words"},
                "header": {"X-Trace": "abc", "User-Agent": None},
                "data": {"k": [1, 2]},
                "timeout": 9,
                "redirects": 0,
            }
        ]
    }

    result = cli(config, "--explain")

    assert result.code == 0, result.stderr
    (argv,) = _curls(result.stdout)
    (sent,) = server.requests_to("/echo/put")
    assert argv[:4] == ["curl", "-i", "-X", "PUT"]
    assert argv[4] == server.url + sent.target == f"{server.url}/echo/put?a=1&b=two%20words"
    headers = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-H"]
    assert "X-Trace: abc" in headers
    assert "Content-Type: application/json" in headers
    assert "User-Agent:" in headers  # curl's way of not sending one, as the spec asks
    assert "User-Agent" not in sent.headers
    assert argv[argv.index("--data-binary") + 1] == sent.body.decode() == '{"k":[1,2]}'
    assert "--max-time" in argv
    assert argv[argv.index("--max-time") + 1] == "9"
    assert "-L" not in argv  # redirects: 0


def test_for_each_chains_share_the_request_budget(server: LocalServer, cli: Cli) -> None:
    config = {
        "streams": [
            {
                "name": "fanned",
                "url": f"{server.url}/echo",
                "params": {"user": "{{ item }}"},
                "for_each": [1, 2, 3, 4],
            }
        ]
    }

    result = cli(config, "--explain", "--pages", "2")

    assert result.code == 0, result.stderr
    assert [r.args["user"] for r in server.requests_to("/echo")] == ["1", "2"]
    assert "-- chain for_each[0] = 1" in result.stdout
    assert "-- chain for_each[1] = 2" in result.stdout
    assert "not requested: 2 more chain(s) (--pages 2)." in result.stdout


def test_parent_rows_feed_the_child_chains(server: LocalServer, cli: Cli) -> None:
    config = {
        "streams": [
            {"name": "users", "url": f"{server.url}/records?n=3", "primary_keys": ["id"]},
            {
                "name": "user_detail",
                "url": f"{server.url}/echo/users/{{{{ row['id'] }}}}",
                "parent": "users",
            },
        ]
    }

    result = cli(config, "--explain", "--pages", "2")

    assert result.code == 0, result.stderr
    assert [r.path for r in server.requests_to("/records")] == ["/records"]
    assert [r.path for r in server.log if r.path.startswith("/echo/")] == [
        "/echo/users/1",
        "/echo/users/2",
    ]
    child = result.stdout.split("== stream user_detail", 1)[1]
    assert "-- chain parent row 1 of 3 seen" in child
    assert "not requested: 1 more chain(s) (--pages 2)." in child
    assert re.search(r"^  users_id +integer or null$", child, re.M)  # the parent key column


def _errors(stderr: str) -> list[str]:
    """The ERROR log lines, without their timestamps."""
    return [line.split("| ERROR", 1)[1] for line in stderr.splitlines() if "| ERROR" in line]


def test_config_errors_read_as_in_a_normal_run(cli: Cli) -> None:
    config = {"streams": [{"name": "bad name", "url": "ftp://example.com", "page_limit": 3}]}

    explained = cli(config, "--explain")
    synced = cli(config)

    assert explained.code == synced.code == 1
    assert explained.stdout == ""
    assert _errors(explained.stderr) == _errors(synced.stderr)
    assert any(
        "streams[0].url: Unsupported protocol `ftp`" in line for line in _errors(synced.stderr)
    )
    assert "Traceback" not in explained.stderr


def test_http_errors_read_as_in_a_normal_run(server: LocalServer, cli: Cli) -> None:
    config = {
        "streams": [
            {"name": "fine", "url": f"{server.url}/records?n=2"},
            {"name": "broken", "url": f"{server.url}/status/503?body=down", "reattempts": 1},
            {"name": "never", "url": f"{server.url}/records?n=1"},
        ]
    }

    explained = cli(config, "--explain")
    synced = cli(config)

    assert explained.code == synced.code == 1
    envelope = (
        f"Error in HTTP GET of `{server.url}/status/503?body=down` [stream broken, page 1]: "
        "status code 503."
    )
    assert envelope in explained.stderr
    assert _errors(explained.stderr) == _errors(synced.stderr)
    assert "Traceback" not in explained.stderr
    out = explained.stdout
    assert "== fine: 1 request(s), 2 record(s)" in out
    assert f"$ curl -i -X GET '{server.url}/status/503?body=down'" in out  # shown, then its error
    assert f"error (a run stops here; the whole message is on stderr): {envelope}" in out
    assert "== stream never" not in out
    _no_singer_output(explained)


def test_a_failing_page_expression_is_shown_on_its_page(server: LocalServer, cli: Cli) -> None:
    config = {
        "streams": [
            {
                "name": "wrong",
                "url": f"{server.url}/records?n=2",
                "page": "info['body'][0]['id']",
                "page_limit": 3,
            }
        ]
    }

    result = cli(config, "--explain")

    assert result.code == 1
    assert "records: 2" in result.stdout
    assert "next: none: `page` failed (the whole error follows): " in result.stdout
    assert "Expected `page` to return an OBJECT, but found NUMBER." in result.stderr
    assert len(server.requests_to("/records")) == 1


def test_pages_needs_explain(cli: Cli) -> None:
    result = cli({"streams": [{"name": "a", "url": "http://127.0.0.1:9/"}]}, "--pages", "2")

    assert result.code == 2
    assert "--pages applies only with --explain." in result.stderr


def test_fractional_seconds_in_a_config_file(server: LocalServer, cli: Cli) -> None:
    config = {"streams": [{"name": "a", "url": f"{server.url}/records", "timeout": 2.5}]}

    result = cli(config, "--explain")

    assert result.code == 0, result.stderr
    assert "--max-time 2.5" in result.stdout


def test_explain_shows_the_decoder_and_what_each_body_was_read_as(
    server: LocalServer, cli: Cli
) -> None:
    @server.route("/explain/export")
    def export(request: Request) -> Reply:
        return Reply(200, b"id;name\n1;a\n2;b\n", (), "text/csv; charset=utf-8")

    @server.route("/explain/feed")
    def feed(request: Request) -> Reply:
        return Reply(200, b"<rss><channel><item><t>x</t></item></channel></rss>", (), "text/xml")

    config = {
        "streams": [
            {"name": "export", "url": f"{server.url}/explain/export", "csv": {"delimiter": ";"}},
            {
                "name": "feed",
                "url": f"{server.url}/explain/feed",
                "result_format": "xml",
                "xml": {"records": "channel/item", "arrays": ["t"]},
            },
        ]
    }
    result = cli(config, "--explain")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "decoder: result_format auto; csv {delimiter: ';', quotechar: '\"'" in out
    assert (
        "read as: csv (auto, by Content-Type text/csv; charset=utf-8); csv {delimiter: ';'" in out
    )
    assert "header: true" in out
    assert "decoder: result_format xml; xml {records: 'channel/item', arrays: ['t']}" in out
    assert "read as: xml; xml {records: 'channel/item', arrays: ['t']}" in out
    assert re.search(r"== export: 1 request\(s\), 2 record\(s\)", out)
