"""GCRA pacing: no window over the limit, even pacing, and pauses after a 429."""

from __future__ import annotations

import bisect
import random

import pytest

from nanobanana_async import Limits
from nanobanana_async._limits import Gcra, pacing


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    for i, t in enumerate(times):
        j = bisect.bisect_left(times, t + window - 1e-9)
        best = max(best, j - i)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_no_window_exceeds_the_limit(seed: int) -> None:
    """Randomized demand never gets more than `requests` sends into any `per` window."""
    rng = random.Random(seed)
    limits = Limits(
        requests=rng.choice([50, 600, 1000, 10_000]), per=rng.choice([1.0, 6.0, 10.0, 60.0])
    )
    gcra = Gcra(*pacing(limits))
    now = 0.0
    sends: list[float] = []
    for _ in range(limits.requests * 3):
        now += rng.expovariate(limits.requests / limits.per * 2)  # demand at twice the rate
        if rng.random() < 0.02:
            now += limits.per * rng.random()  # idle spells allow a burst afterwards
        sends.append(gcra.reserve(now))
    sends.sort()
    assert _max_in_window(sends, limits.per) <= limits.requests


def test_pacing_is_even_not_a_burst() -> None:
    """After the small burst, requests are spaced by the interval."""
    limits = Limits(requests=600, per=10.0)
    interval, burst = pacing(limits)
    gcra = Gcra(interval, burst)
    times = [gcra.reserve(0.0) for _ in range(100)]
    assert times[:burst] == [0.0] * burst
    gaps = [b - a for a, b in zip(times[burst:], times[burst + 1 :], strict=False)]
    assert all(g == pytest.approx(interval) for g in gaps)
    assert 600 * 0.95 <= limits.per / interval + burst <= 600


def test_pause_holds_every_request() -> None:
    """A 429 pause moves every later send past it; the pace after it is unchanged."""
    interval, burst = pacing(Limits(requests=100, per=10.0))
    gcra = Gcra(interval, burst)
    gcra.pause(5.0)
    assert gcra.is_paused(4.9)
    assert not gcra.is_paused(5.0)
    first = gcra.reserve(1.0)
    second = gcra.reserve(1.0)
    assert first >= 5.0
    assert second - first == pytest.approx(interval)


def test_unreserve_gives_back_only_the_latest_booking() -> None:
    """A booking undone right after it was made frees its turn for the next request; once
    another was booked after it, undoing it changes nothing (its turn stays spent)."""
    gcra = Gcra(1.0, 1)
    assert gcra.reserve(0.0) == 0.0
    assert gcra.reserve(0.0) == 1.0
    gcra.unreserve(gcra.booked)
    assert gcra.reserve(0.0) == 1.0  # the undone turn, again
    stale = gcra.booked
    assert gcra.reserve(0.0) == 2.0
    gcra.unreserve(stale)
    assert gcra.reserve(0.0) == 3.0
