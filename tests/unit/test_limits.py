"""Request pacing: GCRA (no window over the limit, even pacing, pauses after a 429) and the
window log used for stated limits (whole-window bursts, never over a window)."""

from __future__ import annotations

import bisect
import random

import pytest

from nanobanana_async import Limits
from nanobanana_async._limits import Gcra, WindowLog, pacing, window
from nanobanana_async._scheduler._ledger import Ledger
from nanobanana_async.testing import FakeClock


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


@pytest.mark.parametrize("seed", range(8))
def test_window_log_never_overfills_a_window_and_spends_it_at_once(seed: int) -> None:
    """Stated limits: a whole window's budget may go at once (the provider counts a window,
    not a pace), and no window of ``per`` ever holds more than ``requests``, whatever mix of
    booked submits and taken checks, pauses and lowered limits comes."""
    rng = random.Random(seed)
    limits = Limits(requests=rng.choice([20, 100, 1000]), per=rng.choice([1.0, 6.0, 60.0]))
    budget, _ = window(limits)
    log = WindowLog(*window(limits))
    assert [log.reserve(0.0) for _ in range(budget)] == [0.0] * budget
    assert not log.try_take(0.0)
    sends = [0.0] * budget
    now = 0.0
    for _ in range(limits.requests * 3):
        now += rng.expovariate(limits.requests / limits.per * 2)
        roll = rng.random()
        if roll < 0.01:
            log.pause(now + rng.random() * limits.per)
        elif roll < 0.02:
            # A 429 taught a smaller, shorter window: the configured one still holds.
            log.fit(Limits(requests=max(1, limits.requests // 4), per=limits.per / 3))
        if rng.random() < 0.5:
            sends.append(log.reserve(now))
        elif log.try_take(now):
            sends.append(now)
    sends.sort()
    assert _max_in_window(sends, limits.per) <= limits.requests
    assert len(sends) > limits.requests  # it went on sending after the first window


def test_window_log_submits_booked_ahead_go_before_checks() -> None:
    """A submit that booked a later turn is not overtaken by a check taken before it."""
    log = WindowLog(2, 10.0)
    assert log.reserve(0.0) == 0.0
    assert log.reserve(0.0) == 0.0
    assert log.reserve(1.0) == 10.0  # the next turn: the first request leaves the window
    assert not log.try_take(10.0 - 1e-6)
    assert log.next_free() == 10.0


def test_stated_limits_spend_a_window_at_once_assumed_ones_are_paced() -> None:
    """The ledger of a client told its limits lets the window's budget go at once; one that
    only assumes the defaults spreads requests, so an account smaller than assumed (F36)
    answers its first 429 while few requests are out."""
    limits = Limits(requests=100, per=10.0)
    clock = FakeClock()
    stated = Ledger(limits, clock, bursts=True)
    assumed = Ledger(limits, clock)
    assert sum(stated.try_take_request(clock.now()) for _ in range(200)) == 98
    assert sum(assumed.try_take_request(clock.now()) for _ in range(200)) == 1
