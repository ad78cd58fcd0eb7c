"""The polling-ceiling model draws the very latencies the benchmark's simulator draws."""

from __future__ import annotations

import attrs
import pytest

import nanobanana_async as nb
from benchmarks import ceiling, scenarios


@pytest.mark.parametrize("seed", [1, 2])
async def test_drawn_durations_are_the_simulators(seed: int) -> None:
    """Scenario 1's simulator, seeded as the benchmark seeds it, gives its tasks (in creation
    order) the durations ``ceiling.drawn_durations`` computes without I/O."""
    regime = attrs.evolve(scenarios.SCENARIO_1, tasks=12)
    async with (
        scenarios._simulator(regime, seed) as sim,
        nb.Client(
            "apixo",
            api_key=sim.api_key,
            base_url=sim.base_url,
            limits=ceiling.limits_of(regime),
        ) as client,
    ):
        for i in range(regime.tasks):  # one at a time: creation order is prompt order
            await client.submit(nb.ImageRequest(prompt=f"prompt {i}"))
        drawn = [finish - created for created, finish in sim.stats.spans]
    # finish - created on the loop's clock: equal to the last few bits
    assert drawn == pytest.approx(ceiling.drawn_durations(regime, seed), rel=1e-9)
