#!/usr/bin/env python3
"""A throwaway local PostgreSQL: for the tests, ``scripts/postgres`` and ``scripts/quickstart``.

One server, started from binaries found on this machine, on 127.0.0.1 and a free port,
with password (scram-sha-256) auth and fsync off; stopped and its directory deleted when
it is done. Nothing is installed system-wide and no Python database driver is needed:
SQL runs through the ``psql`` that came with the server binaries.

Where the binaries come from, first that works:

1. ``$TAP_RHTTP_PG_BINDIR`` if set (nothing else is tried then);
2. the ``pgserver`` wheel (PyPI, in the ``dev`` extra), which ships PostgreSQL binaries:
   only its files are used, the package is not imported;
3. the system's server: ``pg_config --bindir``, ``/usr/lib/postgresql/<v>/bin`` (newest first),
   ``/usr/local/pgsql/bin``, then ``initdb`` on ``PATH``.

``$TAP_RHTTP_PG_BACKEND=pgserver|system`` forces one of 2./3. PostgreSQL refuses to run as
root: as root the server runs as the ``postgres`` system user (or ``$TAP_RHTTP_PG_OS_USER``),
created with ``useradd --system`` if it does not exist.

As a library (``tests/pg.py`` builds its fixtures on it)::

    server = start_postgres()          # raises PostgresUnavailable
    server.query("SELECT 1")           # [("1",)]
    server.stop()

As a command (``scripts/postgres`` runs it)::

    .venv/bin/python scripts/local_postgres.py [--env-file output/postgres.env] [--database NAME]

starts a server, writes its connection settings to the env file (``TARGET_POSTGRES_*`` for
target-postgres, ``PG*`` and ``PSQL`` for psql; mode 0600), and serves until interrupted
(Ctrl-C or SIGTERM), then stops the server and deletes its files and the env file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

if t.TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "DB_NAME",
    "DB_USER",
    "PostgresServer",
    "PostgresUnavailable",
    "PsqlError",
    "find_bindirs",
    "main",
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


class PsqlError(RuntimeError):
    """A psql command failed (its stderr is in the message)."""


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

    @property
    def psql_path(self) -> str:
        """The psql that came with the server binaries (else the one on PATH)."""
        return _client(self.bindir, "psql")

    def settings(self) -> dict[str, str]:
        """Connection settings as environment variables: target-postgres', psql's, PSQL."""
        target = {f"TARGET_POSTGRES_{key.upper()}": str(value) for key, value in self.dsn.items()}
        libpq = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }
        return {**target, **libpq, "PSQL": self.psql_path}

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
        cmd = [self.psql_path, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, "-c", sql]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.client_env(database),
            check=False,
        )
        if proc.returncode != 0:
            raise PsqlError(f"psql failed ({proc.returncode}) for {sql!r}:\n{proc.stderr}")
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


def _start_with(backend: str, bindir: Path, run_as: _RunAs, database: str) -> PostgresServer:
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
                database=database,
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
            server.psql(f'CREATE DATABASE "{database}"', database="postgres")
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


def start_postgres(database: str = DB_NAME) -> PostgresServer:
    """Start a throwaway server from the first usable binaries, with `database` created.

    Raises:
        PostgresUnavailable: no usable binaries, or none of them could start a server.
    """
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
            return _start_with(backend, bindir, run_as, database)
        except PostgresUnavailable as exc:
            errors.append(f"[{backend} {bindir}] {exc}")
    raise PostgresUnavailable("could not start PostgreSQL:\n" + "\n\n".join(errors))


# --------------------------------------------------------------------------- command


def _write_env_file(path: Path, settings: dict[str, str]) -> None:
    """`KEY='value'` lines a shell can source (``set -a; . FILE; set +a``), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={shlex.quote(value)}\n" for key, value in settings.items())
    partial.replace(path)  # whole or absent: a reader polling for it never sees half


class _Stop(Exception):
    """SIGINT/SIGTERM: stop serving."""


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Start a server, write its settings, serve until interrupted; the exit status."""
    parser = argparse.ArgumentParser(
        prog="scripts/postgres",
        description="A throwaway PostgreSQL on 127.0.0.1, deleted when it stops (Ctrl-C).",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path("output/postgres.env"),
        help="where to write the connection settings (default: %(default)s)",
    )
    parser.add_argument(
        "--database", default="tap_rhttp", help="database to create (default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    try:
        server = start_postgres(args.database)
    except (PostgresUnavailable, _Stop) as exc:
        print(f"scripts/postgres: {exc}", file=sys.stderr)
        return 1
    try:
        _write_env_file(args.env_file, server.settings())
        if not args.quiet:
            version = server.query("SHOW server_version")[0][0]
            print(
                f"PostgreSQL {version} ({server.backend}) on {server.host}:{server.port}, "
                f"database {server.database}, user {server.user}.\n"
                f"Its settings (target-postgres and psql) are in {args.env_file}; in another "
                f"shell:\n"
                f"    set -a; . {shlex.quote(str(args.env_file))}; set +a\n"
                f"    scripts/meltano run tap-rhttp target-postgres  # your streams (README)\n"
                f'    "$PSQL"                                        # psql on this database\n'
                f"Ctrl-C stops it and deletes its data.",
                flush=True,
            )
        while server.process.poll() is None:
            time.sleep(0.5)
        print(f"scripts/postgres: the server exited ({server.process.returncode})", file=sys.stderr)
        return 1
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one clean shutdown, not two
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        args.env_file.unlink(missing_ok=True)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
