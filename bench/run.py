"""tap-rhttp's benchmark: four scenarios, three contenders, one run, one table.

    .venv/bin/python bench/run.py            # the whole benchmark (about 3 minutes)
    .venv/bin/python bench/run.py --quick    # smaller sizes, for a smoke test
    .venv/bin/python bench/run.py --only s1 s4 --repeat 1

It starts its own fixture API (``bench/fixture.py``, a threaded loopback server with
pre-rendered bodies, on 127.0.0.1 only), then runs for each scenario:

- ``floor``: ``bench/floor.py``, a minimal requests + orjson loop writing the same RECORD
  lines (for S2 a thread pool as wide as the tap's ``max_concurrency``);
- ``sdk``: ``bench/sdk_tap.py``, a minimal singer-sdk ``RESTStream`` tap, all defaults;
- ``tap-rhttp``: ``python -m tap_rhttp --config <file>``, schema inferred as a user's
  would be.

Every contender is a fresh subprocess of the same interpreter, with stdout going to a file,
so wall time includes interpreter start-up and imports for all three alike. Peak RSS is
the child's own high-water mark (``os.wait4``'s rusage), CPU is its user + system time.
The "1st req" column is how long each took to make its first request (start-up:
interpreter, imports, config, discovery). Each contender's output is then read back and
every record checked: the ids must be exactly the expected set, each once. Floor and
tap-rhttp run ``--repeat`` times, taking turns (best wall kept, as usual for noise on a
shared machine); the SDK tap runs once.

Scenarios (full size): S1 throughput (200 pages x 500 records, Link pagination);
S2 latency-bound fan-out (5 ``for_each`` values x 20 pages x 100 records, 20 ms per
request, max_concurrency 5); S3 faults (100 pages x 500 records, every 10th page answers
503 with ``Retry-After: 1`` once); S4 one 63 MB body of 200,000 records; S5 concurrent
child stream (a parent of 5 pages x 100 rows, one child page of 10 records per row, 20 ms
per request, max_concurrency 16 on the child; the floor is a 16-wide pool fed as parent
pages arrive; the singer-sdk tap does not run it).

Exit status: 0 when every record arrived exactly once everywhere and every target is met.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

FULL = {
    "s1_pages": 200,
    "s1_per_page": 500,
    "s2_values": 5,
    "s2_pages": 20,
    "s2_per_page": 100,
    "s2_delay_ms": 20,
    "s3_pages": 100,
    "s3_per_page": 500,
    "s4_records": 200_000,
    "s5_pages": 5,
    "s5_rows": 100,
    "s5_child_records": 10,
    "s5_delay_ms": 20,
}
QUICK = {
    **FULL,
    "s1_pages": 40,
    "s2_pages": 5,
    "s3_pages": 20,
    "s4_records": 50_000,
}
S2_CONCURRENCY = 5
S5_CONCURRENCY = 16
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


def expected_ids(scenario: str, sizes: dict[str, int]) -> set[int]:
    if scenario == "s1":
        return set(range(sizes["s1_pages"] * sizes["s1_per_page"]))
    if scenario == "s2":
        n = sizes["s2_pages"] * sizes["s2_per_page"]
        return {v * 1_000_000 + i for v in range(sizes["s2_values"]) for i in range(n)}
    if scenario == "s3":
        return set(range(sizes["s3_pages"] * sizes["s3_per_page"]))
    if scenario == "s5":
        rows = sizes["s5_pages"] * sizes["s5_rows"]
        return {r * 100 + i for r in range(rows) for i in range(sizes["s5_child_records"])}
    return set(range(sizes["s4_records"]))


def starts(scenario: str, base: str, run: str, sizes: dict[str, int]) -> list[str]:
    if scenario == "s2":
        return [f"{base}/s2/{run}/{v}" for v in range(sizes["s2_values"])]
    return [f"{base}/{scenario}/{run}"]


def rhttp_config(scenario: str, base: str, run: str, sizes: dict[str, int]) -> dict[str, t.Any]:
    if scenario == "s5":
        parent = {
            "name": "parent",
            "url": f"{base}/s5/{run}",
            "primary_keys": ["id"],
            "page": "link-next",
            "page_limit": -1,
        }
        child = {
            "name": "s5",
            "url": f"{base}/s5/{run}/{{{{ row['id'] }}}}",
            "parent": "parent",
            "primary_keys": ["id"],
            "max_concurrency": S5_CONCURRENCY,
        }
        return {"streams": [parent, child]}
    spec: dict[str, t.Any] = {"name": scenario, "primary_keys": ["id"]}
    if scenario == "s2":
        spec.update(
            url=f"{base}/s2/{run}/{{{{ item }}}}",
            for_each=list(range(sizes["s2_values"])),
            max_concurrency=S2_CONCURRENCY,
        )
    else:
        spec["url"] = f"{base}/{scenario}/{run}"
    if scenario != "s4":
        spec.update(page="link-next", page_limit=-1)
    return {"streams": [spec]}


def argv_for(
    contender: str, scenario: str, base: str, run: str, sizes: dict[str, int], work: Path
) -> list[str]:
    if contender == "floor":
        widths = {"s2": S2_CONCURRENCY, "s5": S5_CONCURRENCY}
        job: dict[str, t.Any] = {
            "stream": scenario,
            "starts": starts(scenario, base, run, sizes),
            "width": widths.get(scenario, 1),
        }
        if scenario == "s5":
            job["children"] = f"{base}/s5/{run}"
        return [PYTHON, str(HERE / "floor.py"), json.dumps(job)]
    config = work / f"{run}.json"
    if contender == "sdk":
        config.write_text(
            json.dumps(
                {
                    "base_url": base,
                    "scenario": scenario,
                    "run": run,
                    "values": list(range(sizes["s2_values"])),
                }
            )
        )
        return [PYTHON, str(HERE / "sdk_tap.py"), "--config", str(config)]
    config.write_text(json.dumps(rhttp_config(scenario, base, run, sizes)))
    return [PYTHON, "-m", "tap_rhttp", "--config", str(config)]


# --------------------------------------------------------------------------- running


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


def warm_up(work: Path) -> None:
    """Compile every contender's imports once, into the benchmark's bytecode cache."""
    code = "import orjson, requests, singer_sdk, tap_rhttp.tap, bench.sdk_tap, bench.floor"
    subprocess.run([PYTHON, "-c", code], env=child_env(work), cwd=HERE.parent, check=True)


def run_child(
    argv: list[str], out: Path, err: Path, work: Path
) -> tuple[float, float, float, int, float]:
    """Run one contender: wall time, peak RSS (MB), CPU seconds, exit code, start time."""
    env = child_env(work)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started_at = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, cwd=HERE.parent)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, cpu, child.returncode, started_at


def verify(out: Path, scenario: str, expected: set[int]) -> tuple[int, str]:
    """Count the stream's RECORD lines and check every expected id arrived exactly once."""
    seen: set[int] = set()
    count = 0
    with out.open("rb") as lines:
        for line in lines:
            if not line.startswith(b'{"type":"RECORD"'):
                continue
            message = orjson.loads(line)
            if message.get("stream") != scenario:
                continue
            count += 1
            seen.add(message["record"]["id"])
    problems = []
    if count != len(seen):
        problems.append(f"{count - len(seen)} duplicates")
    if missing := len(expected - seen):
        problems.append(f"{missing} missing")
    if extra := len(seen - expected):
        problems.append(f"{extra} unexpected")
    return count, ", ".join(problems)


class Fixture:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(HERE / "fixture.py"), json.dumps(sizes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the fixture server did not start")
        self.base = f"http://127.0.0.1:{line[1]}"

    def stats(self, run: str) -> dict[str, float]:
        import requests

        return dict(requests.get(f"{self.base}/stats/{run}", timeout=10).json())

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
) -> Result:
    run = f"{scenario}-{contender}-{attempt}"
    argv = argv_for(contender, scenario, fixture.base, run, sizes, work)
    out, err = work / f"{run}.out", work / f"{run}.err"
    wall, rss, cpu, code, started_at = run_child(argv, out, err, work)
    count, problem = verify(out, scenario, expected_ids(scenario, sizes))
    if code != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
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
    "s1": "S1: tap-rhttp wall <= 2x floor wall",
    "s2": "S2: tap-rhttp wall <= 1.5x concurrent floor wall",
    "s3": "S3: tap-rhttp wall <= 1.3x floor wall",
    "s4": "S4: tap-rhttp peak RSS <= 150 MB at >= 0.5x floor records/s",
    "s5": "S5: tap-rhttp wall <= 1.3x concurrent floor wall",
}
TITLES = {
    "s1": "S1 throughput",
    "s2": "S2 fan-out",
    "s3": "S3 faults",
    "s4": "S4 one body",
    "s5": "S5 children",
}


def target_met(scenario: str, rhttp: Result, floor: Result) -> tuple[bool, str]:
    ratio = rhttp.wall / floor.wall
    if scenario == "s1":
        return ratio <= 2.0, f"{ratio:.2f}x"
    if scenario == "s2":
        return ratio <= 1.5, f"{ratio:.2f}x"
    if scenario in ("s3", "s5"):
        return ratio <= 1.3, f"{ratio:.2f}x"
    speed = rhttp.rate / floor.rate
    return rhttp.rss_mb <= 150 and speed >= 0.5, f"{rhttp.rss_mb:.0f} MB, {speed:.2f}x floor rec/s"


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<15} {'contender':<10} {'wall s':>7} {'records':>8} {'rec/s':>9} "
        f"{'peak RSS':>9} {'CPU s':>6} {'reqs':>5} {'1st req':>7} {'x floor':>8}  verified"
    )
    print(header)
    print("-" * len(header))
    floors = {r.scenario: r for r in results if r.contender == "floor"}
    for r in results:
        floor = floors.get(r.scenario)
        ratio = f"{r.wall / floor.wall:.2f}" if floor else "-"
        check = "exactly once" if r.ok else f"FAILED: {r.problem}"
        print(
            f"{TITLES[r.scenario]:<15} {r.contender:<10} {r.wall:>7.2f} {r.records:>8} "
            f"{r.rate:>9,.0f} {r.rss_mb:>6.0f} MB {r.cpu:>6.2f} {r.requests:>5} "
            f"{r.first_request:>6.2f}s {ratio:>8}  "
            f"{check}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument(
        "--only", nargs="+", choices=["s1", "s2", "s3", "s4", "s5"], help="scenarios"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of floor and tap-rhttp")
    parser.add_argument("--no-sdk", action="store_true", help="skip the singer-sdk tap")
    parser.add_argument("--keep", action="store_true", help="keep the outputs (path printed)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    scenarios = args.only or ["s1", "s2", "s3", "s4", "s5"]
    contenders = ["floor", *([] if args.no_sdk else ["sdk"]), "tap-rhttp"]
    work = Path(tempfile.mkdtemp(prefix="rhttp-bench-"))
    print(
        f"tap-rhttp benchmark{' (quick)' if args.quick else ''}: python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; best wall of {args.repeat} runs (S3 and the SDK tap: 1)"
    )
    print(
        f"sizes: S1 {sizes['s1_pages']} pages x {sizes['s1_per_page']}; S2 "
        f"{sizes['s2_values']} values x {sizes['s2_pages']} pages x {sizes['s2_per_page']}, "
        f"{sizes['s2_delay_ms']} ms a request, max_concurrency {S2_CONCURRENCY}; S3 "
        f"{sizes['s3_pages']} pages x {sizes['s3_per_page']}, every 10th page 503 once "
        f"(Retry-After: 1); S4 one body of {sizes['s4_records']:,} records; S5 "
        f"{sizes['s5_pages']} parent pages x {sizes['s5_rows']} rows, one child page of "
        f"{sizes['s5_child_records']} per row, {sizes['s5_delay_ms']} ms a request, "
        f"max_concurrency {S5_CONCURRENCY}"
    )
    started = time.perf_counter()
    warm_up(work)
    fixture = Fixture(sizes)
    print(f"S4 body: {fixture.stats('-').get('s4_bytes', 0) / 1e6:.1f} MB")
    results: list[Result] = []
    try:
        for scenario in scenarios:
            # S3 is dominated by Retry-After waits: one run each is enough. Floor and
            # tap-rhttp take turns, so a busy spell on the machine hits both alike.
            rounds = 1 if scenario == "s3" else max(args.repeat, 1)
            runs: dict[str, list[Result]] = {c: [] for c in contenders}
            for attempt in range(rounds):
                for contender in contenders:
                    if contender == "sdk" and (attempt or scenario == "s5"):
                        continue  # the reference point runs once (and has no child stream)
                    result = measure(fixture, contender, scenario, sizes, work, attempt)
                    runs[contender].append(result)
                    problem = "" if result.ok else f"  FAILED: {result.problem}"
                    print(
                        f"  {scenario} {contender:<9} {result.wall:6.2f} s "
                        f"{result.rss_mb:5.0f} MB{problem}",
                        flush=True,
                    )
            for contender in contenders:
                if not runs[contender]:
                    continue
                failed = [r for r in runs[contender] if not r.ok]
                results.append(failed[0] if failed else min(runs[contender], key=lambda r: r.wall))
    finally:
        fixture.stop()
        if args.keep:
            print(f"outputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(results)
    print()
    all_ok = all(r.ok for r in results)
    by_key = {(r.scenario, r.contender): r for r in results}
    for scenario in scenarios:
        rhttp, floor = by_key.get((scenario, "tap-rhttp")), by_key.get((scenario, "floor"))
        if rhttp is None or floor is None:
            continue
        met, figure = target_met(scenario, rhttp, floor)
        all_ok &= met and rhttp.ok
        print(f"{'MET    ' if met else 'NOT MET'} {TARGETS[scenario]}: {figure}")
    if args.quick:
        print("(--quick: the targets are set for the full sizes, where start-up weighs less)")
        all_ok = all(r.ok for r in results)
    verified = "all records verified exactly once" if all(r.ok for r in results) else "FAILED"
    print(f"\n{verified}; benchmark took {time.perf_counter() - started:.0f} s")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
