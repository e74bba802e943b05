"""`tap-rhttp init URL`: a stream spec from one URL, against the loopback paginating APIs.

Each pagination style of tests/pagination_server.py (Link headers, a body next URL, a
cursor, page numbers, offsets, Stripe's has_more) must be found, written as the recipe of
docs/cookbook.md, and verified on a real second page; an API that cannot be paged must be
reported as such. The printed JSON and YAML must be the same spec (the YAML parsed back
with PyYAML, which Meltano uses), a spec the tap accepts, and free of every secret given on
the command line, in every encoding.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import typing as t
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from click.testing import CliRunner
from pagination_server import TOTAL, install
from server import Reply, json_reply

from tap_rhttp.config.load import load_specs
from tap_rhttp.tap import TapRHTTP
from tap_rhttp.wizard import detect
from tap_rhttp.wizard.command import init_command, stream_name
from tap_rhttp.wizard.probe import Probe, Proposal, Start, propose

if t.TYPE_CHECKING:
    from server import LocalServer, Request

COOKBOOK = (Path(__file__).resolve().parent.parent / "docs" / "cookbook.md").read_text()
_JSON_BLOCK = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
RECIPES = {spec["name"]: spec for spec in map(json.loads, _JSON_BLOCK.findall(COOKBOOK))}


def _propose(server: LocalServer, path: str, *params: tuple[str, str], **kw: t.Any) -> Proposal:
    start = Start.build(server.url + path, name="s", params=list(params))
    return propose(Probe(start, sleep=lambda _s: None, **kw))


class Output(t.NamedTuple):
    code: int
    stdout: str
    stderr: str

    def section(self, title: str) -> str:
        """The text of the `== title...` section, up to the next one."""
        parts = re.split(r"^== ", self.stdout, flags=re.M)
        (part,) = [p for p in parts if p.startswith(title)]
        return part.split("\n", 1)[1].strip("\n")

    def json_spec(self) -> dict[str, t.Any]:
        return t.cast("dict[str, t.Any]", json.loads(self.section("The stream spec as JSON")))

    def yaml_spec(self) -> dict[str, t.Any]:
        doc = yaml.safe_load(self.section("The same in meltano.yml"))
        (plugin,) = doc["plugins"]["extractors"]
        assert plugin["name"] == "tap-rhttp"
        (spec,) = plugin["config"]["streams"]
        return t.cast("dict[str, t.Any]", spec)


def _init(*args: str) -> Output:
    result = CliRunner().invoke(init_command, list(args), catch_exceptions=False)
    return Output(result.exit_code, result.stdout, result.stderr)


# --------------------------------------------------------------------------- each style


# (path, params given, the cookbook recipe its `page` must equal, records_path, primary key)
STYLES: dict[str, tuple[str, list[tuple[str, str]], str, str | None, str]] = {
    "link": (
        "/repos/octocat/hello-world/issues",
        [("state", "all"), ("per_page", "2")],
        RECIPES["issues"]["page"],
        None,
        "id",
    ),
    "body next URL": (
        "/api/orders/",
        [("page_size", "2")],
        "info['body']['next'].default(None)",  # the cookbook's variant for a field left out
        "$.results[*]",
        "id",
    ),
    "nested next URL": (
        "/meta-next",
        [],
        "info['body']['meta']['next'].default(None)",  # the seed page's recipe
        "$.items[*]",
        "id",
    ),
    "cursor": (
        "/v1/events",
        [("limit", "2")],
        RECIPES["events"]["page"],
        "$.data[*]",
        "id",
    ),
    "has_more": (
        "/v1/customers",
        [("limit", "2")],
        RECIPES["customers"]["page"],
        "$.data[*]",
        "id",
    ),
    "page number, empty page": (
        "/api/v2/tickets",
        [],
        RECIPES["tickets"]["page"],
        None,
        "id",
    ),
    "page number, short page": (
        "/api/v2/tickets",
        [("page", "1"), ("per_page", "2")],
        RECIPES["tickets_short_page"]["page"],
        None,
        "id",
    ),
    "offset with total": (
        "/v3/contacts",
        [],
        RECIPES["contacts"]["page"],
        "$.items[*]",
        "id",
    ),
}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_pagination_style_is_found_as_the_cookbook_writes_it(
    server: LocalServer, style: str
) -> None:
    install(server)
    path, params, page, records_path, key = STYLES[style]
    assert page in COOKBOOK  # the expression is the cookbook's own

    proposal = _propose(server, path, *params)

    assert proposal.paged
    assert proposal.spec["page"] == page
    assert proposal.spec["page_limit"] == -1
    assert proposal.spec.get("records_path") == records_path
    assert proposal.spec["primary_keys"] == [key]
    assert proposal.tried[-1].verified
    assert proposal.tried[-1].outcome.startswith("page 2 brought")
    assert proposal.records == min(TOTAL, 6)  # 3 pages of 2: every record, none twice
    assert proposal.requests <= 12
    # the proposed spec, run as a sync, reads every record exactly once
    run = TapRHTTP(config={"streams": [proposal.spec]}, parse_env_config=False)
    assert [s.name for s in run.streams.values()] == ["s"]


def test_the_offset_recipe_asks_for_the_page_size_the_body_reports(server: LocalServer) -> None:
    install(server)
    proposal = _propose(server, "/v3/contacts")
    assert proposal.spec["params"] == RECIPES["contacts"]["params"] == {"offset": 0, "limit": 2}


def test_a_proposed_spec_syncs_every_record_once(server: LocalServer, sync: t.Any) -> None:
    install(server)
    for path, params, *_ in STYLES.values():
        proposal = _propose(server, path, *params)
        spec = {**proposal.spec}
        spec.pop("replication_key", None)  # the ids here are not date-times anyway
        records = sync({"streams": [spec]}).records("s")
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)) == TOTAL, (path, ids)


def test_page_numbers_are_verified_on_the_second_page(server: LocalServer) -> None:
    """An endpoint that ignores `offset` is not proposed as offset-paged."""
    install(server)
    proposal = _propose(server, "/numbered")
    assert proposal.spec["page"] == RECIPES["tickets"]["page"]
    assert [t.candidate.kind for t in proposal.tried] == ["page"]
    targets = [r.target for r in server.log]
    assert targets[:3] == ["/numbered", "/numbered?page=1", "/numbered?page=2"]


def test_an_api_that_cannot_page_is_said_so(server: LocalServer) -> None:
    @server.route("/static")
    def static(request: Request) -> Reply:
        return json_reply([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])

    out = _init(server.url + "/static")

    assert out.code == 0, out.stderr
    assert "Cannot page this API" in out.stdout
    spec = out.json_spec()
    assert "page" not in spec
    assert "page_limit" not in spec
    assert spec["primary_keys"] == ["id"]
    # every way tried, and why each failed: the API answered page 1 again
    tried = re.findall(r"^  \[no \] (\w[\w-]*): ", out.stdout, re.M)
    assert tried == ["page", "offset"]
    assert out.stdout.count("repeated 2 record(s) of page 1") == 2
    assert load_specs({"streams": [spec]})


def test_an_api_whose_next_page_fails_is_not_proposed_as_paged(server: LocalServer) -> None:
    @server.route("/one-page")
    def one_page(request: Request) -> Reply:
        if request.args.get("page", "1") != "1" or "offset" in request.args:
            return Reply(404, "no such page", (), "text/plain")
        return json_reply({"items": [{"id": 1}], "next_page_hint": None})

    proposal = _propose(server, "/one-page")
    assert not proposal.paged
    assert all(not tried.verified for tried in proposal.tried)
    assert any("status code 404" in tried.outcome for tried in proposal.tried)


def test_the_request_budget_is_a_hard_cap(server: LocalServer) -> None:
    @server.route("/static")
    def static(request: Request) -> Reply:
        return json_reply([{"id": 1}, {"id": 2}])

    proposal = _propose(server, "/static", max_requests=2)
    assert proposal.requests == 2
    assert len(server.log) == 2
    assert any("--max-requests" in note for note in proposal.notes)


def test_the_first_request_failing_is_an_error_with_rhttps_envelope(server: LocalServer) -> None:
    out = _init(server.url + "/status/404")
    assert out.code == 1
    assert "Error in HTTP GET of" in out.stderr
    assert "status code 404" in out.stderr
    assert out.stdout == ""


def test_a_bad_url_is_a_config_error_before_any_request(server: LocalServer) -> None:
    out = _init("ftp://127.0.0.1/x")
    assert out.code == 2
    assert "url" in out.stderr
    assert server.log == []


# --------------------------------------------------------------------------- keys


def test_replication_key_is_a_monotone_date_time(server: LocalServer) -> None:
    @server.route("/dated")
    def dated(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        rows = [
            {
                "id": n,
                "created_at": f"2024-01-{n:02d}T00:00:00Z",
                "updated_at": f"2024-02-{(7 * n) % 28 + 1:02d}T00:00:00Z",  # out of order
                "note": None if n % 2 else "x",
            }
            for n in range(page * 2 - 1, page * 2 + 1)
            if n <= 5
        ]
        return json_reply({"rows": rows})

    proposal = _propose(server, "/dated")
    assert proposal.spec["replication_key"] == "created_at"
    reason = dict(proposal.reasons)["replication_key"]
    assert "ascending" in reason
    props = proposal.spec["schema"]["properties"]
    assert props["created_at"]["format"] == "date-time"
    assert set(props) == {"id", "created_at", "updated_at", "note"}


def test_no_replication_key_from_a_date_time_out_of_order(server: LocalServer) -> None:
    @server.route("/shuffled")
    def shuffled(request: Request) -> Reply:
        days = [3, 1, 2]
        return json_reply(
            [{"id": n, "seen_at": f"2024-01-0{d}T00:00:00Z"} for n, d in enumerate(days)]
        )

    proposal = _propose(server, "/shuffled")
    assert "replication_key" not in proposal.spec
    assert "in order" in dict(proposal.reasons)["replication_key"]
    assert proposal.spec["schema"]["properties"]["seen_at"]["format"] == "date-time"


def test_no_primary_key_when_no_field_is_unique(server: LocalServer) -> None:
    @server.route("/dupes")
    def dupes(request: Request) -> Reply:
        return json_reply([{"id": 1, "v": "a"}, {"id": 1, "v": "b"}])

    proposal = _propose(server, "/dupes")
    assert "primary_keys" not in proposal.spec
    assert "appends" in dict(proposal.reasons)["primary_keys"]


def test_primary_keys_are_id_like_fields() -> None:
    rows = [{"paid": n, "orderId": f"o{n}", "customer_id": 1} for n in range(3)]
    assert detect.primary_key(rows)[0] == "orderId"  # `paid` ends in "id" but is no id
    rows = [{"uuid": f"u{n}", "id": None} for n in range(3)]
    assert detect.primary_key(rows)[0] == "uuid"  # a null `id` disqualifies it
    key, why = detect.primary_key([{"paid": 1, "name": "a"}, {"paid": 2, "name": "b"}])
    assert key is None
    assert "appends" in why


def test_stream_names_come_from_the_url() -> None:
    assert stream_name("https://x.example/api/v2/tickets.json?page=1") == "tickets"
    assert stream_name("https://x.example/api/orders/") == "orders"
    assert stream_name("https://x.example/") == "records"
    assert stream_name("https://x.example/2024-items") == "s_2024_items"


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize("style", ["cursor", "offset with total", "link"])
def test_json_and_yaml_are_the_same_valid_spec(server: LocalServer, style: str) -> None:
    install(server)
    path, params, page, *_ = STYLES[style]
    args = [server.url + path, "--name", "things"]
    for key, value in params:
        args += ["--param", f"{key}={value}"]

    out = _init(*args)

    assert out.code == 0, out.stderr
    spec = out.json_spec()
    assert out.yaml_spec() == spec
    assert spec["page"] == page
    assert load_specs({"streams": [spec]})
    TapRHTTP(config={"streams": [spec]}, parse_env_config=False, validate_config=True)
    # one reason line under each choice
    for option in ("records_path", "page", "primary_keys", "replication_key", "schema"):
        assert re.search(rf"^  {option}: .*\n      \S", out.stdout, re.M), option


def test_python_m_tap_rhttp_init_runs_the_wizard(server: LocalServer) -> None:
    install(server)
    proc = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "init", server.url + "/link/quoted"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"page": "link-next"' in proc.stdout
    assert "  - name: 'quoted'" in proc.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "tap-rhttp init URL" in helped.stdout


# --------------------------------------------------------------------------- secrets

TOKEN = "tok-3f9a7c1e5b2d"
PASSWORD = "pw-8e1c4a7f"
API_KEY = "key-5d2b9e0c7a"
HEADER_KEY = "hdr-1a2b3c4d5e"


def _forms(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"fred:{secret}".encode()).decode(),
    }


def test_no_secret_given_on_the_command_line_is_printed(server: LocalServer) -> None:
    """Auth, secret headers and params become references; a server echoing them back,
    even as a field name, and a retried request's log line do not leak them either."""

    @server.route("/private")
    def private(request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, "who are you", (), "text/plain")
        if request.headers.get("X-Api-Key") != HEADER_KEY or request.args.get("api_key") != API_KEY:
            return Reply(403, "bad key", (), "text/plain")
        page = int(request.args.get("page", "1"))
        if page == 2 and not server.state.get("flaked"):
            server.state["flaked"] = True
            return Reply(503, f"busy {request.target}", (("Retry-After", "0.01"),), "text/plain")
        rows = [{"id": n, TOKEN: API_KEY, "echo": HEADER_KEY} for n in (2 * page - 1, 2 * page)]
        return json_reply(rows if page <= 2 else [])

    out = _init(
        server.url + f"/private?api_key={API_KEY}",
        "--bearer",
        TOKEN,
        "--header",
        f"X-Api-Key: {HEADER_KEY}",
    )

    assert out.code == 0, out.stderr
    assert server.state.get("flaked")  # a retry happened, and was logged
    assert "try 1 of 5 failed" in out.stderr
    for secret in (TOKEN, API_KEY, HEADER_KEY):
        for form in _forms(secret):
            assert form not in out.stdout, form
            assert form not in out.stderr, form
    spec = out.json_spec()
    assert spec["auth"] == {"type": "bearer", "token": "{{ secrets['token'] }}"}
    assert spec["header"] == {"X-Api-Key": "{{ secrets['x_api_key'] }}"}
    assert spec["params"]["api_key"] == "{{ secrets['api_key'] }}"
    assert "api_key" not in spec["url"]
    assert out.yaml_spec() == spec
    assert "TAP_RHTTP_SECRETS='" in out.stdout
    assert "<the value of --bearer>" in out.stdout
    # the spec works once the secrets are given
    secrets = {"token": TOKEN, "x_api_key": HEADER_KEY, "api_key": API_KEY}
    assert load_specs({"secrets": secrets, "streams": [spec]})


def test_basic_auth_password_is_a_secret_reference(server: LocalServer) -> None:
    @server.route("/basic")
    def basic(request: Request) -> Reply:
        expected = "Basic " + base64.b64encode(f"fred:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Reply(401, "no", (), "text/plain")
        return json_reply([{"id": 1}])

    out = _init(server.url + "/basic", "--basic", f"fred:{PASSWORD}")

    assert out.code == 0, out.stderr
    assert out.json_spec()["auth"] == {
        "type": "basic",
        "user": "fred",
        "pass": "{{ secrets['password'] }}",
    }
    for form in _forms(PASSWORD):
        assert form not in out.stdout + out.stderr


def test_a_bare_next_token_is_a_cursor_and_its_param_is_found(server: LocalServer) -> None:
    @server.route("/tokened")
    def tokened(request: Request) -> Reply:
        start = int(request.args.get("cursor", "0"))
        rows = [{"id": n} for n in range(start + 1, min(start + 2, TOTAL) + 1)]
        nxt = str(start + 2) if start + 2 < TOTAL else None
        return json_reply({"rows": rows, "next": nxt})

    proposal = _propose(server, "/tokened")

    assert proposal.paged
    assert proposal.spec["page"] == (
        "r.branch(info['body']['next'].default(None) == None, None, "
        "{'params': {'cursor': info['body']['next']}})"
    )
    # `next` itself was tried first as the param name, and the API ignored it
    assert [(t.candidate.kind, t.verified) for t in proposal.tried] == [
        ("cursor", False),
        ("cursor", True),
    ]
    assert "repeated" in proposal.tried[0].outcome
