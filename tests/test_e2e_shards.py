"""Four shards of one job, in parallel, into one PostgreSQL table through target-postgres.

Each shard is a ``python -m tap_rhttp | target-postgres`` pipeline of its own (as four
orchestrator tasks would run them), with the same config but its `shard`. Shard 2 is
SIGKILLed mid-way; target-postgres commits what it got and prints the last STATE it
received, and shard 2 alone is run again from that STATE. The table then holds exactly
the whole set, no row twice, and the resumed shard did not fetch its finished values
again. `meltano.yml`'s shard plugins are checked to resolve to their shards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
import uuid

import pytest
from meltano_cli import meltano_bin
from server import Reply, json_reply
from test_e2e_meltano import REPO_ROOT, _base_env, plugin_dirs  # noqa: F401 (a fixture)

from tap_rhttp.config.shard import shard_of

if t.TYPE_CHECKING:
    from pathlib import Path

    from pg import PostgresServer
    from server import LocalServer, Request

pytestmark = [pytest.mark.timeout(300), pytest.mark.e2e, pytest.mark.postgres]

SHARDS = 4
ACCOUNTS = 32
PAGES = 3
PER_PAGE = 5
NEXT_PAGE = (
    "r.branch(info['body']['next'] == None, None, {'params': {'page': info['body']['next']}})"
)


def _route(server: LocalServer) -> None:
    @server.route("/acct/")
    def acct(request: Request) -> Reply:
        time.sleep(0.03)
        n = int(request.path.rsplit("/", 1)[1])
        page = int(request.args.get("page", "1"))
        items = [
            {"id": n * 1000 + page * 10 + i, "account": n, "page": page} for i in range(PER_PAGE)
        ]
        return json_reply({"items": items, "next": page + 1 if page < PAGES else None})


def _tap_config(server: LocalServer, shard: int) -> dict[str, t.Any]:
    return {
        "shard": {"index": shard, "count": SHARDS},
        "streams": [
            {
                "name": "entries",
                "url": server.url + "/acct/{{ item }}",
                "for_each": list(range(ACCOUNTS)),
                "params": {"page": 1},
                "records_path": "$.items[*]",
                "page": NEXT_PAGE,
                "page_limit": -1,
                "primary_keys": ["id"],
                "max_concurrency": 2,
                "reattempts": 2,
                "schema": {
                    "properties": {
                        "id": {"type": "integer"},
                        "account": {"type": "integer"},
                        "page": {"type": "integer"},
                    }
                },
            }
        ],
    }


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if "PROXY" not in k.upper() and not k.startswith(("TAP_RHTTP_", "TARGET_POSTGRES_"))
    }


class Pipe:
    """One shard's `tap | target-postgres`; the tap's lines pass through this process, so
    a test can kill the tap after a number of STATE messages."""

    def __init__(
        self,
        tap_config: Path,
        target_config: Path,
        target_bin: Path,
        *,
        state: Path | None = None,
        kill_after_states: int | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "tap_rhttp", "--config", str(tap_config)]
        if state is not None:
            argv += ["--state", str(state)]
        self.tap = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env()
        )
        self.target = subprocess.Popen(
            [str(target_bin), "--config", str(target_config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self.kill_after = kill_after_states
        self.killed = False
        self.out = b""
        self.err = b""
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.tap.stdout is not None
        assert self.target.stdin is not None
        states = 0
        try:
            for line in self.tap.stdout:
                self.target.stdin.write(line)
                if line.startswith(b'{"type":"STATE"') or b'"type": "STATE"' in line[:30]:
                    states += 1
                    if self.kill_after is not None and states >= self.kill_after:
                        self.tap.send_signal(signal.SIGKILL)
                        self.killed = True
                        break
        finally:
            self.target.stdin.close()
            self.target.stdin = None  # closed: communicate() must not flush it
            self.tap.stdout.close()

    def close(self) -> None:
        """Stop whatever still runs (after a failed assertion)."""
        for proc in (self.tap, self.target):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.pump.join(10)
        for stream in (self.target.stdout, self.target.stderr):
            if stream is not None:
                stream.close()

    def wait(self, timeout: float = 120) -> list[dict[str, t.Any]]:
        """Wait for both; the STATE lines target-postgres printed (the committed ones)."""
        self.pump.join(timeout)
        self.tap.wait(timeout)
        self.out, self.err = self.target.communicate(timeout=timeout)
        assert self.target.returncode == 0, self.err.decode()[-4000:]
        if not self.killed:
            assert self.tap.returncode == 0
        return [json.loads(line) for line in self.out.splitlines() if line.startswith(b"{")]


@pytest.fixture
def schema(postgres_server: PostgresServer) -> t.Iterator[str]:
    name = f"shards_{uuid.uuid4().hex[:10]}"
    yield name
    postgres_server.psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_four_shards_into_one_table_and_a_killed_one_resumes(
    server: LocalServer,
    tmp_path: Path,
    plugin_dirs: dict[str, Path],  # noqa: F811
    postgres_server: PostgresServer,
    postgres_dsn: dict[str, t.Any],
    schema: str,
) -> None:
    _route(server)
    target_bin = plugin_dirs["loaders/target-postgres"] / "venv" / "bin" / "target-postgres"
    target_config = tmp_path / "target.json"
    target_config.write_text(json.dumps({**postgres_dsn, "default_target_schema": schema}))
    # the schema exists before four targets race to create it
    postgres_server.psql(f"CREATE SCHEMA {schema}")
    configs = []
    for shard in range(SHARDS):
        path = tmp_path / f"tap-{shard}.json"
        path.write_text(json.dumps(_tap_config(server, shard)))
        configs.append(path)
    everything = {
        n * 1000 + page * 10 + i
        for n in range(ACCOUNTS)
        for page in range(1, PAGES + 1)
        for i in range(PER_PAGE)
    }
    mine = {s: [n for n in range(ACCOUNTS) if shard_of(n, SHARDS) == s] for s in range(SHARDS)}
    assert all(len(accounts) >= 3 for accounts in mine.values())  # every shard has work

    pipes = [
        Pipe(configs[s], target_config, target_bin, kill_after_states=5 if s == 2 else None)
        for s in range(SHARDS)
    ]
    try:
        committed = [pipe.wait() for pipe in pipes]
    finally:
        for pipe in pipes:
            pipe.close()
    assert pipes[2].killed

    def ids() -> list[int]:
        rows = postgres_server.query(f"SELECT id FROM {schema}.entries")
        return [int(row[0] or 0) for row in rows]

    after_kill = ids()
    shard2 = {e for e in everything if shard_of(e // 1000, SHARDS) == 2}
    assert everything - shard2 <= set(after_kill)  # the other shards are complete
    assert shard2 - set(after_kill), "the kill left nothing to resume"
    state = committed[2][-1]
    assert "rhttp" in state["bookmarks"]["entries"]
    done_before = {int(k) for k in state["bookmarks"]["entries"]["rhttp"]["done"]}  # = values
    assert done_before, "no account of shard 2 had finished: the test would not cover it"

    state_path = tmp_path / "state-2.json"
    state_path.write_text(json.dumps(state))
    server.log.clear()
    again = Pipe(configs[2], target_config, target_bin, state=state_path)
    try:
        again.wait()
    finally:
        again.close()
    final = ids()
    assert set(final) == everything  # the union is exactly the full set
    assert len(final) == len(everything)  # no row twice
    asked = {int(r.path.rsplit("/", 1)[1]) for r in server.log if r.path.startswith("/acct/")}
    assert asked <= set(mine[2])  # the resumed shard fetched only its own accounts
    assert not asked & done_before, "finished accounts were fetched again"


@pytest.mark.meltano
def test_meltano_shard_plugins_resolve_to_their_shards() -> None:
    env = _base_env()
    for shard in range(SHARDS):
        proc = subprocess.run(
            [meltano_bin(), "config", "print", f"tap-rhttp-shard-{shard}"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        config = json.loads(proc.stdout[proc.stdout.index("{") :])
        assert config["shard"] == {"index": shard, "count": SHARDS}
