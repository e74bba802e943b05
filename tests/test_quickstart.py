"""The README's one-command paths, run as a newcomer runs them, on a clone-like copy.

``scripts/quickstart --postgres`` (the main job: the demo API into a throwaway PostgreSQL,
rows printed) and ``scripts/quickstart`` (into JSON lines) run in a copy of the files git
would commit (tracked plus untracked-but-not-ignored: what a fresh clone of this commit
holds), with nothing of the working tree's state: no ``.meltano/meltano.db``, no
``output/``. Only the installs are reused, as symlinks, so the test takes seconds instead
of minutes: ``.venv``, ``.venv-meltano`` and the plugin virtualenvs that ``scripts/bootstrap``
made (``scripts/test`` runs it first; missing ones fail the test). ``QUICKSTART_SKIP_BOOTSTRAP=1``
skips the install step, which would otherwise reinstall into the shared virtualenvs.

``scripts/meltano`` is also checked from another directory: every README command runs as
written from the repo root, and the wrapper finds its project wherever it is called from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = (("extractors", "tap-rhttp"), ("loaders", "target-postgres"), ("loaders", "target-jsonl"))
RUN_TIMEOUT = 240.0  # here: ~10 s with --postgres, ~8 s without
# Settings of the developer's shell that must not reach the run: it must work without them.
LEAKY_PREFIXES = ("MELTANO_", "TAP_RHTTP_", "TARGET_POSTGRES_", "TARGET_JSONL_", "PG", "DEMO_")

pytestmark = [pytest.mark.timeout(300), pytest.mark.e2e, pytest.mark.meltano]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}


def _committed_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (REPO_ROOT / name).is_file()]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A copy of the repo as a fresh clone has it, with the installs symlinked in."""
    root = tmp_path / "tap-rhttp"
    for name in _committed_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    for venv in (".venv", ".venv-meltano"):
        if not (REPO_ROOT / venv / "bin").is_dir():
            pytest.fail(f"{venv} is missing: run scripts/bootstrap (scripts/test does)")
        (root / venv).symlink_to(REPO_ROOT / venv, target_is_directory=True)
    for kind, name in PLUGINS:
        source = REPO_ROOT / ".meltano" / kind / name
        if not (source / "venv" / ".meltano_plugin_fingerprint").is_file():
            pytest.fail(f"plugin {name} is not installed: run scripts/bootstrap")
        link = root / ".meltano" / kind / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=True)
    return root


def _quickstart(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**_clean_env(), "QUICKSTART_SKIP_BOOTSTRAP": "1"}
    return subprocess.run(
        ["scripts/quickstart", *args],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.postgres
def test_quickstart_postgres_loads_the_demo_api_and_prints_rows(clone: Path) -> None:
    proc = _quickstart(clone, "--postgres")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]

    assert (
        "scripts/meltano --environment=demo run --full-refresh tap-rhttp target-postgres" in output
    )
    # the first rows of the orders table, as psql prints them
    rows = re.findall(r"^ (10\d\d) \| +(\d+) \| (\w+) +\|", proc.stdout, re.M)
    assert [row[0] for row in rows] == ["1001", "1002", "1003", "1004", "1005"], proc.stdout
    assert rows[0] == ("1001", "11", "paid")
    assert re.search(r"^ +customers +12 rows", proc.stdout, re.M), proc.stdout
    assert re.search(r"^ +orders +25 rows", proc.stdout, re.M), proc.stdout

    # nothing left behind: the server is down, its settings file is gone
    match = re.search(
        r"==> Starting a throwaway PostgreSQL.*\n +listening on 127\.0\.0\.1:(\d+)", output
    )
    assert match, output
    assert _refuses(int(match.group(1)))
    assert not list((clone / "output").glob("*.env"))


def test_quickstart_jsonl_writes_every_record(clone: Path) -> None:
    proc = _quickstart(clone)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]

    counts = {
        path.stem: len(path.read_text().splitlines())
        for path in (clone / "output" / "demo").glob("*.jsonl")
    }
    assert counts == {"customers": 12, "orders": 25}
    assert "scripts/quickstart --postgres" in proc.stdout  # points to the main job next


def test_scripts_meltano_finds_its_project_from_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in _clean_env().items() if k != "SSL_CERT_FILE"}
    env["DEMO_API_URL"] = "http://127.0.0.1:9"
    proc = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "meltano"),
            "--environment=demo",
            "config",
            "print",
            "tap-rhttp",
        ],
        cwd=tmp_path,  # not the project: the wrapper must still find meltano.yml
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    config = json.loads(proc.stdout)
    assert [s["url"] for s in config["streams"]] == [
        "http://127.0.0.1:9/customers",
        "http://127.0.0.1:9/orders",
    ]


def _readme_block_after(heading: str) -> list[str]:
    """The command lines of the first ```sh block after a README heading."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(heading) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, heading
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]


def test_readme_state_commands_run_unattended(tmp_path: Path) -> None:
    """The State section's commands, as written, with no one to answer a prompt."""
    env = {**_clean_env(), "MELTANO_SYS_DIR_ROOT": str(tmp_path / "sys")}
    state_id = "dev:tap-rhttp-to-target-postgres"
    saved = {"singer_state": {"bookmarks": {"orders": {"replication_key_value": 7}}}}

    def meltano(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO_ROOT / "scripts" / "meltano"), *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert meltano("state", "set", "--force", state_id, json.dumps(saved)).returncode == 0
    lines = _readme_block_after("### State")
    state_lines = [line for line in lines if line.startswith("scripts/meltano state ")]
    assert len(state_lines) == 3, lines
    for line in state_lines:
        proc = meltano(*line.split()[1:])
        assert proc.returncode == 0, f"{line}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        if " get " in line:
            assert json.loads(proc.stdout) == saved
    assert json.loads(meltano("state", "get", state_id).stdout or "{}") == {}
