"""Learned latency carried over between runs of the process, on the real clock against the
loopback simulator (which runs in its own thread, so it outlives each ``asyncio.run``).

Tasks take 1.6 s. Probing from apixo's 10 s advice checks a new model's first tasks at ages
0.6, 0.9, 1.4 and 2.1 s, so they are seen about 0.5 s after they finish; a model learned from
them checks at 1.5 s, then every few hundredths of a second: seen within about 0.1 s.
"""

from __future__ import annotations

import asyncio

import nanobanana_async as nb
from nanobanana_async._scheduler._memory import MEMORY
from nanobanana_async.testing import Latency, Simulator

LATENCY = Latency(median=1.6, sigma=0.01)
SLOW_LAG = 0.3  # between the probes' ~0.5 s and a learned model's ~0.1 s


def _run(sim: Simulator, prompts: list[str]) -> None:
    async def main() -> None:
        async with nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url) as client:
            await asyncio.gather(*(client.generate(p, timeout=30) for p in prompts))

    asyncio.run(main())


def _key(sim: Simulator) -> tuple[str, str, str]:
    return ("apixo", sim.base_url, "nano-banana-2")


def test_a_second_run_starts_from_the_model_the_first_learned() -> None:
    """After one asyncio.run learned the model, a new client in the next checks its first task
    at the learned latency, not by probing from the advice."""
    sim = Simulator("apixo", latency=LATENCY, seed=3).start_in_thread()
    try:
        _run(sim, ["a cat", "a dog", "a fox"])
        learned = MEMORY.recall(_key(sim))
        first_lags = list(sim.stats.lags)
        _run(sim, ["a hen"])
        second_lag = sim.stats.lags[-1]
    finally:
        sim.stop_thread()
    assert learned is not None
    assert learned.samples == 3
    assert min(first_lags) > SLOW_LAG  # the first run probed: without carry-over, so would this
    assert second_lag < SLOW_LAG


def test_a_simulator_restarted_on_the_same_url_is_a_new_server() -> None:
    """A simulator starting on a URL forgets what was learned there: the next run probes from
    the advice again."""
    first = Simulator("apixo", latency=LATENCY, seed=3).start_in_thread()
    try:
        _run(first, ["a cat", "a dog", "a fox"])
    finally:
        first.stop_thread()
    assert MEMORY.recall(_key(first)) is not None
    port = int(first.origin.rsplit(":", 1)[1])
    second = Simulator("apixo", latency=LATENCY, seed=3, port=port).start_in_thread()
    try:
        assert second.base_url == first.base_url
        assert MEMORY.recall(_key(second)) is None
        _run(second, ["a hen"])
    finally:
        second.stop_thread()
    assert second.stats.lags[-1] > SLOW_LAG
