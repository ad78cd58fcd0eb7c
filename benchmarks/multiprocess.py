"""``python -m benchmarks.multiprocess``: worker processes on one key through one Redis, beside one
process doing the same prompts alone, against one simulator (needs redis-server on PATH).

Each worker is the real command line (`nanobanana batch … --coordinator URL`) with its own
journal; one of them is SIGKILLed mid-run and started again from its journal. Printed: the
throughput ratio (one process's wall time over the workers'), the simulator's 429s, busiest
window and most tasks at once, creates and duplicate creates, the Redis round trips per task
(from the server's command statistics) and the added latency of one grant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nanobanana_async as nb
from nanobanana_async._clock import DEFAULT_CLOCK
from nanobanana_async._scheduler import _redis
from nanobanana_async.testing import Latency, ServerLimits, Simulator
from tests.redis_server import RedisServer


def installed_like(python: str = sys.executable) -> dict[str, str]:
    """The workers' environment, with the package's bytecode written once beforehand.

    An installed wheel has its modules compiled; a checkout run with PYTHONDONTWRITEBYTECODE
    (set on the machines these figures come from) compiles all of them again at every start:
    0.13 s of CPU per process (median of 16), which four workers starting at once pay four times.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(  # noqa: S603  our own interpreter
        [
            python,
            "-I",  # the package the interpreter installed, not one in the current folder
            "-c",
            "import compileall, os, nanobanana_async; "
            "compileall.compile_dir(os.path.dirname(nanobanana_async.__file__), quiet=1)",
        ],
        env=env,
        check=True,
    )
    return env


def _batch(
    prompts: Path, out: Path, sim: Simulator, args: argparse.Namespace, coordinator: str | None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "nanobanana_async",
        "batch",
        str(prompts),
        "--out",
        str(out),
        "--provider",
        "apixo",
        "--requests",
        str(args.requests),
        "--per",
        str(args.per),
        "--concurrent",
        str(args.concurrent),
    ]
    if coordinator is not None:
        command += ["--coordinator", coordinator]
    env = {**args.env, "NANOBANANA_API_KEY": sim.api_key, "NANOBANANA_BASE_URL": sim.base_url}
    return subprocess.Popen(  # noqa: S603  our own interpreter and command line
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _simulator(args: argparse.Namespace) -> Simulator:
    sim = Simulator(
        "apixo",
        latency=Latency(median=args.latency, sigma=0.25),
        limits=ServerLimits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent),
        record_timeline=True,
    )
    return sim.start_in_thread()


def _sim_row(sim: Simulator, started: float, wall: float, per: float) -> dict[str, Any]:
    stats = sim.stats
    # The simulator's loop clock is time.monotonic(), as ``started`` is.
    first = min(stats.arrivals, default=started) - started
    return {
        "wall_s": round(wall, 1),
        "first_request_s": round(first, 2),
        "creates": stats.creates,
        "duplicate_creates": stats.duplicate_creates,
        "server_429s": stats.rate_limited,
        "max_requests_in_window": stats.max_window,
        "max_concurrent_server": stats.max_concurrent,
        "requests_per_task": round(stats.total_requests / max(1, stats.creates), 2),
        # Requests the server saw in each window-long span from the first (how much of the
        # budget was used while prompts waited).
        "requests_per_window": _per_window(stats.arrivals, per),
    }


def _per_window(arrivals: list[float], per: float) -> list[int]:
    if not arrivals:
        return []
    first = min(arrivals)
    counts: list[int] = []
    for at in arrivals:
        n = int((at - first) // per)
        counts.extend([0] * (n + 1 - len(counts)))
        counts[n] += 1
    return counts


def _write_prompts(folder: Path, name: str, tag: str, count: int) -> Path:
    path = folder / f"{name}.txt"
    path.write_text("".join(f"{tag} prompt {i}, a small orange cat\n" for i in range(count)))
    return path


def _outcomes(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    manifest = out / "results.jsonl"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            status = json.loads(line).get("status", "?")
            counts[status] = counts.get(status, 0) + 1
    return counts


async def _grant_latency(url: str, n: int = 300) -> float:
    redis = _redis.connect(url)
    ledger = _redis.RedisLedger(
        nb.Limits(requests=10**6, per=60.0),
        DEFAULT_CLOCK,
        redis=redis,
        prefix="nanobanana:bench-latency",
        max_wait=5.0,
    )
    await ledger.acquire_request()  # connect and load the scripts
    started = time.perf_counter()
    for _ in range(n):
        await ledger.acquire_request()
    elapsed = time.perf_counter() - started
    await ledger.aclose()
    return elapsed / n


def _redis_calls(url: str) -> int:
    """Round trips the ledger made: script calls plus the pipelined lease updates (a ZREM or
    ZADD XX batch is one round trip for many, so counting its commands overstates them)."""

    async def read() -> int:
        redis = _redis.connect(url)
        try:
            info = await redis.info("commandstats")
        finally:
            await redis.aclose()
        # Commands run inside the scripts count under their own names; only the client's
        # calls are round trips.
        return int(info.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
            info.get("cmdstat_zrem", {}).get("calls", 0)
        )

    return asyncio.run(read())


def _alone(args: argparse.Namespace, folder: Path, run: int) -> dict[str, Any]:
    sim = _simulator(args)
    prompts = _write_prompts(folder, f"alone{run}", "alone", args.workers * args.prompts)
    started = time.monotonic()
    _batch(prompts, folder / f"alone{run}", sim, args, None).wait()
    wall = time.monotonic() - started
    sim.stop_thread()
    return {**_sim_row(sim, started, wall, args.per), **_outcomes(folder / f"alone{run}")}


def _together(args: argparse.Namespace, folder: Path, url: str, run: int) -> dict[str, Any]:
    sim = _simulator(args)
    calls_before = _redis_calls(url)
    files = [
        _write_prompts(folder, f"r{run}w{n}", f"worker{n}", args.prompts)
        for n in range(args.workers)
    ]
    outs = [folder / f"r{run}w{n}" for n in range(args.workers)]
    started = time.monotonic()
    procs = [_batch(files[n], outs[n], sim, args, url) for n in range(args.workers)]
    finished: dict[int, float] = {}
    if args.kill_after > 0:
        time.sleep(args.kill_after)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        procs[0] = _batch(files[0], outs[0], sim, args, url)
    while len(finished) < len(procs):
        for n, proc in enumerate(procs):
            if n not in finished and proc.poll() is not None:
                finished[n] = time.monotonic() - started
        time.sleep(0.02)
    together = max(finished.values())
    calls = _redis_calls(url) - calls_before
    sim.stop_thread()
    outcomes: dict[str, int] = {}
    for out in outs:
        for status, count in _outcomes(out).items():
            outcomes[status] = outcomes.get(status, 0) + count
    # Workers of equal demand should finish together: the spread is (last - first) / last,
    # over the workers never killed (the killed one's rerun starts late by design).
    equal = [finished[n] for n in range(len(procs)) if n > 0 or args.kill_after <= 0]
    # Each worker's first create the simulator accepted (its prompts carry its tag): four
    # interpreters starting at once on a loaded machine get going seconds apart, so the spread
    # is also given from each worker's own first create.
    firsts = {
        n: min(
            (
                t.created
                for t in sim._book.tasks.values()
                if t.accepted.prompt.startswith(f"worker{n} ")
            ),
            default=started,
        )
        - started
        for n in range(len(procs))
    }
    spans = [finished[n] - firsts[n] for n in range(len(procs)) if n > 0 or args.kill_after <= 0]
    return {
        **_sim_row(sim, started, together, args.per),
        **outcomes,
        "worker_finish_s": [round(finished[n], 1) for n in range(len(procs))],
        "finish_spread": round((max(equal) - min(equal)) / max(equal), 3),
        "worker_first_create_s": [round(firsts[n], 1) for n in range(len(procs))],
        "spread_from_first_create": round((max(spans) - min(spans)) / max(spans), 3),
        "redis_round_trips_per_task": round(calls / max(1, sim.stats.creates), 2),
    }


def _span(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run both arms (interleaved, ``--repeat`` times) and print one JSON report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multiprocess")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=150, help="per worker")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--per", type=float, default=10.0)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--latency", type=float, default=1.0, help="median task seconds")
    parser.add_argument("--kill-after", type=float, default=2.5, help="seconds; 0: no kill")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of both arms, interleaved (load drifts)"
    )
    parser.add_argument("--skip-alone", action="store_true", help="only the workers' arm")
    parser.add_argument(
        "--from-source",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE as it is (the figures before 2026-12-07)",
    )
    args = parser.parse_args(argv)
    args.env = dict(os.environ) if args.from_source else installed_like()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.stderr.write("redis-server not found (Debian: apt-get install redis-server)\n")
        return 2
    settings = {k: v for k, v in vars(args).items() if k != "env"}
    report: dict[str, Any] = {"settings": settings, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        redis = RedisServer(binary, folder)
        redis.start()
        try:
            for run in range(args.repeat):
                row: dict[str, Any] = {"load_1min": round(os.getloadavg()[0], 2)}
                if not args.skip_alone:
                    row["one_process"] = _alone(args, folder, run)
                row["workers"] = _together(args, folder, redis.url, run)
                if not args.skip_alone:
                    alone, workers = row["one_process"], row["workers"]
                    ratio = alone["wall_s"] / workers["wall_s"]
                    row["throughput_ratio_workers_to_one"] = round(ratio, 3)
                    # From the first request the simulator saw to the last worker's exit: the
                    # coordination's cost without the start of four interpreters at once,
                    # which on a loaded 2-core machine took 2-11 s against 1-2 s for one.
                    active = (alone["wall_s"] - alone["first_request_s"]) / (
                        workers["wall_s"] - workers["first_request_s"]
                    )
                    row["active_ratio"] = round(active, 3)
                report["runs"].append(row)
                sys.stderr.write(json.dumps(row) + "\n")
            latency = asyncio.run(_grant_latency(redis.url))
            report["grant_latency_us"] = round(latency * 1e6)
        finally:
            redis.stop()
    runs = report["runs"]
    if not args.skip_alone:
        report["ratio_range"] = _span([r["throughput_ratio_workers_to_one"] for r in runs])
        report["active_ratio_range"] = _span([r["active_ratio"] for r in runs])
    report["finish_spread_range"] = _span([r["workers"]["finish_spread"] for r in runs])
    report["spread_from_first_create_range"] = _span(
        [r["workers"]["spread_from_first_create"] for r in runs]
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
