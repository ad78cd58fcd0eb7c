"""A seeded soak run against the simulator with every fault switched on at a few percent."""

from __future__ import annotations

import asyncio
import os

import nanobanana_async as nb
from nanobanana_async.testing import Faults, Latency, ServerLimits, Simulator
from tests.chaos.conftest import fast_retry

TASKS = int(os.environ.get("NB_SOAK_TASKS", "1500"))


async def test_soak_every_fault_at_once() -> None:
    """Every prompt ends in a result or a typed error; no duplicate, no breach, nothing leaked."""
    faults = Faults(
        server_error=0.02,
        reset=0.02,
        reset_after_create=0.02,
        truncated=0.02,
        non_json=0.02,
        slow=0.02,
        slow_seconds=1.0,
        unknown_state=0.03,
        body_429=0.003,  # each one pauses the account for 1 s, as the policy says
    )
    server_limits = ServerLimits(requests=3000, per=10.0, concurrent_tasks=200)
    limits = nb.Limits(requests=3000, per=10.0, concurrent_tasks=200)
    prompts = [f"soak {i}" + (" [[fail]]" if i % 97 == 0 else "") for i in range(TASKS)]
    async with (
        Simulator(
            "apixo",
            latency=Latency(median=0.5, sigma=0.4),
            limits=server_limits,
            faults=faults,
            seed=11,
        ) as sim,
        nb.Client(
            "apixo",
            api_key=sim.api_key,
            base_url=sim.base_url,
            limits=limits,
            retry=fast_retry(),
            timeouts=nb.Timeouts(request=0.5),
        ) as client,
    ):
        outcomes = await asyncio.gather(
            *(client.generate(p, timeout=60) for p in prompts), return_exceptions=True
        )
        stats = client.statistics()
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leaked == []
    assert all(isinstance(o, nb.ImageResult | nb.NanoBananaError) for o in outcomes)
    results = [o for o in outcomes if isinstance(o, nb.ImageResult)]
    assert len(results) >= TASKS * 0.85
    # A prompt that fails never yields a result (its submit may also have been faulted).
    assert not any(isinstance(o, nb.ImageResult) for i, o in enumerate(outcomes) if i % 97 == 0)
    assert any(isinstance(o, nb.GenerationFailedError) for o in outcomes)
    # Every failure that lost track of a paid task says so, with a type the caller can act on.
    for o in outcomes:
        if isinstance(o, nb.TaskError):
            assert o.task_id
    assert sim.stats.duplicate_creates == 0
    assert sim.stats.requests["create"] >= sim.stats.creates
    assert sim.stats.max_window <= limits.requests
    assert sim.stats.max_concurrent <= limits.concurrent_tasks
    assert sim.stats.rate_limited == sim.stats.faults["body_429"]  # none from the real limits
    assert stats.in_flight == 0
    assert stats.pending == 0
