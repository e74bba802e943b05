"""tap-rhttp's benchmark: seven scenarios, each contender in a fresh process, one table.

    .venv/bin/python bench/run.py              # the whole benchmark (about 5 minutes)
    .venv/bin/python bench/run.py --quick      # smaller sizes, for a smoke test
    .venv/bin/python bench/run.py --only s1 s4 --repeat 1
    .venv/bin/python bench/run.py --peers      # also dlt and Airbyte, where they apply
    .venv/bin/python bench/run.py --profile    # where tap-rhttp's time goes on S1

It starts its own fixture API (``bench/fixture.py``, a threaded loopback server with
pre-rendered bodies, on 127.0.0.1 only), then runs for each scenario:

- ``floor``: ``bench/floor.py``, a minimal requests + orjson loop writing the same RECORD
  lines (for a fan-out, a thread pool as wide as the tap's ``max_concurrency``);
- ``sdk``: ``bench/sdk_tap.py``, a minimal singer-sdk ``RESTStream`` tap, all defaults;
- ``tap-rhttp``: ``python -m tap_rhttp --config <file>``, schema inferred as a user's
  would be;
- with ``--peers``, what a user might pick instead, each configured as its documentation
  shows and installed in its own virtualenv under ``bench/.peers/`` on first use (never in
  the project's): ``dlt``, dlt's ``rest_api`` source loading into its ``filesystem``
  destination as jsonl (``bench/peers/dlt_rest_api.py``), and ``airbyte``, a low-code
  manifest (``bench/peers/airbyte_manifest.yaml``) run by airbyte-cdk's
  ``source-declarative-manifest read``.

Every contender is a fresh subprocess, with its output going to a file, so wall time
includes interpreter start-up and imports for all alike. Each is started by a small
launcher (``bench/launch.py``), so that its peak RSS (``os.wait4``'s rusage) is its own
and not the benchmark's size inherited at the start; CPU is its user + system time. The
"1st req"
column is how long each took to make its first request (start-up: interpreter, imports,
config, discovery). Each contender's output is then read back (dlt's from the files it
loaded) and every record of every stream checked: the ids must be exactly the expected
set, each once. Floor and tap-rhttp take turns for ``--repeat`` rounds (best wall kept, as
usual for noise on a shared machine; S3, dominated by ``Retry-After`` waits, runs one
round and S1-1M two); the SDK tap and the peers run once.

Scenarios (full size; ratios are tap-rhttp's wall over the floor's in the same run):

- S1 (``s1``): 200 pages x 500 records, Link pagination. Target <= 1.5x.
- S1-1M (``s1m``): 2,000 pages x 500 records, Link pagination. Target <= 0.8x and peak
  RSS <= 100 MB.
- S2 (``s2``): 5 ``for_each`` values x 20 pages x 100 records, 20 ms a request,
  max_concurrency 5. No target: at 2 s it measures start-up more than fan-out.
- S3 (``s3``): 100 pages x 500 records, every 10th page answers 503 with
  ``Retry-After: 1`` once. Target <= 1.1x.
- S4 (``s4``): one 63 MB body of 200,000 records. Target: peak RSS <= 100 MB at >= 1.0x
  the floor's records/s.
- S5 (``s5``): fan-out at scale, 200 ``for_each`` values x 5 pages x 100 records, 50 ms a
  request, max_concurrency 16. Target <= 1.1x and peak RSS <= 100 MB.
- S6 (``s6``): parent/child, a parent of 5 pages x 100 rows, one child page of 10 records
  per row, 20 ms a request, max_concurrency 16 on the child (the floor is a 16-wide pool
  fed as parent pages arrive). Target <= 1.3x.

Exit status: 0 when every record of tap-rhttp, the floor and the SDK tap arrived exactly
once and every target is met (the peers never change it).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
PEERS_DIR = HERE / ".peers"

SCENARIOS = ("s1", "s1m", "s2", "s3", "s4", "s5", "s6")
#: The names the performance targets use.
NAMES = {
    "s1": "S1",
    "s1m": "S1-1M",
    "s2": "S2",
    "s3": "S3",
    "s4": "S4",
    "s5": "S5",
    "s6": "S6",
}
TITLES = {
    "s1": "S1 throughput",
    "s1m": "S1-1M throughput",
    "s2": "S2 fan-out",
    "s3": "S3 faults",
    "s4": "S4 one body",
    "s5": "S5 fan-out x200",
    "s6": "S6 parent/child",
}

FULL = {
    "s1_pages": 200,
    "s1_per_page": 500,
    "s1m_pages": 2000,
    "s1m_templates": 20,
    "s2_values": 5,
    "s2_pages": 20,
    "s2_per_page": 100,
    "s2_delay_ms": 20,
    "s3_pages": 100,
    "s3_per_page": 500,
    "s4_records": 200_000,
    "s5_values": 200,
    "s5_pages": 5,
    "s5_per_page": 100,
    "s5_delay_ms": 50,
    "s6_pages": 5,
    "s6_rows": 100,
    "s6_child_records": 10,
    "s6_delay_ms": 20,
}
QUICK = {
    **FULL,
    "s1_pages": 40,
    "s1m_pages": 200,
    "s2_pages": 5,
    "s3_pages": 20,
    "s4_records": 50_000,
    "s5_values": 40,
}
#: max_concurrency of tap-rhttp, the floor's pool width, and the peers' workers.
CONCURRENCY = {"s2": 5, "s5": 16, "s6": 16}
#: Rounds at most (``--repeat`` otherwise): S3 is Retry-After waits, S1-1M is long.
MAX_ROUNDS = {"s3": 1, "s1m": 2}
#: Scenarios the singer-sdk tap runs only with --sdk-all, and why.
SDK_LONG = {
    "s1m": "1M records at its pace is minutes",
    "s5": "its partitions run one after another: over a minute",
}
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclasses.dataclass
class Result:
    scenario: str
    contender: str
    wall: float
    rss_mb: float
    cpu: float
    records: int
    ok: bool
    problem: str = ""
    requests: int = 0
    faults: int = 0
    first_request: float = 0.0  # seconds from start to the first request the API saw

    @property
    def rate(self) -> float:
        return self.records / self.wall if self.wall else 0.0


# --------------------------------------------------------------------------- scenarios


def expected_ids(scenario: str, sizes: dict[str, int]) -> dict[str, set[int]]:
    """Every stream's expected ids."""
    if scenario == "s1":
        return {"s1": set(range(sizes["s1_pages"] * sizes["s1_per_page"]))}
    if scenario == "s1m":
        return {"s1m": set(range(sizes["s1m_pages"] * sizes["s1_per_page"]))}
    if scenario in ("s2", "s5"):
        stride = 1_000_000 if scenario == "s2" else 1000
        n = sizes[f"{scenario}_pages"] * sizes[f"{scenario}_per_page"]
        values = sizes[f"{scenario}_values"]
        return {scenario: {v * stride + i for v in range(values) for i in range(n)}}
    if scenario == "s3":
        return {"s3": set(range(sizes["s3_pages"] * sizes["s3_per_page"]))}
    if scenario == "s6":
        rows = sizes["s6_pages"] * sizes["s6_rows"]
        kids = sizes["s6_child_records"]
        return {
            "parent": set(range(rows)),
            "s6": {r * 100 + i for r in range(rows) for i in range(kids)},
        }
    return {"s4": set(range(sizes["s4_records"]))}


def fan_out_values(scenario: str, sizes: dict[str, int]) -> int:
    return sizes.get(f"{scenario}_values", 0) if scenario in ("s2", "s5") else 0


def starts(scenario: str, base: str, run: str, sizes: dict[str, int]) -> list[str]:
    if values := fan_out_values(scenario, sizes):
        return [f"{base}/{scenario}/{run}/{v}" for v in range(values)]
    return [f"{base}/{scenario}/{run}"]


def rhttp_config(scenario: str, base: str, run: str, sizes: dict[str, int]) -> dict[str, t.Any]:
    if scenario == "s6":
        parent = {
            "name": "parent",
            "url": f"{base}/s6/{run}",
            "primary_keys": ["id"],
            "page": "link-next",
            "page_limit": -1,
        }
        child = {
            "name": "s6",
            "url": f"{base}/s6/{run}/{{{{ row['id'] }}}}",
            "parent": "parent",
            "primary_keys": ["id"],
            "max_concurrency": CONCURRENCY["s6"],
        }
        return {"streams": [parent, child]}
    spec: dict[str, t.Any] = {"name": scenario, "primary_keys": ["id"]}
    if values := fan_out_values(scenario, sizes):
        spec.update(
            url=f"{base}/{scenario}/{run}/{{{{ item }}}}",
            for_each=list(range(values)),
            max_concurrency=CONCURRENCY[scenario],
        )
    else:
        spec["url"] = f"{base}/{scenario}/{run}"
    if scenario != "s4":
        spec.update(page="link-next", page_limit=-1)
    return {"streams": [spec]}


# --------------------------------------------------------------------------- peers


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    requirement: str  # what pip installs into the peer's own virtualenv
    warm: str  # imports that compile and cache its start-up once, before any measure
    scenarios: tuple[str, ...]


#: Pinned to the versions the runners were written against. Not S1-1M or S3: a peer's
#: pace on a million records, or its back-off on S3's 503s, would take minutes.
PEERS = (
    Peer(
        "dlt",
        "dlt==1.31.0",
        "import dlt, dlt.sources.rest_api, dlt.destinations",
        ("s1", "s2", "s4", "s5", "s6"),
    ),
    Peer(
        "airbyte",
        "airbyte-cdk==7.39.1",
        "import airbyte_cdk.cli.source_declarative_manifest._run",
        ("s1", "s2", "s4", "s5", "s6"),
    ),
)
PEER_BY_NAME = {peer.name: peer for peer in PEERS}
PEER_INSTALL_TIMEOUT = 1200


def peer_python(peer: Peer) -> Path:
    return PEERS_DIR / peer.name / "bin" / "python"


def install_peer(peer: Peer) -> str:
    """Make sure the peer's virtualenv holds its pinned version: "" or why it cannot."""
    venv = PEERS_DIR / peer.name
    marker = venv / ".bench-requirement"
    if marker.exists() and marker.read_text().strip() == peer.requirement:
        return ""
    print(f"installing {peer.requirement} into {venv} (once) ...", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        subprocess.run(
            [PYTHON, "-m", "venv", "--clear", str(venv)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(peer_python(peer)), "-m", "pip", "install", "-q", peer.requirement],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=PEER_INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"pip install {peer.requirement} took over {PEER_INSTALL_TIMEOUT} s"
    except subprocess.CalledProcessError as error:
        output = error.stderr or b""
        lines = (output.decode(errors="replace") if isinstance(output, bytes) else output).split(
            "\n"
        )
        last = [line for line in lines if line.strip()][-1:] or [str(error)]
        return f"could not install {peer.requirement}: {last[0]}"
    marker.write_text(peer.requirement + "\n")
    return ""


def peer_env(work: Path) -> dict[str, str]:
    """The peers' environment: loopback only, no usage reports, their own bytecode.

    A proxy that answers nothing (port 9) stands in for any host but 127.0.0.1, so a
    peer that tried to reach out would fail at once rather than leave the machine.
    """
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = "http://127.0.0.1:9"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["DLT_DATA_DIR"] = str(work / "dlt-home")
    return env


def peer_argv(
    peer: str, scenario: str, base: str, run: str, sizes: dict[str, int], work: Path
) -> list[str]:
    values = fan_out_values(scenario, sizes)
    width = CONCURRENCY.get(scenario, 1)
    if peer == "dlt":
        job = {
            "scenario": scenario,
            "base": base,
            "run": run,
            "values": values,
            "width": max(width, 1),
            "bucket": str(work / f"{run}.dlt"),
            "pipelines_dir": str(work / f"{run}.pipelines"),
        }
        python = peer_python(PEER_BY_NAME["dlt"])
        return [str(python), str(HERE / "peers" / "dlt_rest_api.py"), json.dumps(job)]
    config, catalog = work / f"{run}.config.json", work / f"{run}.catalog.json"
    config.write_text(
        json.dumps(
            {
                "base_url": base,
                "run": run,
                "values": [str(v) for v in range(values)],
                "concurrency": max(width, 1),
            }
        )
    )
    streams = list(expected_ids(scenario, sizes))
    catalog.write_text(
        json.dumps(
            {
                "streams": [
                    {
                        "stream": {
                            "name": name,
                            "json_schema": {},
                            "supported_sync_modes": ["full_refresh"],
                        },
                        "sync_mode": "full_refresh",
                        "destination_sync_mode": "overwrite",
                    }
                    for name in streams
                ]
            }
        )
    )
    cli = peer_python(PEER_BY_NAME["airbyte"]).parent / "source-declarative-manifest"
    manifest = HERE / "peers" / "airbyte_manifest.yaml"
    return [
        str(cli),
        "read",
        "--config",
        str(config),
        "--catalog",
        str(catalog),
        "--manifest-path",
        str(manifest),
    ]


# --------------------------------------------------------------------------- running


def argv_for(
    contender: str, scenario: str, base: str, run: str, sizes: dict[str, int], work: Path
) -> list[str]:
    if contender == "floor":
        job: dict[str, t.Any] = {
            "stream": scenario,
            "starts": starts(scenario, base, run, sizes),
            "width": CONCURRENCY.get(scenario, 1),
        }
        if scenario == "s6":
            job["children"] = f"{base}/s6/{run}"
        return [PYTHON, str(HERE / "floor.py"), json.dumps(job)]
    if contender in ("dlt", "airbyte"):
        return peer_argv(contender, scenario, base, run, sizes, work)
    config = work / f"{run}.json"
    if contender == "sdk":
        config.write_text(
            json.dumps(
                {
                    "base_url": base,
                    "scenario": scenario,
                    "run": run,
                    "values": list(range(fan_out_values(scenario, sizes))),
                }
            )
        )
        return [PYTHON, str(HERE / "sdk_tap.py"), "--config", str(config)]
    config.write_text(json.dumps(rhttp_config(scenario, base, run, sizes)))
    return [PYTHON, "-m", "tap_rhttp", "--config", str(config)]


def child_env(work: Path) -> dict[str, str]:
    """The contenders' environment: no proxies, and compiled bytecode kept between runs.

    Installed packages come with their bytecode; a checkout run with
    PYTHONDONTWRITEBYTECODE would recompile tap-rhttp at every start. A cache directory of
    the benchmark's own keeps that start-up cost out of the figures for every contender
    alike (each is started once to warm it before anything is measured).
    """
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["NO_PROXY"] = "127.0.0.1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def warm_up(work: Path, peers: t.Sequence[Peer]) -> None:
    """Compile every contender's imports once, into the benchmark's bytecode cache."""
    code = "import orjson, requests, singer_sdk, tap_rhttp.tap, bench.sdk_tap, bench.floor"
    subprocess.run(
        [PYTHON, "-c", code], env=child_env(work), cwd=HERE.parent, check=True, timeout=300
    )
    for peer in peers:
        subprocess.run(
            [str(peer_python(peer)), "-c", peer.warm],
            env=peer_env(work),
            cwd=work,
            check=False,
            capture_output=True,
            timeout=300,
        )


def run_child(
    argv: list[str], out: Path, err: Path, env: dict[str, str], cwd: Path, timeout: float
) -> tuple[float, float, float, int, float, bool]:
    """Run one contender through ``bench/launch.py``: wall time, peak RSS (MB), CPU
    seconds, exit code, start time, and whether it was stopped for taking longer than
    ``timeout`` seconds."""
    launcher = [PYTHON, "-I", "-S", str(HERE / "launch.py"), str(timeout), str(out), str(err)]
    try:
        done = subprocess.run(
            [*launcher, *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout + 60,  # the launcher stops its child at ``timeout``
            check=True,
        )
    except subprocess.TimeoutExpired:
        return timeout, 0.0, 0.0, -9, time.time() - timeout, True
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return (
        report["wall"],
        report["maxrss_kb"] / 1024,
        report["cpu"],
        report["code"],
        report["started_at"],
        report["timed_out"],
    )


def singer_records(out: Path) -> t.Iterator[tuple[str, int]]:
    """(stream, id) of each RECORD line a Singer tap (or the floor) wrote."""
    with out.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"RECORD"'):
                message = orjson.loads(line)
                yield message["stream"], message["record"]["id"]


def airbyte_records(out: Path) -> t.Iterator[tuple[str, int]]:
    """(stream, id) of each RECORD AirbyteMessage on an Airbyte source's stdout."""
    with out.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"RECORD"'):
                record = orjson.loads(line)["record"]
                yield record["stream"], record["data"]["id"]


def dlt_records(bucket: Path, streams: t.Iterable[str]) -> t.Iterator[tuple[str, int]]:
    """(stream, id) of each row dlt loaded into its filesystem destination (jsonl)."""
    for stream in streams:
        for path in sorted((bucket / "bench" / stream).glob("*.jsonl*")):
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as lines:
                for line in lines:
                    if line.strip():
                        yield stream, orjson.loads(line)["id"]


def verify(records: t.Iterable[tuple[str, int]], expected: dict[str, set[int]]) -> tuple[int, str]:
    """Count the expected streams' records and check every id arrived exactly once."""
    seen: dict[str, set[int]] = {stream: set() for stream in expected}
    count = 0
    for stream, record_id in records:
        if stream in seen:
            count += 1
            seen[stream].add(record_id)
    problems = []
    for stream, ids in expected.items():
        label = f" in {stream}" if len(expected) > 1 else ""
        if missing := len(ids - seen[stream]):
            problems.append(f"{missing} missing{label}")
        if extra := len(seen[stream] - ids):
            problems.append(f"{extra} unexpected{label}")
    if duplicates := count - sum(len(ids) for ids in seen.values()):
        problems.append(f"{duplicates} duplicates")
    return count, ", ".join(problems)


class Fixture:
    def __init__(self, sizes: dict[str, int], scenarios: t.Sequence[str]) -> None:
        job = {"sizes": sizes, "scenarios": list(scenarios)}
        self.process = subprocess.Popen(
            [PYTHON, str(HERE / "fixture.py"), json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        # rendering the bodies takes seconds; a fixture that never says READY is stopped
        timer = threading.Timer(120, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline().split()
        finally:
            timer.cancel()
        if not line or line[0] != "READY":
            self.stop()
            raise RuntimeError("the fixture server did not start")
        self.base = f"http://127.0.0.1:{line[1]}"

    def stats(self, run: str) -> dict[str, float]:
        import requests

        session = requests.Session()
        session.trust_env = False  # loopback: never through a proxy
        return dict(session.get(f"{self.base}/stats/{run}", timeout=10).json())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(
    fixture: Fixture,
    contender: str,
    scenario: str,
    sizes: dict[str, int],
    work: Path,
    attempt: int,
    timeout: float,
) -> Result:
    run = f"{scenario}-{contender}-{attempt}"
    argv = argv_for(contender, scenario, fixture.base, run, sizes, work)
    out, err = work / f"{run}.out", work / f"{run}.err"
    peer = contender in ("dlt", "airbyte")
    env, cwd = (peer_env(work), work) if peer else (child_env(work), HERE.parent)
    wall, rss, cpu, code, started_at, timed_out = run_child(argv, out, err, env, cwd, timeout)
    expected = expected_ids(scenario, sizes)
    if contender == "dlt":
        records = dlt_records(work / f"{run}.dlt", expected)
    elif contender == "airbyte":
        records = airbyte_records(out)
    else:
        records = singer_records(out)
    count, problem = verify(records, expected)
    if timed_out:
        problem = f"stopped after {timeout:.0f} s" + (f"; {problem}" if problem else "")
    elif code != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        if not tail and contender == "airbyte":  # an Airbyte source reports on stdout
            tail = [line[:200] for line in out.read_text(errors="replace").splitlines()[-2:]]
        problem = f"exit {code}: {' | '.join(tail)}" + (f"; {problem}" if problem else "")
    stats = fixture.stats(run)
    return Result(
        scenario,
        contender,
        wall,
        rss,
        cpu,
        count,
        ok=not problem,
        problem=problem,
        requests=int(stats.get("requests", 0)),
        faults=int(stats.get("faults", 0)),
        first_request=stats.get("first_at", started_at) - started_at,
    )


# --------------------------------------------------------------------------- report

TARGETS = {
    "s1": "tap-rhttp wall <= 1.5x floor wall",
    "s1m": "tap-rhttp wall <= 0.8x floor wall, peak RSS <= 100 MB",
    "s3": "tap-rhttp wall <= 1.1x floor wall",
    "s4": "tap-rhttp peak RSS <= 100 MB at >= 1.0x floor records/s",
    "s5": "tap-rhttp wall <= 1.1x floor wall, peak RSS <= 100 MB",
    "s6": "tap-rhttp wall <= 1.3x floor wall",
}


def target_met(scenario: str, rhttp: Result, floor: Result) -> tuple[bool | None, str]:
    """Whether the scenario's target is met (None: it has none), and the figure."""
    ratio = rhttp.wall / floor.wall
    rss = f"{rhttp.rss_mb:.0f} MB"
    if scenario == "s1":
        return ratio <= 1.5, f"{ratio:.2f}x"
    if scenario == "s1m":
        return ratio <= 0.8 and rhttp.rss_mb <= 100, f"{ratio:.2f}x, {rss}"
    if scenario == "s3":
        return ratio <= 1.1, f"{ratio:.2f}x"
    if scenario == "s4":
        speed = rhttp.rate / floor.rate
        return rhttp.rss_mb <= 100 and speed >= 1.0, f"{rss}, {speed:.2f}x floor rec/s"
    if scenario == "s5":
        return ratio <= 1.1 and rhttp.rss_mb <= 100, f"{ratio:.2f}x, {rss}"
    if scenario == "s6":
        return ratio <= 1.3, f"{ratio:.2f}x"
    return None, f"{ratio:.2f}x"


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<17} {'contender':<10} {'wall s':>7} {'records':>8} {'rec/s':>9} "
        f"{'peak RSS':>9} {'CPU s':>6} {'reqs':>5} {'1st req':>7} {'x floor':>8}  verified"
    )
    print(header)
    print("-" * len(header))
    floors = {r.scenario: r for r in results if r.contender == "floor"}
    for r in results:
        floor = floors.get(r.scenario)
        ratio = f"{r.wall / floor.wall:.2f}" if floor and r.wall else "-"
        check = "exactly once" if r.ok else f"FAILED: {r.problem}"
        print(
            f"{TITLES[r.scenario]:<17} {r.contender:<10} {r.wall:>7.2f} {r.records:>8} "
            f"{r.rate:>9,.0f} {r.rss_mb:>6.0f} MB {r.cpu:>6.2f} {r.requests:>5} "
            f"{r.first_request:>6.2f}s {ratio:>8}  "
            f"{check}"
        )


def describe(sizes: dict[str, int]) -> list[str]:
    s = sizes
    return [
        f"S1 {s['s1_pages']} pages x {s['s1_per_page']}, Link pagination",
        f"S1-1M {s['s1m_pages']:,} pages x {s['s1_per_page']}, Link pagination",
        f"S2 {s['s2_values']} values x {s['s2_pages']} pages x {s['s2_per_page']}, "
        f"{s['s2_delay_ms']} ms a request, max_concurrency {CONCURRENCY['s2']}",
        f"S3 {s['s3_pages']} pages x {s['s3_per_page']}, every 10th page 503 once (Retry-After: 1)",
        f"S4 one body of {s['s4_records']:,} records",
        f"S5 {s['s5_values']} values x {s['s5_pages']} pages x {s['s5_per_page']}, "
        f"{s['s5_delay_ms']} ms a request, max_concurrency {CONCURRENCY['s5']}",
        f"S6 {s['s6_pages']} parent pages x {s['s6_rows']} rows, one child page of "
        f"{s['s6_child_records']} per row, {s['s6_delay_ms']} ms a request, "
        f"max_concurrency {CONCURRENCY['s6']} on the child",
    ]


# --------------------------------------------------------------------------- profile


#: Built-ins that run (almost) only while modules are imported.
STARTUP_BUILTINS = (
    "marshal.loads",
    "builtins.compile",
    "__build_class__",
    "builtins.exec",
    "_imp.",
    "io.open_code",
    "posix.stat",
)


def area(key: tuple[str, int, str]) -> str:
    """Where a profiled function belongs: a tap-rhttp module, a library, or a kind of
    built-in."""
    filename, _, name = key
    if filename.startswith("<frozen") or any(word in name for word in STARTUP_BUILTINS):
        return "imports (start-up)"
    if filename == "~":  # a built-in: its name says what it is
        if "lock" in name or "acquire" in name or ".wait" in name:
            return "waiting (locks: the helper threads' work)"
        if any(word in name for word in ("socket", "ssl", "select", "poll")):
            return "sockets (built-in)"
        if any(word in name for word in ("orjson", "msgspec", "json", "ijson", "yajl")):
            return "JSON encode/decode (built-in)"
        if "write" in name or "flush" in name:
            return "writes (built-in)"
        return "other built-ins"
    path = Path(filename)
    parts = path.parts
    if "tap_rhttp" in parts:
        rest = parts[parts.index("tap_rhttp") + 1 :]
        return "tap_rhttp." + (rest[0].removesuffix(".py") if rest else "")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else filename
    if "bench" in parts:
        return "bench"
    if parts[-2:-1] == ("re",):
        return "stdlib re (compiling patterns)"
    return "stdlib " + (parts[-2] if path.name == "__init__.py" else path.stem)


def profile(sizes: dict[str, int], work: Path, timeout: float) -> int:
    """tap-rhttp once on S1 under cProfile, and where its main thread's time went."""
    print(
        "profiling tap-rhttp on S1 with cProfile. cProfile sees the main thread only: a "
        "chain fetches its next page on a helper thread, so that thread's network reads and "
        "body parsing are not below, and the main thread's waits for them show as lock "
        "acquires. Profiling also slows Python code down more than C code: use the shares "
        "as pointers, not as measures."
    )
    fixture = Fixture(sizes, ["s1"])
    try:
        run = "s1-profile-0"
        config = work / f"{run}.json"
        config.write_text(json.dumps(rhttp_config("s1", fixture.base, run, sizes)))
        stats_file = work / "tap.prof"
        argv = [PYTHON, "-m", "cProfile", "-o", str(stats_file), "-m", "tap_rhttp"]
        argv += ["--config", str(config)]
        out, err = work / f"{run}.out", work / f"{run}.err"
        wall, rss, cpu, code, _, timed_out = run_child(
            argv, out, err, child_env(work), HERE.parent, timeout
        )
    finally:
        fixture.stop()
    count, problem = verify(singer_records(out), expected_ids("s1", sizes))
    print(
        f"\nS1 under cProfile: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MB, "
        f"{count} records {problem or 'verified exactly once'}"
    )
    if timed_out or code != 0 or not stats_file.exists():
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"the profiled run failed (exit {code}): {' | '.join(tail)}")
        return 1
    stats = pstats.Stats(str(stats_file))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1.0
    print(f"\nmain thread, own time by area (of {total:.2f} s):")
    areas: dict[str, float] = {}
    for key, entry in entries.items():
        areas[area(key)] = areas.get(area(key), 0.0) + entry[2]
    for name, seconds in sorted(areas.items(), key=lambda item: -item[1])[:12]:
        print(f"  {seconds:7.3f} s {100 * seconds / total:5.1f}%  {name}")
    print("\ntop 15 functions by own time:")
    print(f"  {'own s':>7} {'cum s':>7} {'calls':>9}  function")
    top = sorted(entries.items(), key=lambda item: -item[1][2])[:15]
    for (filename, line, name), (_, calls, own, cumulative, _) in top:
        where = name if filename == "~" else f"{name}  ({shorten(filename)}:{line})"
        print(f"  {own:7.3f} {cumulative:7.3f} {calls:>9}  {where}")
    return 0 if not problem else 1


def shorten(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "tap_rhttp"):
        if anchor in parts:
            index = parts.index(anchor) + (anchor == "site-packages")
            return "/".join(parts[index:])
    return "/".join(parts[-2:])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="scenarios, by id")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of floor and tap-rhttp")
    parser.add_argument("--no-sdk", action="store_true", help="skip the singer-sdk tap")
    parser.add_argument(
        "--sdk-all",
        action="store_true",
        help="also run the singer-sdk tap on " + " and ".join(NAMES[s] for s in SDK_LONG),
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run dlt's rest_api and an Airbyte low-code source (installed on first "
        "use into bench/.peers/), where they apply",
    )
    parser.add_argument(
        "--profile", action="store_true", help="only profile tap-rhttp on S1 (cProfile)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds a single run may take")
    parser.add_argument("--keep", action="store_true", help="keep the outputs (path printed)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="rhttp-bench-"))
    started = time.perf_counter()
    try:
        if args.profile:
            warm_up(work, [])
            return profile(sizes, work, args.timeout)
        return bench(args, sizes, work, started)
    finally:
        if args.keep:
            print(f"outputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, sizes: dict[str, int], work: Path, started: float) -> int:
    scenarios = [s for s in SCENARIOS if s in (args.only or SCENARIOS)]
    contenders = ["floor", *([] if args.no_sdk else ["sdk"]), "tap-rhttp"]
    print(
        f"tap-rhttp benchmark{' (quick)' if args.quick else ''}: python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; best wall of {args.repeat} rounds (S3: 1, S1-1M: at "
        f"most 2; the singer-sdk tap and the peers: 1)"
    )
    print("sizes: " + "; ".join(describe(sizes)))
    if not args.no_sdk:
        skipped = [s for s in scenarios if s in SDK_LONG and not args.sdk_all]
        notes = [f"{NAMES[s]} ({SDK_LONG[s]}; --sdk-all runs it)" for s in skipped]
        if "s6" in scenarios:
            notes.append("S6 (it has no child stream)")
        if notes:
            print("singer-sdk tap not run on: " + "; ".join(notes))
    peers: list[Peer] = []
    peer_failures: dict[str, str] = {}
    if args.peers:
        for peer in PEERS:
            if not any(s in peer.scenarios for s in scenarios):
                continue
            peers.append(peer)
            if failure := install_peer(peer):
                peer_failures[peer.name] = failure
                print(f"peer {peer.name}: {failure}")
        applies = sorted(
            {NAMES[s] for p in peers for s in p.scenarios}, key=list(NAMES.values()).index
        )
        print(
            f"peers (one run each, on {', '.join(applies)}): "
            + ", ".join(f"{p.name} ({p.requirement})" for p in peers)
        )
    warm_up(work, [p for p in peers if p.name not in peer_failures])
    fixture = Fixture(sizes, scenarios)
    if "s4" in scenarios:
        print(f"S4 body: {fixture.stats('-').get('s4_bytes', 0) / 1e6:.1f} MB")
    results: list[Result] = []
    try:
        for scenario in scenarios:
            results += run_scenario(
                fixture, scenario, contenders, peers, peer_failures, sizes, work, args
            )
    finally:
        fixture.stop()
    print()
    print_table(results)
    print()
    measured = [r for r in results if r.contender not in ("dlt", "airbyte")]
    all_ok = all(r.ok for r in measured)
    by_key = {(r.scenario, r.contender): r for r in results}
    for scenario in scenarios:
        rhttp, floor = by_key.get((scenario, "tap-rhttp")), by_key.get((scenario, "floor"))
        if rhttp is None or floor is None:
            continue
        met, figure = target_met(scenario, rhttp, floor)
        name = NAMES[scenario]
        if met is None:
            print(f"(no target) {name}: tap-rhttp wall / floor wall: {figure}")
            continue
        if not (rhttp.ok and floor.ok):
            met, figure = False, f"{figure} (a run FAILED: no figure counts)"
        all_ok &= met
        print(f"{'MET    ' if met else 'NOT MET'} {name}: {TARGETS[scenario]}: {figure}")
    if args.quick:
        print("(--quick: the targets are set for the full sizes, where start-up weighs less)")
        all_ok = all(r.ok for r in measured)
    verified = "all records verified exactly once" if all(r.ok for r in results) else "FAILED"
    if all(r.ok for r in measured) and not all(r.ok for r in results):
        verified = "all records of tap-rhttp, the floor and the SDK tap verified exactly once"
        verified += " (a peer FAILED)"
    print(f"\n{verified}; benchmark took {time.perf_counter() - started:.0f} s")
    return 0 if all_ok else 1


def run_scenario(
    fixture: Fixture,
    scenario: str,
    contenders: list[str],
    peers: list[Peer],
    peer_failures: dict[str, str],
    sizes: dict[str, int],
    work: Path,
    args: argparse.Namespace,
) -> list[Result]:
    """Floor and tap-rhttp taking turns (a busy spell on the machine hits both alike),
    the SDK tap in the first round, then each peer once: the best run of each."""
    rounds = max(min(args.repeat, MAX_ROUNDS.get(scenario, args.repeat)), 1)
    runs: dict[str, list[Result]] = {c: [] for c in contenders}

    def one(contender: str, attempt: int) -> Result:
        result = measure(fixture, contender, scenario, sizes, work, attempt, args.timeout)
        problem = "" if result.ok else f"  FAILED: {result.problem}"
        print(
            f"  {NAMES[scenario]:<5} {contender:<9} {result.wall:6.2f} s "
            f"{result.rss_mb:5.0f} MB{problem}",
            flush=True,
        )
        return result

    for attempt in range(rounds):
        for contender in contenders:
            if contender == "sdk" and (
                attempt or scenario == "s6" or (scenario in SDK_LONG and not args.sdk_all)
            ):
                continue
            runs[contender].append(one(contender, attempt))
    results = []
    for contender in contenders:
        if runs[contender]:
            failed = [r for r in runs[contender] if not r.ok]
            results.append(failed[0] if failed else min(runs[contender], key=lambda r: r.wall))
    for peer in peers:
        if scenario not in peer.scenarios:
            continue
        if failure := peer_failures.get(peer.name):
            results.append(Result(scenario, peer.name, 0, 0, 0, 0, ok=False, problem=failure))
            continue
        try:
            results.append(one(peer.name, 0))
        except Exception as error:  # a peer never stops the benchmark
            results.append(Result(scenario, peer.name, 0, 0, 0, 0, ok=False, problem=repr(error)))
    return results


if __name__ == "__main__":
    sys.exit(main())
