"""`meltano run tap-rhttp target-postgres` end to end: the real meltano CLI, the repo's
meltano.yml, the loopback server of conftest, and the throwaway PostgreSQL of tests/pg.py.

What a scheduled user job depends on, checked in the database itself: row counts across
Link-header pages (one page failing once, then retried), the column types target-postgres
creates from the inferred schema, upserts on `primary_keys` on a second run, appends without
them, an incremental second run, and a failing API ending the run non-zero with r.http's
readable envelope instead of a traceback.

Isolation: meltano runs with the repo as its project (so the real meltano.yml is tested) but
with ``MELTANO_SYS_DIR_ROOT`` in a per-test temporary directory, so the developer's
``.meltano/meltano.db`` (state), catalog cache and run files are never touched and tests
cannot see each other's state. The plugin virtualenvs are reused through symlinks to the
repo's ``.meltano/{extractors,loaders}`` when ``meltano install`` has made them (0 s); if
not, or with ``TAP_RHTTP_E2E_FRESH_PLUGINS=1``, they are installed once per session into a
temporary directory (~7 s with a warm uv cache; needs PyPI). Settings come from the environment only (``TAP_RHTTP_STREAMS``,
``TARGET_POSTGRES_*``), as the README tells users to give them. Meltano is looked up in
``$MELTANO_BIN``, ``.venv-meltano/bin/meltano``, then ``PATH``; a missing one fails the
test, it never skips.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import typing as t
import uuid
from pathlib import Path

import pytest
from meltano_cli import meltano_bin
from server import Reply, json_reply

if t.TYPE_CHECKING:
    from pg import PostgresServer
    from server import LocalServer, Request

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 120.0  # one `meltano run` here: ~4 s
PLUGINS = (("extractors", "tap-rhttp"), ("loaders", "target-postgres"))
# Settings of the developer's shell that must not leak into the runs.
LEAKY_PREFIXES = ("MELTANO_", "TAP_RHTTP_", "TARGET_POSTGRES_")

pytestmark = [pytest.mark.timeout(300), pytest.mark.e2e, pytest.mark.meltano, pytest.mark.postgres]


# --------------------------------------------------------------------------- meltano


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    env["MELTANO_PROJECT_ROOT"] = str(REPO_ROOT)
    env["MELTANO_ENVIRONMENT"] = "dev"
    env["MELTANO_CLI_DISABLE_VERSION_CHECK"] = "true"
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    bundle = "/etc/ssl/certs/ca-certificates.crt"  # uv (installs) needs it behind TLS proxies
    if "SSL_CERT_FILE" not in env and os.path.exists(bundle):
        env["SSL_CERT_FILE"] = bundle
    return env


def _installed(plugin_dir: Path) -> bool:
    venv = plugin_dir / "venv"
    return (venv / ".meltano_plugin_fingerprint").is_file() and (venv / "bin").is_dir()


@pytest.fixture(scope="session")
def plugin_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`<kind>/<name>` -> an installed plugin directory (the repo's, else a fresh install)."""
    repo_sys = REPO_ROOT / ".meltano"
    found = {f"{kind}/{name}": repo_sys / kind / name for kind, name in PLUGINS}
    fresh = os.environ.get("TAP_RHTTP_E2E_FRESH_PLUGINS") == "1"
    if not fresh and all(_installed(path) for path in found.values()):
        return found
    sys_dir = tmp_path_factory.mktemp("meltano-plugins")
    env = {**_base_env(), "MELTANO_SYS_DIR_ROOT": str(sys_dir)}
    for kind, name in PLUGINS:
        proc = subprocess.run(
            [meltano_bin(), "install", kind.rstrip("s"), name],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, f"meltano install {name} failed:\n{proc.stderr[-4000:]}"
    return {f"{kind}/{name}": sys_dir / kind / name for kind, name in PLUGINS}


@dataclasses.dataclass
class Pipeline:
    """`meltano run tap-rhttp target-postgres` into one schema, with its own system dir."""

    sys_dir: Path
    schema: str
    target_env: dict[str, str]
    pg: PostgresServer

    def run(self, streams: list[dict[str, t.Any]], *args: str) -> subprocess.CompletedProcess[str]:
        env = _base_env()
        env.update(self.target_env)
        env["MELTANO_SYS_DIR_ROOT"] = str(self.sys_dir)
        env["TAP_RHTTP_STREAMS"] = json.dumps(streams)
        return subprocess.run(
            [meltano_bin(), "run", *args, "tap-rhttp", "target-postgres"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )

    def run_ok(self, streams: list[dict[str, t.Any]]) -> str:
        proc = self.run(streams)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"meltano run exited {proc.returncode}:\n{output[-8000:]}"
        return output

    def rows(self, sql: str) -> list[tuple[str | None, ...]]:
        return self.pg.query(sql.replace("{schema}", self.schema))

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT count(*) FROM {{schema}}.{table}")[0][0] or 0)

    def columns(self, table: str) -> dict[str, tuple[str | None, str | None]]:
        return {
            name or "": (data_type, udt)
            for name, data_type, udt in self.rows(
                "SELECT column_name, data_type, udt_name FROM information_schema.columns "
                f"WHERE table_schema = '{{schema}}' AND table_name = '{table}'"
            )
            if name and not name.startswith("_sdc_")
        }


@pytest.fixture
def pipeline(
    tmp_path: Path,
    plugin_dirs: dict[str, Path],
    postgres_server: PostgresServer,
    postgres_dsn: dict[str, t.Any],
) -> t.Iterator[Pipeline]:
    sys_dir = tmp_path / "meltano-sys"
    for key, source in plugin_dirs.items():
        link = sys_dir / key
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=True)
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    target_env = {f"TARGET_POSTGRES_{k.upper()}": str(v) for k, v in postgres_dsn.items()}
    target_env["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = schema
    yield Pipeline(sys_dir, schema, target_env, postgres_server)
    postgres_server.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _stream(server: LocalServer, path: str, name: str, **options: t.Any) -> dict[str, t.Any]:
    return {"name": name, "url": server.url + path, **options}


# --------------------------------------------------------------------------- data

ORDERS_V1: list[dict[str, t.Any]] = [
    {
        "id": 1,
        "total": 12.5,
        "quantity": 3,
        "paid": True,
        "created_at": "2024-01-02T03:04:05Z",
        "customer": {"name": "Ada", "tier": 2},
        "tags": ["new", "web"],
        "scores": [1, 2],
        "lines": [{"sku": "A-1", "qty": 1}],
        "note": "first",
    },
    {
        "id": 2,
        "total": 7.25,
        "quantity": 1,
        "paid": False,
        "created_at": "2024-06-30T23:59:59.5+02:00",
        "customer": {"name": "Grace", "tier": 1},
        "tags": [],
        "scores": [3],
        "lines": [],
        "note": None,
    },
    {
        "id": 3,
        "total": 100,
        "quantity": 10,
        "paid": True,
        "created_at": "2024-07-01T00:00:00Z",
        "customer": {"name": "Alan", "tier": 1},
        "tags": ["bulk"],
        "scores": [],
        "lines": [{"sku": "B-2", "qty": 10}],
        "note": "third",
    },
    {
        "id": 4,
        "total": 0.1,
        "quantity": 0,
        "paid": False,
        "created_at": "2024-07-02T12:00:00Z",
        "customer": {"name": "Edsger", "tier": 3},
        "tags": ["web"],
        "scores": [4, 5, 6],
        "lines": [],
        "note": "fourth",
    },
    {
        "id": 5,
        "total": 42.0,
        "quantity": 2,
        "paid": True,
        "created_at": "2024-07-03T08:30:00Z",
        "customer": {"name": "Barbara", "tier": 2},
        "tags": ["web", "gift"],
        "scores": [7],
        "lines": [{"sku": "C-3", "qty": 2}],
        "note": None,
    },
]
PER_PAGE = 2  # 5 orders: pages of 2, 2 and 1

# JSON Schema type -> (information_schema data_type, udt_name) in target-postgres 0.8.1.
EXPECTED_ORDER_COLUMNS = {
    "id": ("bigint", "int8"),
    "total": ("numeric", "numeric"),
    "quantity": ("bigint", "int8"),
    "paid": ("boolean", "bool"),
    "created_at": ("timestamp without time zone", "timestamp"),
    "customer": ("jsonb", "jsonb"),
    "tags": ("ARRAY", "_text"),
    "scores": ("ARRAY", "_int8"),
    "lines": ("ARRAY", "_jsonb"),
    "note": ("text", "text"),
}


def _link_paged(server: LocalServer, path: str, data: list[dict[str, t.Any]]) -> None:
    """`path?page=N`: PER_PAGE records and a Link rel="next"; page 2 fails once with a 503."""

    @server.route(path)
    def handler(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        if page == 2 and not server.state.get(f"{path}:flaked"):
            server.state[f"{path}:flaked"] = True
            return Reply(503, "busy, try again", (("Retry-After", "0.05"),), "text/plain")
        chunk = data[(page - 1) * PER_PAGE : page * PER_PAGE]
        headers = []
        if page * PER_PAGE < len(data):
            headers.append(("Link", f'<{path}?page={page + 1}>; rel="next"'))
        return json_reply(chunk, headers=headers)


# --------------------------------------------------------------------------- tests


def test_run_lands_typed_rows_then_upserts_on_keys_and_appends_without(
    server: LocalServer, pipeline: Pipeline
) -> None:
    orders = [dict(o) for o in ORDERS_V1]
    events = [{"kind": "signup", "n": 1}, {"kind": "login", "n": 2}, {"kind": "logout", "n": 3}]
    _link_paged(server, "/e2e/orders", orders)
    server.route("/e2e/events")(lambda request: json_reply(events))
    streams = [
        _stream(
            server,
            "/e2e/orders",
            "e2e_orders",
            page="link-next",
            page_limit=-1,
            primary_keys=["id"],
            reattempts=3,
        ),
        _stream(server, "/e2e/events", "e2e_events"),  # no primary_keys: appends
    ]

    output = pipeline.run_ok(streams)

    assert "try 1 of 3 failed (status code 503)" in output  # page 2 was retried, once
    assert pipeline.count("e2e_orders") == 5
    assert pipeline.rows("SELECT count(DISTINCT id) FROM {schema}.e2e_orders") == [("5",)]
    assert pipeline.columns("e2e_orders") == EXPECTED_ORDER_COLUMNS
    assert pipeline.columns("e2e_events") == {"kind": ("text", "text"), "n": ("bigint", "int8")}
    assert pipeline.count("e2e_events") == 3
    # Values as a SQL user reads them: timestamps in UTC, numbers exact, JSON queryable.
    assert pipeline.rows(
        "SELECT id, total, paid, created_at, customer->>'name', tags, scores, "
        "lines[1]->>'sku', note FROM {schema}.e2e_orders WHERE id IN (1, 2) ORDER BY id"
    ) == [
        ("1", "12.5", "t", "2024-01-02 03:04:05", "Ada", "{new,web}", "{1,2}", "A-1", "first"),
        ("2", "7.25", "f", "2024-06-30 21:59:59.5", "Grace", "{}", "{3}", None, None),
    ]

    # Second run: two orders changed upstream (page 1 keeps its null `note`: see
    # test_a_null_the_first_page_did_not_show_still_loads). Keyed rows are replaced, never duplicated;
    # the keyless stream appends its records again.
    orders[1].update(total=8.75, paid=True)
    orders[4].update(tags=["web"], customer={"name": "Barbara L.", "tier": 3})
    pipeline.run_ok(streams)

    assert pipeline.count("e2e_orders") == 5
    assert pipeline.rows(
        "SELECT id, total, paid, note, tags, customer->>'name' FROM {schema}.e2e_orders "
        "WHERE id IN (2, 5) ORDER BY id"
    ) == [
        ("2", "8.75", "t", None, "{}", "Grace"),
        ("5", "42.0", "t", None, "{web}", "Barbara L."),
    ]
    assert pipeline.rows(
        "SELECT total FROM {schema}.e2e_orders WHERE id IN (1, 3, 4) ORDER BY id"
    ) == [("12.5",), ("100",), ("0.1",)]
    assert pipeline.count("e2e_events") == 6


@pytest.mark.parametrize(
    ("failing_page", "stage"),
    [(1, "Catalog discovery failed"), (2, "Extractor failed")],
    ids=["first-page-fails-at-discovery", "second-page-fails-mid-sync"],
)
def test_failing_api_fails_the_run_with_the_rhttp_envelope(
    server: LocalServer, pipeline: Pipeline, failing_page: int, stage: str
) -> None:
    @server.route("/e2e/broken")
    def broken(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        if page >= failing_page:
            return Reply(500, "upstream exploded", (("Retry-After", "0.01"),), "text/plain")
        return json_reply(
            [{"id": page}], headers=[("Link", f'</e2e/broken?page={page + 1}>; rel="next"')]
        )

    streams = [
        _stream(server, "/e2e/broken", "e2e_broken", page="link-next", page_limit=-1, reattempts=2)
    ]
    proc = pipeline.run(streams)
    output = proc.stdout + proc.stderr

    assert proc.returncode != 0, output[-4000:]
    url = f"{server.url}/e2e/broken" + ("" if failing_page == 1 else f"?page={failing_page}")
    where = f"[stream e2e_broken, page {failing_page}]"
    assert f"Error in HTTP GET of `{url}` {where}: status code 500." in output, output[-4000:]
    assert "upstream exploded" in output  # the start of the body, as r.http shows it
    assert "try 1 of 2 failed (status code 500)" in output
    assert stage in output
    assert "Traceback (most recent call last)" not in output, output[-4000:]
    # Discovery samples up to 3 pages: page 1, then page 2's two tries end the sample (a
    # WARNING, not a failure); the sync, in its own process with the catalog, asks again.
    assert len(server.requests_to("/e2e/broken")) == (2 if failing_page == 1 else 3 + 1 + 2)
    if failing_page == 2:
        assert "sampling for the schema stopped after 1 page(s)" in output


def test_a_null_the_first_page_did_not_show_still_loads(
    server: LocalServer, pipeline: Pipeline
) -> None:
    data = [{"id": 1, "tier": 2, "note": "a"}, {"id": 2, "tier": 1, "note": "b"}]
    data.append({"id": 3, "tier": None, "note": None})  # page 2
    _link_paged(server, "/e2e/tiers", data)
    streams = [
        _stream(server, "/e2e/tiers", "e2e_tiers", page="link-next", page_limit=-1, reattempts=3)
    ]

    pipeline.run_ok(streams)

    assert pipeline.rows("SELECT id, tier, note FROM {schema}.e2e_tiers ORDER BY id") == [
        ("1", "2", "a"),
        ("2", "1", "b"),
        ("3", None, None),
    ]


CHANGES: list[dict[str, t.Any]] = [
    {"id": i, "value": f"v{i}", "updated_at": f"2024-02-0{i}T10:00:00Z"} for i in range(1, 6)
]


def test_incremental_second_run_adds_only_new_rows(server: LocalServer, pipeline: Pipeline) -> None:
    visible = CHANGES[:3]

    @server.route("/e2e/changes")
    def changes(request: Request) -> Reply:
        # Like many APIs, `since` is inclusive: the bookmarked record comes back again and
        # the tap must drop it itself.
        since = request.args.get("since") or "0000"
        return json_reply([c for c in visible if _ts(c["updated_at"]) >= _ts(since)])

    streams = [
        _stream(
            server,
            "/e2e/changes",
            "e2e_changes",  # no primary_keys: a re-sent record would be a duplicate row
            params={"since": "{{ bookmark }}"},
            replication_key="updated_at",
            start_value="2024-01-01T00:00:00Z",
        )
    ]
    pipeline.run_ok(streams)
    assert pipeline.count("e2e_changes") == 3

    visible = CHANGES
    server.log.clear()
    pipeline.run_ok(streams)

    # The sync's request carries the bookmark (discovery, which has no state, samples the
    # first page with `start_value` before it).
    sent = [r.args.get("since") for r in server.requests_to("/e2e/changes")]
    assert sent
    assert _ts(sent[-1] or "0000") == _ts(CHANGES[2]["updated_at"]), sent
    assert pipeline.rows("SELECT id FROM {schema}.e2e_changes ORDER BY id") == [
        (str(i),) for i in range(1, 6)
    ]


def _ts(text: str) -> dt.datetime:
    if text == "0000":
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_column_typed_narrow_is_fixed_as_the_readme_says(
    server: LocalServer, pipeline: Pipeline
) -> None:
    """README, "A column with the wrong type": a declared `schema` too narrow for the data
    lands the odd value in a variant column (nothing fails, nothing is lost); widening the
    declared type later leaves the column as the first run created it, and target-postgres
    casts into it silently; dropping the column fixes it."""
    pages = {1: [{"id": 1, "amount": 1}, {"id": 2, "amount": 2}], 2: [{"id": 3, "amount": 4.5}]}

    @server.route("/e2e/amounts")
    def amounts(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        link = [("Link", '</e2e/amounts?page=2>; rel="next"')] if page == 1 else []
        return json_reply(pages[page], headers=link)

    spec = _stream(server, "/e2e/amounts", "e2e_amounts", page="link-next", page_limit=-1)
    spec["primary_keys"] = ["id"]
    spec["schema"] = {
        "properties": {"id": {"type": "integer"}, "amount": {"type": ["integer", "null"]}}
    }
    output = pipeline.run_ok([spec])
    assert "field `amount` is integer or null, got number" in output
    assert pipeline.columns("e2e_amounts")["amount"] == ("bigint", "int8")
    assert pipeline.rows(
        "SELECT id, amount, amount__v_number FROM {schema}.e2e_amounts ORDER BY id"
    ) == [("1", "1", None), ("2", "2", None), ("3", None, "4.5")]

    spec["schema"]["properties"]["amount"] = {"type": ["number", "null"]}
    pipeline.run_ok([spec])  # succeeds, but into the column the first run created
    assert pipeline.columns("e2e_amounts")["amount"] == ("bigint", "int8")
    assert pipeline.rows("SELECT amount FROM {schema}.e2e_amounts WHERE id = 3") == [("5",)]

    pipeline.rows("ALTER TABLE {schema}.e2e_amounts DROP COLUMN amount")
    pipeline.run_ok([spec])
    assert pipeline.columns("e2e_amounts")["amount"] == ("numeric", "numeric")
    assert pipeline.rows("SELECT id, amount FROM {schema}.e2e_amounts ORDER BY id") == [
        ("1", "1"),
        ("2", "2"),
        ("3", "4.5"),
    ]


# --------------------------------------------------------------------------- schema drift


def _one_per_page(server: LocalServer, path: str, rows: list[dict[str, t.Any]]) -> None:
    """`path?page=N`: row N alone, with a Link rel="next" while there are more."""

    @server.route(path)
    def handler(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        headers = [("Link", f'<{path}?page={page + 1}>; rel="next"')] if page < len(rows) else []
        return json_reply([rows[page - 1]], headers=headers)


DRIFT_CASES: dict[str, list[dict[str, t.Any]]] = {
    # an integer column, then a float (page 4: after discovery's 3-page sample)
    "e2e_float": [{"id": i, "amount": a} for i, a in enumerate([10, 11, 12, 2.5, 13], 1)],
    # a field the sample saw only as null, then strings
    "e2e_nullonly": [
        {"id": i, "note": n} for i, n in enumerate([None, None, None, "late", None, "more"], 1)
    ],
    # an integer column, then a string
    "e2e_intstr": [{"id": i, "code": c} for i, c in enumerate([1, 2, 3, "A-7", 5], 1)],
    # a new field on page 3 (this stream samples 2 pages)
    "e2e_newfield": [{"id": 1}, {"id": 2}, {"id": 3, "color": "red"}, {"id": 4, "color": None}],
    # a nested object gaining a key, and another kind of value inside it
    "e2e_nested": [
        {"id": 1, "customer": {"tier": 1}},
        {"id": 2, "customer": {"tier": 2}},
        {"id": 3, "customer": {"tier": 3}},
        {"id": 4, "customer": {"tier": "gold", "since": 2020}},
    ],
}


def test_drifting_data_lands_every_row_and_value_and_a_second_run_still_loads(
    server: LocalServer, pipeline: Pipeline
) -> None:
    streams = []
    for name, rows in DRIFT_CASES.items():
        _one_per_page(server, f"/e2e/{name}", rows)
        extra = {"schema_sample": {"pages": 2}} if name == "e2e_newfield" else {}
        streams.append(
            _stream(
                server,
                f"/e2e/{name}",
                name,
                page="link-next",
                page_limit=-1,
                primary_keys=["id"],
                **extra,
            )
        )

    for run in (1, 2):
        output = pipeline.run_ok(streams)
        for name, rows in DRIFT_CASES.items():
            assert pipeline.count(name) == len(rows), (run, name)
        if run == 1:
            assert "field `amount` is integer or null, got number" in output
            assert "new field `note` (string or null) is not in the schema" in output
            assert "new field `color` (string or null) is not in the schema" in output

        assert pipeline.columns("e2e_float") == {
            "id": ("bigint", "int8"),
            "amount": ("bigint", "int8"),
            "amount__v_number": ("numeric", "numeric"),
        }
        assert pipeline.rows(
            "SELECT id, COALESCE(amount::numeric, amount__v_number) FROM {schema}.e2e_float "
            "ORDER BY id"
        ) == [("1", "10"), ("2", "11"), ("3", "12"), ("4", "2.5"), ("5", "13")]

        assert pipeline.columns("e2e_nullonly")["note"] == ("text", "text")
        assert pipeline.rows("SELECT id, note FROM {schema}.e2e_nullonly ORDER BY id") == [
            ("1", None), ("2", None), ("3", None), ("4", "late"), ("5", None), ("6", "more")
        ]  # fmt: skip

        assert pipeline.columns("e2e_intstr") == {
            "id": ("bigint", "int8"),
            "code": ("bigint", "int8"),
            "code__v_string": ("text", "text"),
        }
        assert pipeline.rows(
            "SELECT id, COALESCE(code::text, code__v_string) FROM {schema}.e2e_intstr ORDER BY id"
        ) == [("1", "1"), ("2", "2"), ("3", "3"), ("4", "A-7"), ("5", "5")]

        assert pipeline.columns("e2e_newfield")["color"] == ("text", "text")
        assert pipeline.rows("SELECT id, color FROM {schema}.e2e_newfield ORDER BY id") == [
            ("1", None), ("2", None), ("3", "red"), ("4", None)
        ]  # fmt: skip

        assert pipeline.columns("e2e_nested")["customer"] == ("jsonb", "jsonb")
        assert pipeline.rows(
            "SELECT id, customer->>'tier', customer->>'since', jsonb_typeof(customer->'tier') "
            "FROM {schema}.e2e_nested ORDER BY id"
        ) == [
            ("1", "1", None, "number"), ("2", "2", None, "number"), ("3", "3", None, "number"),
            ("4", "gold", "2020", "string"),
        ]  # fmt: skip

    # A third run, after the data changed: the float and the string now come first, so this
    # run's own sample types `amount` number and `code` string. The table's columns are
    # bigint, which target-postgres cannot alter: the run keeps them (from STATE) and the
    # values go to the variant columns again.
    for name in ("e2e_float", "e2e_intstr"):
        DRIFT_CASES[name].insert(0, DRIFT_CASES[name].pop(3))
    try:
        output = pipeline.run_ok(streams)
    finally:
        for name in ("e2e_float", "e2e_intstr"):
            DRIFT_CASES[name].insert(3, DRIFT_CASES[name].pop(0))
    assert "field `amount` keeps the column type `bigint` an earlier run gave it" in output
    assert pipeline.rows(
        "SELECT id, COALESCE(amount::numeric, amount__v_number) FROM {schema}.e2e_float ORDER BY id"
    ) == [("1", "10"), ("2", "11"), ("3", "12"), ("4", "2.5"), ("5", "13")]
    assert pipeline.rows(
        "SELECT id, code, code__v_string FROM {schema}.e2e_intstr ORDER BY id"
    ) == [("1", "1", None), ("2", "2", None), ("3", "3", None), ("4", None, "A-7"),
          ("5", "5", None)]  # fmt: skip
