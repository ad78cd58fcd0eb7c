"""``python -m benchmarks.startup``: where a ``nanobanana batch --coordinator`` worker's time goes
before its first request, for one worker alone and for several started at once (needs
redis-server on PATH; does I/O).

Each worker is the real command line run by ``benchmarks/_startup_child.py``, which notes when
each step of the start began and ended; the simulator notes when each worker's first create
arrived. Printed: per step, the median over the workers of seconds since the process was
spawned. ``--python`` runs the workers with another interpreter (another checkout's venv), so
two versions can be measured side by side on the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nanobanana_async.testing import Latency, ServerLimits, Simulator
from tests.redis_server import RedisServer

from .multiprocess import installed_like

_CHILD = Path(__file__).with_name("_startup_child.py")


def _round(
    folder: Path, url: str, workers: int, args: argparse.Namespace, tag: str
) -> list[dict[str, Any]]:
    sim = Simulator(
        "apixo",
        latency=Latency(median=0.2, sigma=0.1),
        limits=ServerLimits(requests=600, per=10.0, concurrent_tasks=50),
    ).start_in_thread()
    env = {**args.env, "NANOBANANA_API_KEY": sim.api_key, "NANOBANANA_BASE_URL": sim.base_url}
    env.pop("PYTHONPATH", None)
    spawned: list[float] = []
    procs = []
    for n in range(workers):
        prompts = folder / f"{tag}-w{n}.txt"
        prompts.write_text("".join(f"{tag}w{n} prompt {i}\n" for i in range(args.prompts)))
        command = [
            args.python,
            str(_CHILD),
            str(folder / f"{tag}-w{n}.json"),
            "batch",
            str(prompts),
            "--out",
            str(folder / f"{tag}-w{n}"),
            "--provider",
            "apixo",
            "--requests",
            "600",
            "--per",
            "10",
            "--concurrent",
            "50",
            "--coordinator",
            url,
        ]
        spawned.append(time.monotonic())
        # From the folder, not the checkout: the worker imports the package its venv installed.
        procs.append(
            subprocess.Popen(  # noqa: S603  our own interpreter and command line
                command,
                env=env,
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    for proc in procs:
        proc.wait()
    rows = []
    for n in range(workers):
        stamps = json.loads((folder / f"{tag}-w{n}.json").read_text())
        created = [
            t.created
            for t in sim._book.tasks.values()
            if t.accepted.prompt.startswith(f"{tag}w{n} ")
        ]
        row = {
            name: round(at - spawned[n], 3)
            for name, at in stamps.items()
            if not name.endswith("_s")
        }
        row["cpu_to_first_send_s"] = round(stamps.get("cpu_to_first_send_s", float("nan")), 3)
        row["first_create_arrived"] = round(min(created, default=float("nan")) - spawned[n], 3)
        rows.append(row)
    sim.stop_thread()
    return rows


def _median(rows: list[dict[str, Any]]) -> dict[str, float]:
    names = sorted(
        {name for row in rows for name in row},
        key=lambda k: statistics.median([r[k] for r in rows if k in r]),
    )
    return {k: round(statistics.median([r[k] for r in rows if k in r]), 3) for k in names}


def main(argv: list[str] | None = None) -> int:
    """Run ``--repeat`` rounds of one worker alone, then ``--workers`` at once; print JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=20, help="per worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="the workers' interpreter")
    parser.add_argument(
        "--from-source", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as it is"
    )
    args = parser.parse_args(argv)
    args.env = dict(os.environ) if args.from_source else installed_like(args.python)
    binary = shutil.which("redis-server")
    if binary is None:
        sys.stderr.write("redis-server not found (Debian: apt-get install redis-server)\n")
        return 2
    settings = {k: v for k, v in vars(args).items() if k != "env"}
    report: dict[str, Any] = {"settings": settings, "load_1min": [], "alone": [], "together": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        redis = RedisServer(binary, folder)
        redis.start()
        try:
            for run in range(args.repeat):
                report["load_1min"].append(round(os.getloadavg()[0], 2))
                report["alone"] += _round(folder, redis.url, 1, args, f"a{run}")
                report["together"] += _round(folder, redis.url, args.workers, args, f"t{run}")
        finally:
            redis.stop()
    report["alone_median"] = _median(report["alone"])
    report["together_median"] = _median(report["together"])
    print(
        json.dumps(
            {k: report[k] for k in ("settings", "load_1min", "alone_median", "together_median")},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
