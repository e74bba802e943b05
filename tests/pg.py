"""A real, throwaway PostgreSQL for the tests (pytest plugin).

Register it from ``tests/conftest.py`` with::

    pytest_plugins = ["pg"]

(``tests/`` has no ``__init__.py``; pytest's default ``prepend`` import mode puts ``tests/`` on
``sys.path`` before it reads the conftest, so the module imports as ``pg``.)

The server itself is ``scripts/local_postgres.py``'s, shared with ``scripts/postgres`` and
``scripts/quickstart --postgres`` (where the binaries come from, running as root, the
environment variables that steer it: see that module).

Fixtures (session scope):

* ``postgres_server`` -> :class:`PostgresServer`: connection facts plus ``query()``/``psql()``
  helpers that run SQL through the ``psql`` that came with the server binaries, so the tests
  need no Python database driver.
* ``postgres_dsn`` -> ``dict(host, port, user, password, database)``: the keys are named as
  target-postgres' settings, so ``{**postgres_dsn, "default_target_schema": ...}`` is a valid
  target config. Shared by the whole session: copy it, do not mutate it.

The server listens on 127.0.0.1 on a free port (no Unix socket), uses password
(scram-sha-256) auth and runs with fsync off. It is stopped and its directory deleted at the
end of the session. If no usable binaries are found the fixture fails the test (it never
skips): install ``pgserver`` or Debian's ``postgresql``.
"""

from __future__ import annotations

import atexit
import sys
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from local_postgres import (
    PostgresServer,
    PostgresUnavailable,
    PsqlError,
    find_bindirs,
    start_postgres,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "PsqlError",
    "find_bindirs",
    "postgres_dsn",
    "postgres_server",
    "start_postgres",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL on 127.0.0.1, stopped and deleted after the session."""
    server: PostgresServer | None = None
    reason = ""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        reason = str(exc)
    if server is None:  # failed outside the except block: no chained traceback
        pytest.fail(f"throwaway PostgreSQL unavailable: {reason}", pytrace=False)
    atexit.register(server.stop)  # in case the session dies before the finalizer runs
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> dict[str, t.Any]:
    """``{"host", "port", "user", "password", "database"}`` of the throwaway server."""
    return postgres_server.dsn
