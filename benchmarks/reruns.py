"""``python -m benchmarks.reruns``: kill -9 and rerun from the journal, many cycles (issue 19).

One simulated account (by default 60 requests / 2 s and 5 tasks at once, median task 0.8 s)
and one worker process at a time: a client told the account's limits, with a journal, on
``--prompts`` prompts. Each cycle starts the worker, SIGKILLs it after a random 0.3-2.0 s and
starts the next one at once from the same journal; after ``--cycles`` kills the last worker
runs to the end. Told its limits, a worker spends idle requests on earlier checks, so the
account's window is nearly full when it is killed: a rerun that forgot the killed run's
requests overfills it. Run without a coordinator and through Redis (a ``redis-server`` on
PATH is started on a free port). Printed per mode: the simulator's 429s, busiest window and
most tasks at once against the limits, creates and duplicate creates, and how the last run's
prompts ended.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nanobanana_async.testing import Latency, ServerLimits, Simulator
from tests.redis_server import RedisServer

WORKER = """
import asyncio, json, sys
import nanobanana_async as nb

async def main(base_url, key, coordinator, journal, count, requests, per, cap):
    async with nb.Client(
        "apixo", api_key=key, base_url=base_url, coordinator=coordinator or None,
        journal=journal,
        limits=nb.Limits(requests=int(requests), per=float(per), concurrent_tasks=int(cap)),
        retry=nb.RetryPolicy(base_delay=0.01, max_delay=0.05), timeouts=nb.Timeouts(task=20),
    ) as client:
        print("started", flush=True)
        results = await asyncio.gather(
            *(client.generate(f"prompt {i}") for i in range(int(count))), return_exceptions=True
        )
    print(json.dumps([type(r).__name__ for r in results]), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def cycles(
    limits: ServerLimits,
    *,
    cycles: int,
    prompts: int,
    coordinator: str | None,
    folder: Path,
    seed: int,
) -> dict[str, Any]:
    """``cycles`` kills and reruns, then a run to the end; the simulator's counts."""
    rng = random.Random(seed)
    journal = folder / f"journal-{'redis' if coordinator else 'alone'}-{seed}.db"
    sim = Simulator(
        "apixo", latency=Latency(median=0.8, sigma=0.4), limits=limits, seed=seed
    ).start_in_thread()
    try:

        def worker() -> subprocess.Popen[bytes]:
            argv = [sys.executable, "-c", WORKER, sim.base_url, sim.api_key, coordinator or ""]
            argv += [str(journal), str(prompts), str(limits.requests), str(limits.per)]
            argv += [str(limits.concurrent_tasks)]
            return subprocess.Popen(  # noqa: S603  our own interpreter and script
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

        start = time.perf_counter()
        for _ in range(cycles):
            proc = worker()
            assert proc.stdout is not None
            proc.stdout.readline()  # "started"
            time.sleep(rng.uniform(0.3, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        out, err = worker().communicate(timeout=600)
        wall = time.perf_counter() - start
        lines = out.decode().strip().splitlines()
        outcomes = Counter(json.loads(lines[-1])) if lines else Counter({"crashed": 1})
        if not lines:
            sys.stderr.write(err.decode()[-2000:])
        stats = sim.stats
    finally:
        sim.stop_thread()
    return {
        "ledger": "redis" if coordinator else "memory",
        "cycles": cycles,
        "wall_s": round(wall, 1),
        "server_429s": stats.rate_limited,
        "max_window": f"{stats.max_window}/{limits.requests}",
        "max_running": f"{stats.max_concurrent}/{limits.concurrent_tasks}",
        "creates": stats.creates,
        "duplicates": stats.duplicate_creates,
        "outcomes": dict(outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reruns")
    parser.add_argument("--cycles", type=int, default=25)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--per", type=float, default=2.0)
    parser.add_argument("--concurrent", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-redis", action="store_true", help="without a coordinator only")
    args = parser.parse_args(argv)
    limits = ServerLimits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        server: RedisServer | None = None
        if not args.no_redis:
            binary = shutil.which("redis-server")
            if binary is None:
                sys.stderr.write("redis-server not found (Debian: apt-get install redis-server)\n")
                return 2
            server = RedisServer(binary, folder)
            server.start()
        try:
            urls: list[str | None] = [None] + ([server.url] if server is not None else [])
            for url in urls:
                rows.append(
                    cycles(
                        limits,
                        cycles=args.cycles,
                        prompts=args.prompts,
                        coordinator=url,
                        folder=folder,
                        seed=args.seed,
                    )
                )
        finally:
            if server is not None:
                server.stop()
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
