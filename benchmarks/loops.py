"""CPU and event-loop turns per request, on asyncio and on uvloop, of two versions of the client
side by side with the plain aiohttp loop: ``python -m benchmarks.loops``.

Every measurement runs in a fresh subprocess (the simulator in a thread of it, so only the
client thread's CPU counts), interleaved: run 1 of every (version, loop), then run 2, ... The
other version is the package as committed at ``--base`` (default ``main``), exported with
``git archive`` to a temporary folder and put first on the subprocess's path; this folder's
benchmark code drives both. Loop turns are the client thread's ``epoll_wait``/``epoll_pwait``
calls (one per iteration of either loop), counted by ``perf stat`` on the kernel's syscall
tracepoints for that thread alone (no slowdown; "-" where perf or its tracepoints are missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("asyncio", "uvloop")


def _child(args: argparse.Namespace) -> None:
    """One measurement in this process: print a JSON row."""
    from . import scenarios

    regime = scenarios.CPU_REGIME
    if args.regime == "large":
        # The budget far above what the run needs: nothing waits on the limits.
        regime = attrs.evolve(regime, name="large", requests=1_000_000)
    regime = attrs.evolve(regime, tasks=args.tasks)
    tracer = None
    if shutil.which("perf") is not None:
        tracer = subprocess.Popen(  # noqa: S603  perf on this thread, fixed arguments
            [  # noqa: S607  perf from PATH, found by shutil.which above
                "perf",
                "stat",
                "-x,",
                "-e",
                "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait",
                "-t",
                str(threading.get_native_id()),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # attached before the run starts
    sim = scenarios._simulator(regime, seed=4).start_in_thread()
    try:
        factory = None
        if args.loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            cpu, ok = runner.run(scenarios._client_cpu(args.who, sim, regime))
    finally:
        sim.stop_thread()
    turns = None
    if tracer is not None:
        tracer.send_signal(signal.SIGINT)
        counts = re.findall(r"^(\d+),", tracer.communicate()[1], re.M)
        turns = sum(int(count) for count in counts) if counts else None
    requests = sim.stats.total_requests
    print(
        json.dumps(
            {
                "requests": requests,
                "tasks": ok,
                "cpu_us_per_request": cpu / max(requests, 1) * 1e6,
                "cpu_us_per_task": cpu / max(ok, 1) * 1e6,
                "turns": turns,
            }
        )
    )


def _export(rev: str, into: Path) -> Path:
    """The package as committed at ``rev``, in ``into``."""
    archive = subprocess.run(  # noqa: S603  git, fixed arguments
        ["git", "-C", str(ROOT), "archive", rev, "nanobanana_async"],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # noqa: S603, S607
    return into


def _run(version: Path, who: str, loop: str, regime: str, tasks: int) -> dict[str, Any]:
    # Run from elsewhere: ``-m`` puts the working folder first on the path, before the version.
    env = dict(os.environ, PYTHONPATH=f"{version}{os.pathsep}{ROOT}")
    command = [sys.executable, "-m", "benchmarks.loops", "--child", "--who", who, "--loop", loop]
    command += ["--regime", regime, "--tasks", str(tasks)]
    done = subprocess.run(  # noqa: S603  our own interpreter and module
        command, check=True, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.2f} ({low:.2f}-{high:.2f})"


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loops", description=__doc__)
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1200)
    parser.add_argument("--regime", choices=("cpu", "large"), default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--who", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        versions = {args.base: _export(args.base, Path(folder)), "this": ROOT}
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run in range(args.runs):
            for loop in LOOPS:
                plain = _run(ROOT, "plain", loop, args.regime, args.tasks)
                rows.setdefault(("plain aiohttp", loop), []).append(plain)
                for name, path in versions.items():
                    row = _run(path, "ours", loop, args.regime, args.tasks)
                    for unit in ("request", "task"):
                        mine, theirs = row[f"cpu_us_per_{unit}"], plain[f"cpu_us_per_{unit}"]
                        row[f"vs_plain_{unit}"] = mine / theirs
                    rows.setdefault((name, loop), []).append(row)
                print(f"run {run + 1}/{args.runs} {loop} done", file=sys.stderr)
    print(f"\n{args.regime}, {args.tasks} tasks, {args.runs} interleaved runs: median (range)")
    print(
        "| client | loop | requests/task | CPU µs/request | CPU µs/task | ×plain per request "
        "| ×plain per task | loop turns/request |"
    )
    print("|" + "---|" * 8)
    for (name, loop), measured in rows.items():
        per_task = [r["requests"] / max(r["tasks"], 1) for r in measured]
        cells = [
            name,
            loop,
            _spread(per_task),
            _spread([r["cpu_us_per_request"] for r in measured]),
            _spread([r["cpu_us_per_task"] for r in measured]),
            _spread([r.get("vs_plain_request", 1.0) for r in measured]),
            _spread([r.get("vs_plain_task", 1.0) for r in measured]),
            _spread([r["turns"] / r["requests"] for r in measured if r["turns"] is not None]),
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
