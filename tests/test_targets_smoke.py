"""The loaders of meltano.yml load a hand-written Singer stream (no tap involved).

Runs ``meltano invoke target-postgres`` against the throwaway PostgreSQL of tests/pg.py and
``meltano invoke target-jsonl`` into a temporary folder. Meltano is looked up in
``$MELTANO_BIN``, then ``.venv-meltano/bin/meltano`` at the repo root, then ``PATH``;
missing plugins are installed by Meltano's auto-install (needs PyPI).
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
import uuid
from pathlib import Path

import pytest
from meltano_cli import meltano_bin

pytestmark = [pytest.mark.e2e, pytest.mark.meltano]

if t.TYPE_CHECKING:
    from pg import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
INVOKE_TIMEOUT = 120.0  # a cold auto-install of target-postgres takes ~5 s; a load ~4 s
STREAM = "smoke_types"  # no "-": target-postgres keeps only what follows the last "-"

SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "amount": {"type": ["number", "null"]},
        "active": {"type": ["boolean", "null"]},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "meta": {
            "type": ["object", "null"],
            "properties": {
                "source": {"type": ["string", "null"]},
                "n": {"type": ["integer", "null"]},
            },
        },
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "scores": {"type": ["array", "null"], "items": {"type": "integer"}},
        "items": {
            "type": ["array", "null"],
            "items": {"type": "object", "properties": {"k": {"type": ["string", "null"]}}},
        },
        "name": {"type": ["string", "null"]},
    },
}
RECORDS: list[dict[str, t.Any]] = [
    {
        "id": 1,
        "amount": 12.5,
        "active": True,
        "updated_at": "2024-01-02T03:04:05Z",
        "meta": {"source": "a", "n": 1},
        "tags": ["x", "y"],
        "scores": [1, 2],
        "items": [{"k": "v"}],
        "name": "one",
    },
    {
        "id": 2,
        "amount": 0.1,
        "active": False,
        "updated_at": "2024-06-30T23:59:59.123456+02:00",
        "meta": {"source": "b", "n": None},
        "tags": [],
        "scores": [3],
        "items": [],
        "name": "två",
    },
    {
        "id": 3,
        "amount": None,
        "active": None,
        "updated_at": None,
        "meta": None,
        "tags": None,
        "scores": None,
        "items": None,
        "name": None,
    },
]
STATE = {"bookmarks": {STREAM: {"replication_key_value": 3}}}

# JSON Schema type -> (information_schema.columns.data_type, udt_name), as target-postgres
# (meltanolabs) 0.8.1 creates them.
EXPECTED_COLUMNS = {
    "id": ("bigint", "int8"),
    "amount": ("numeric", "numeric"),
    "active": ("boolean", "bool"),
    "updated_at": ("timestamp without time zone", "timestamp"),
    "meta": ("jsonb", "jsonb"),
    "tags": ("ARRAY", "_text"),
    "scores": ("ARRAY", "_int8"),
    "items": ("ARRAY", "_jsonb"),
    "name": ("text", "text"),
}


def _singer_lines() -> str:
    messages: list[dict[str, t.Any]] = [
        {"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]},
        *({"type": "RECORD", "stream": STREAM, "record": r} for r in RECORDS),
        {"type": "STATE", "value": STATE},
    ]
    return "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)


def _invoke(plugin: str, settings: dict[str, str], stdin: str) -> subprocess.CompletedProcess[str]:
    prefix = plugin.upper().replace("-", "_") + "_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    env.update(settings)
    env.setdefault("MELTANO_ENVIRONMENT", "dev")
    bundle = "/etc/ssl/certs/ca-certificates.crt"  # uv (auto-install) needs it behind TLS proxies
    if "SSL_CERT_FILE" not in env and os.path.exists(bundle):
        env["SSL_CERT_FILE"] = bundle
    proc = subprocess.run(
        [meltano_bin(), "invoke", plugin],
        input=stdin,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"meltano invoke {plugin} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-6000:]}"
    )
    return proc


def _emitted_states(stdout: str) -> list[t.Any]:
    states = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            states.append(json.loads(line))
    return states


@pytest.mark.timeout(240)
@pytest.mark.postgres
def test_target_postgres_loads_singer_types(
    postgres_server: PostgresServer, postgres_dsn: dict[str, t.Any]
) -> None:
    schema = f"smoke_{uuid.uuid4().hex[:8]}"
    settings = {f"TARGET_POSTGRES_{k.upper()}": str(v) for k, v in postgres_dsn.items()}
    settings["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = schema
    settings["TARGET_POSTGRES_ADD_RECORD_METADATA"] = "true"

    proc = _invoke("target-postgres", settings, _singer_lines())

    assert STATE in _emitted_states(proc.stdout), proc.stdout
    columns = {
        name: (data_type, udt)
        for name, data_type, udt in postgres_server.query(
            "SELECT column_name, data_type, udt_name FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{STREAM}'"
        )
    }
    data_columns = {k: v for k, v in columns.items() if not str(k).startswith("_sdc_")}
    assert data_columns == EXPECTED_COLUMNS
    assert {"_sdc_extracted_at", "_sdc_received_at", "_sdc_batched_at"} <= set(columns)

    # date-times land converted to UTC; a null object lands as JSON null, not SQL NULL.
    rows = postgres_server.query(
        "SELECT id, amount, active, updated_at, meta->>'source', jsonb_typeof(meta), tags, "
        f"scores, array_length(items, 1), items[1]->>'k', name FROM {schema}.{STREAM} ORDER BY id"
    )
    assert rows == [
        ("1", "12.5", "t", "2024-01-02 03:04:05", "a", "object", "{x,y}", "{1,2}", "1", "v", "one"),
        (
            "2",
            "0.1",
            "f",
            "2024-06-30 21:59:59.123456",
            "b",
            "object",
            "{}",
            "{3}",
            None,
            None,
            "två",
        ),
        ("3", None, None, None, None, "null", None, None, None, None, None),
    ]
    postgres_server.psql(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.timeout(240)
def test_target_jsonl_writes_records(tmp_path: Path) -> None:
    proc = _invoke(
        "target-jsonl", {"TARGET_JSONL_DESTINATION_PATH": str(tmp_path)}, _singer_lines()
    )

    assert STATE in _emitted_states(proc.stdout), proc.stdout
    written = [json.loads(line) for line in (tmp_path / f"{STREAM}.jsonl").read_text().splitlines()]
    assert written == RECORDS
