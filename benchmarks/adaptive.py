"""``python -m benchmarks.adaptive``: a client told nothing learns the account's limits (issue 19).

One simulated account of 600 requests / 10 s and 50 tasks at once (median task 1 s), 600
prompts, four runs side by side: the client told the limits and the client left on the default
``Limits`` (10,000 / 60 s, 1,000 tasks), each with the in-memory ledger and through a Redis
coordinator (a ``redis-server`` on PATH is started on a free port). Printed per run: wall time,
the simulator's 429s, busiest window and most tasks at once, the limits learned; and per
backend the ratio of the told client's wall time to the default one's (1.0: as fast).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nanobanana_async as nb
from nanobanana_async.testing import Latency, ServerLimits, Simulator
from tests.redis_server import RedisServer

ACCOUNT = ServerLimits(requests=600, per=10.0, concurrent_tasks=50)
TOLD = nb.Limits(requests=600, per=10.0, concurrent_tasks=50)


async def run(prompts: int, *, told: bool, coordinator: str | None, seed: int) -> dict[str, Any]:
    """One client's run of ``prompts`` against a fresh simulator; its summary row."""
    sim = Simulator("apixo", latency=Latency(median=1.0, sigma=0.3), limits=ACCOUNT, seed=seed)
    async with sim:
        options: dict[str, Any] = {"limits": TOLD} if told else {}
        if coordinator is not None:
            options["coordinator"] = coordinator
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, **options
        ) as client:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(client.generate(f"prompt {i}") for i in range(prompts)), return_exceptions=True
            )
            wall = time.perf_counter() - start
            learned = client.statistics().effective_limits
    ok = sum(isinstance(r, nb.ImageResult) for r in results)
    return {
        "ledger": "redis" if coordinator else "memory",
        "limits": "told" if told else "default",
        "succeeded": ok,
        "wall_s": round(wall, 2),
        "requests_per_task": round(sim.stats.total_requests / max(ok, 1), 2),
        "checks_per_task": round(sim.stats.requests["status"] / max(ok, 1), 2),
        "server_429s": sim.stats.rate_limited,
        "max_window": sim.stats.max_window,
        "max_running": sim.stats.max_concurrent,
        "learned": f"{learned.requests}/{learned.per:g}s, {learned.concurrent_tasks} tasks",
    }


async def _flush(url: str) -> None:
    from nanobanana_async._scheduler import _redis

    redis = _redis.connect(url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adaptive")
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-redis", action="store_true", help="in-memory ledger only")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        server: RedisServer | None = None
        binary = shutil.which("redis-server")
        if not args.no_redis:
            if binary is None:
                sys.stderr.write("redis-server not found (Debian: apt-get install redis-server)\n")
                return 2
            server = RedisServer(binary, Path(folder))
            server.start()
        try:
            urls: list[str | None] = [None] + ([server.url] if server is not None else [])
            for url in urls:
                for told in (True, False):
                    if url is not None:
                        asyncio.run(_flush(url))  # each run starts from an empty account
                    rows.append(
                        asyncio.run(run(args.prompts, told=told, coordinator=url, seed=args.seed))
                    )
        finally:
            if server is not None:
                server.stop()
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for ledger in ("memory", "redis"):
        pair = {r["limits"]: r for r in rows if r["ledger"] == ledger}
        if len(pair) == 2:
            ratio = pair["told"]["wall_s"] / pair["default"]["wall_s"]
            print(f"{ledger}: default limits reach {ratio:.2f} of the told client's pace")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
