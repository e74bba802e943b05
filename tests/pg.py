"""A real, throwaway PostgreSQL for the tests (pytest plugin).

Register it from ``tests/conftest.py`` with::

    pytest_plugins = ["pg"]

(``tests/`` has no ``__init__.py``; pytest's default ``prepend`` import mode puts ``tests/`` on
``sys.path`` before it reads the conftest, so the module imports as ``pg``.)

Fixtures (session scope):

* ``postgres_server`` -> :class:`PostgresServer`: connection facts plus ``query()``/``psql()``
  helpers that run SQL through the ``psql`` that came with the server binaries, so the tests
  need no Python database driver.
* ``postgres_dsn`` -> ``dict(host, port, user, password, database)``: the keys are named as
  target-postgres' settings, so ``{**postgres_dsn, "default_target_schema": ...}`` is a valid
  target config. Shared by the whole session: copy it, do not mutate it.

The server listens on 127.0.0.1 on a free port (no Unix socket), uses password
(scram-sha-256) auth and runs with fsync off. It is stopped and its directory deleted at the
end of the session.

Where the binaries come from, first that works:

1. ``$TAP_RHTTP_PG_BINDIR`` if set (nothing else is tried then);
2. the ``pgserver`` wheel (PyPI), which ships PostgreSQL binaries: only its files are used,
   the package is not imported;
3. the system's server: ``pg_config --bindir``, ``/usr/lib/postgresql/<v>/bin`` (newest first),
   ``/usr/local/pgsql/bin``, then ``initdb`` on ``PATH``.

``$TAP_RHTTP_PG_BACKEND=pgserver|system`` forces one of 2./3. PostgreSQL refuses to run as
root: as root the server runs as the ``postgres`` system user (or ``$TAP_RHTTP_PG_OS_USER``),
created with ``useradd --system`` if it does not exist. If no usable binaries are found the
fixture fails the test (it never skips): install ``pgserver`` or Debian's ``postgresql``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from pathlib import Path

import pytest

if t.TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "find_bindirs",
    "postgres_dsn",
    "postgres_server",
    "start_postgres",
]

DB_USER = "tap_rhttp"
DB_NAME = "tap_rhttp_test"
HOST = "127.0.0.1"

INITDB_TIMEOUT = 60.0  # initdb of an empty cluster: ~1 s here
START_TIMEOUT = float(os.environ.get("TAP_RHTTP_PG_START_TIMEOUT", "60"))
STOP_TIMEOUT = 20.0
CLIENT_TIMEOUT = 30.0  # one psql / pg_isready call
PORT_ATTEMPTS = 5  # a free port can be taken between probing it and binding it

_NULL = "\x01NULL\x01"  # psql prints NULL as this in query() output
_FIELD_SEP = "\x1f"
_RECORD_SEP = "\x1e"


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries, or the server could not be started."""


# --------------------------------------------------------------------------- binaries


def _is_server_bindir(path: Path) -> bool:
    return all(os.access(path / exe, os.X_OK) for exe in ("initdb", "postgres"))


def _pgserver_bindir() -> Path | None:
    # find_spec of a top-level package does not execute it: importing pgserver would create
    # lock files under the user's runtime dir and warn when XDG_RUNTIME_DIR is unset.
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if _is_server_bindir(bindir):
            return bindir
    return None


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def _system_bindirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                found.append(Path(out))
    found += [
        Path(p)
        for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    ]
    found.append(Path("/usr/local/pgsql/bin"))
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    unique: list[Path] = []
    for path in found:
        with contextlib.suppress(OSError):
            path = path.resolve()
        if path not in unique and _is_server_bindir(path):
            unique.append(path)
    return unique


def find_bindirs() -> list[tuple[str, Path]]:
    """Candidate (backend, bindir) pairs in order of preference; may be empty."""
    explicit = os.environ.get("TAP_RHTTP_PG_BINDIR")
    if explicit:
        return (
            [("TAP_RHTTP_PG_BINDIR", Path(explicit))] if _is_server_bindir(Path(explicit)) else []
        )
    forced = os.environ.get("TAP_RHTTP_PG_BACKEND", "").strip().lower()
    candidates: list[tuple[str, Path]] = []
    if forced in ("", "pgserver"):
        bindir = _pgserver_bindir()
        if bindir is not None:
            candidates.append(("pgserver", bindir))
    if forced in ("", "system"):
        candidates += [("system", p) for p in _system_bindirs()]
    return candidates


def _client(bindir: Path, name: str) -> str:
    exe = bindir / name
    if os.access(exe, os.X_OK):
        return str(exe)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise PostgresUnavailable(f"{name} not found in {bindir} nor on PATH")


# --------------------------------------------------------------------------- OS user


@dataclasses.dataclass(frozen=True)
class _RunAs:
    name: str | None  # None: the current user
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, t.Any]:
        if self.name is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.name is not None:
            os.chown(path, self.uid, self.gid)  # type: ignore[arg-type]


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(None)
    name = os.environ.get("TAP_RHTTP_PG_OS_USER", "postgres")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            entry = pwd.getpwnam(name)
        except (OSError, subprocess.SubprocessError, KeyError) as exc:
            raise PostgresUnavailable(
                f"running as root and could not create the OS user {name!r} for PostgreSQL "
                f"(which refuses to run as root): {exc}"
            ) from exc
    if entry.pw_uid == 0:
        raise PostgresUnavailable(f"OS user {name!r} is root; PostgreSQL refuses to run as root")
    return _RunAs(name, entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclasses.dataclass
class PostgresServer:
    """A running throwaway server. ``dsn`` holds target-postgres-style connection keys."""

    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False)
    database: str
    bindir: Path
    backend: str
    basedir: Path
    process: subprocess.Popen[bytes] = dataclasses.field(repr=False)
    os_user: str | None = None

    @property
    def dsn(self) -> dict[str, t.Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.basedir / "postgres.log"

    def client_env(self, database: str | None = None) -> dict[str, str]:
        """Environment for libpq clients (psql, pg_dump, ...) pointing at this server."""
        return _child_env(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGDATABASE=database or self.database,
            PGCONNECT_TIMEOUT="10",
        )

    def psql(
        self, sql: str, *args: str, database: str | None = None, timeout: float = CLIENT_TIMEOUT
    ) -> str:
        """Run ``sql`` with psql (ON_ERROR_STOP) and return its stdout; raise on failure."""
        cmd = [_client(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, "-c", sql]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.client_env(database),
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"psql failed ({proc.returncode}) for {sql!r}:\n{proc.stderr}")
        return proc.stdout

    def query(self, sql: str, *, database: str | None = None) -> list[tuple[str | None, ...]]:
        """Rows of one statement as tuples of text (NULL -> None)."""
        out = self.psql(
            sql,
            "-A",
            "-t",
            "-F",
            _FIELD_SEP,
            "-R",
            _RECORD_SEP,
            "-P",
            f"null={_NULL}",
            database=database,
        )
        out = out.rstrip("\n")
        if not out:
            return []
        return [
            tuple(None if field == _NULL else field for field in record.split(_FIELD_SEP))
            for record in out.split(_RECORD_SEP)
        ]

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; delete the files."""
        _stop_process(self.process)
        shutil.rmtree(self.basedir, ignore_errors=True)


def _initdb(bindir: Path, basedir: Path, password: str, run_as: _RunAs) -> Path:
    datadir = basedir / "data"
    pwfile = basedir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    run_as.chown(pwfile)
    cmd = [
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-U",
        DB_USER,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=basedir,
            env=_child_env(LC_ALL="C"),
            capture_output=True,
            text=True,
            timeout=INITDB_TIMEOUT,
            check=False,
            **run_as.popen_kwargs(),
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresUnavailable(
            f"initdb did not finish in {INITDB_TIMEOUT:.0f} s: {cmd}"
        ) from exc
    except OSError as exc:  # e.g. binaries not executable by the OS user
        raise PostgresUnavailable(f"could not run initdb {cmd}: {exc}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"initdb failed ({proc.returncode}) as {run_as.name or 'current user'}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return datadir


def _spawn(
    bindir: Path, datadir: Path, port: int, run_as: _RunAs, log: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        str(bindir / "postgres"),
        "-D",
        str(datadir),
        "-p",
        str(port),
        "-c",
        f"listen_addresses={HOST}",
        "-c",
        "unix_socket_directories=",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=50",
        "-c",
        "logging_collector=off",
    ]
    with log.open("ab") as log_file:
        return subprocess.Popen(
            cmd,
            cwd=datadir.parent,
            env=_child_env(LC_ALL="C"),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **run_as.popen_kwargs(),
        )


def _wait_ready(server: PostgresServer, deadline: float) -> None:
    """Until the deadline: server process alive and pg_isready says it accepts connections."""
    isready = _client(server.bindir, "pg_isready")
    while True:
        if server.process.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {server.process.returncode} while starting:\n"
                f"{_tail(server.log_path)}"
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            rc = subprocess.run(
                [
                    isready,
                    "-q",
                    "-h",
                    server.host,
                    "-p",
                    str(server.port),
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ],
                env=_child_env(),
                capture_output=True,
                timeout=5,
                check=False,
            ).returncode
            if rc == 0:
                return
        if time.monotonic() > deadline:
            raise PostgresUnavailable(
                f"postgres did not accept connections on {server.host}:{server.port} within "
                f"{START_TIMEOUT:.0f} s:\n{_tail(server.log_path)}"
            )
        time.sleep(0.1)


def _start_with(backend: str, bindir: Path, run_as: _RunAs) -> PostgresServer:
    basedir = Path(tempfile.mkdtemp(prefix="tap-rhttp-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        basedir.chmod(0o700)
        run_as.chown(basedir)
        password = secrets.token_urlsafe(18)
        datadir = _initdb(bindir, basedir, password, run_as)
        log = basedir / "postgres.log"
        deadline = time.monotonic() + START_TIMEOUT
        for _attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            process = _spawn(bindir, datadir, port, run_as, log)
            server = PostgresServer(
                host=HOST,
                port=port,
                user=DB_USER,
                password=password,
                database=DB_NAME,
                bindir=bindir,
                backend=backend,
                basedir=basedir,
                process=process,
                os_user=run_as.name,
            )
            try:
                _wait_ready(server, deadline)
            except PostgresUnavailable:
                _stop_process(process)
                if "already in use" in _tail(log, 10) and time.monotonic() < deadline:
                    continue  # lost the race for the port between probe and bind: try another
                raise
            server.psql(f'CREATE DATABASE "{DB_NAME}"', database="postgres")
            return server
        raise PostgresUnavailable(f"no free port after {PORT_ATTEMPTS} attempts:\n{_tail(log)}")
    except BaseException:
        if process is not None:
            _stop_process(process)
        shutil.rmtree(basedir, ignore_errors=True)
        raise


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; each wait bounded."""
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def start_postgres() -> PostgresServer:
    """Start a throwaway server from the first usable binaries; raise PostgresUnavailable."""
    candidates = find_bindirs()
    if not candidates:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb + postgres) found: tried "
            + (
                "$TAP_RHTTP_PG_BINDIR"
                if os.environ.get("TAP_RHTTP_PG_BINDIR")
                else "the pgserver wheel, pg_config --bindir, /usr/lib/postgresql/*/bin, "
                "/usr/local/pgsql/bin and initdb on PATH"
            )
            + ". Install one: `pip install pgserver==0.1.4` (ships the binaries) or "
            "`apt-get install -y postgresql`."
        )
    run_as = _run_as()
    errors: list[str] = []
    for backend, bindir in candidates:
        try:
            return _start_with(backend, bindir, run_as)
        except PostgresUnavailable as exc:
            errors.append(f"[{backend} {bindir}] {exc}")
    raise PostgresUnavailable("could not start PostgreSQL:\n" + "\n\n".join(errors))


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
