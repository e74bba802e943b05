"""The throwaway PostgreSQL of tests/pg.py is real: TCP on 127.0.0.1, password auth, queries."""

from __future__ import annotations

import socket
import subprocess
import typing as t

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

if t.TYPE_CHECKING:
    from pg import PostgresServer


def test_dsn_has_target_postgres_keys(postgres_dsn: dict[str, t.Any]) -> None:
    assert set(postgres_dsn) == {"host", "port", "user", "password", "database"}
    assert postgres_dsn["host"] == "127.0.0.1"
    assert isinstance(postgres_dsn["port"], int)
    assert postgres_dsn["password"]


def test_server_accepts_tcp_connections(postgres_dsn: dict[str, t.Any]) -> None:
    with socket.create_connection((postgres_dsn["host"], postgres_dsn["port"]), timeout=5):
        pass


def test_server_runs_queries(postgres_server: PostgresServer) -> None:
    rows = postgres_server.query(
        "SELECT current_user, current_database(), 41 + 1, NULL::text, 'a|b'"
    )
    assert rows == [("tap_rhttp", "tap_rhttp_test", "42", None, "a|b")]

    postgres_server.psql(
        "CREATE SCHEMA fixture_check;"
        "CREATE TABLE fixture_check.t (id int PRIMARY KEY, doc jsonb);"
        """INSERT INTO fixture_check.t VALUES (1, '{"k": [1, 2]}'), (2, NULL);"""
    )
    assert postgres_server.query("SELECT id, doc->'k' FROM fixture_check.t ORDER BY id") == [
        ("1", "[1, 2]"),
        ("2", None),
    ]
    assert postgres_server.query("SELECT 1 WHERE false") == []
    postgres_server.psql("DROP SCHEMA fixture_check CASCADE")


def test_wrong_password_is_rejected(postgres_server: PostgresServer) -> None:
    env = postgres_server.client_env()
    env["PGPASSWORD"] = "not-the-password"
    proc = subprocess.run(
        [str(postgres_server.bindir / "psql"), "-X", "-c", "SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr
