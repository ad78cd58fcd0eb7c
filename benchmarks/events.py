"""``python -m benchmarks.events``: the CPU cost of typed events per task, side by side.

Each round runs the same in-process tasks (submit, status checks, resolve against an instant
scripted provider, as scenario 4 does) with nothing listening, with an ``on_event`` callback
that does nothing, and with an ``events()`` stream read by another task; the rounds alternate
so that the machine's load falls on every variant alike. Prints the median CPU microseconds per
task of each variant and its ratio to the one with nothing listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import nanobanana_async as nb
from nanobanana_async import events
from nanobanana_async.testing import HttpRequest, HttpResponse, ScriptedTransport, json_response

from .scenarios import _apixo_done

_CREATED = json_response({"code": 200, "message": "success", "data": {"taskId": "t"}})
_DONE = _apixo_done("t")


def _instant(request: HttpRequest) -> HttpResponse:
    return _CREATED if request.kind == "submit" else _DONE


async def _round(variant: str, n: int) -> float:
    """CPU seconds for ``n`` tasks with ``variant`` listening."""
    seen = 0

    def count(event: events.Event) -> None:
        nonlocal seen
        seen += 1

    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n)
    # Passed only when used: the "none" variant runs on a version without events too.
    listen: dict[str, Any] = {"on_event": count} if variant == "on_event" else {}
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(_instant), limits=limits, **listen
    )
    async with client:
        reader = None
        if variant == "stream":
            stream = client.events(maxsize=10 * n)

            async def read() -> None:
                nonlocal seen
                async for _ in stream:
                    seen += 1

            reader = asyncio.ensure_future(read())
        cpu = time.process_time()
        await asyncio.gather(*(client.generate(f"p{i}") for i in range(n)))
        if reader is not None:
            await asyncio.sleep(0)  # the reader takes what is buffered
        cpu = time.process_time() - cpu
    if reader is not None:
        await reader
    assert (seen > 0) == (variant != "none")
    return cpu


def measure(n: int, rounds: int) -> dict[str, Any]:
    """Median CPU per task of each variant over alternating rounds."""
    variants = ("none", "on_event", "stream")
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            cpu[variant].append(asyncio.run(_round(variant, n)))
    base = statistics.median(cpu["none"])
    return {
        "tasks": n,
        "rounds": rounds,
        **{f"{v}_cpu_us_per_task": round(statistics.median(cpu[v]) / n * 1e6, 1) for v in cpu},
        **{f"{v}_ratio": round(statistics.median(cpu[v]) / base, 3) for v in variants[1:]},
    }


def main() -> None:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.events")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(measure(args.tasks, args.rounds)))


if __name__ == "__main__":
    main()
