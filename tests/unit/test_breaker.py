"""The circuit breaker of a Router's account, driven with bare floats (no loop)."""

from __future__ import annotations

import math

import pytest

import nanobanana_async as nb
from nanobanana_async._breaker import COOLDOWN, MAX_COOLDOWN, Breaker, Circuit


def opened(now: float = 0.0, random: float = 0.5) -> Breaker:
    breaker = Breaker(lambda: random)
    for _ in range(5):
        breaker.failed(now)
    return breaker


def test_five_faults_in_a_row_open_it_four_do_not() -> None:
    """Four faults leave it closed; the fifth in a row opens it; a success between resets."""
    breaker = Breaker(lambda: 0.5)
    for _ in range(4):
        breaker.failed(0.0)
    breaker.succeeded(0.0)
    for _ in range(4):
        breaker.failed(0.0)
    assert breaker.state is Circuit.CLOSED
    assert breaker.allow(0.0)
    breaker.failed(0.0)
    assert breaker.state is Circuit.OPEN
    assert not breaker.allow(1.0)


def test_half_of_twenty_attempts_in_a_minute_open_it() -> None:
    """Faults and successes alternating: 10 of 20 attempts within 60 s opens it; spread over
    more than 60 s the window never holds 20, so it stays closed."""
    breaker = Breaker(lambda: 0.5)
    for i in range(20):
        (breaker.failed if i % 2 else breaker.succeeded)(i * 1.0)
    assert breaker.state is Circuit.OPEN
    slow = Breaker(lambda: 0.5)
    for i in range(40):
        (slow.failed if i % 2 else slow.succeeded)(i * 4.0)
    assert slow.state is Circuit.CLOSED


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    """After the cooldown one caller gets the probe, the others wait; success closes it."""
    breaker = opened()
    assert breaker.ready_at(1.0) == COOLDOWN
    assert not breaker.allow(COOLDOWN - 0.01)
    assert breaker.allow(COOLDOWN)
    assert breaker.state is Circuit.HALF_OPEN
    assert not breaker.allow(COOLDOWN)
    assert breaker.ready_at(COOLDOWN) == math.inf
    breaker.succeeded(COOLDOWN + 1)
    assert breaker.state is Circuit.CLOSED
    assert breaker.allow(COOLDOWN + 1)


def test_a_failed_probe_doubles_the_cooldown_up_to_five_minutes() -> None:
    """Each failed probe reopens for twice as long: 60, 120, 240, then 300 s at most."""
    breaker = opened()
    now = COOLDOWN
    for expected in (60.0, 120.0, 240.0, MAX_COOLDOWN, MAX_COOLDOWN):
        assert breaker.allow(now)
        breaker.failed(now)
        assert breaker.ready_at(now) == now + expected
        now += expected


def test_a_probe_that_proves_nothing_is_released_for_another() -> None:
    """A 429 or a refused prompt on the probe lets the next caller probe instead."""
    breaker = opened()
    assert breaker.allow(COOLDOWN)
    breaker.released()
    assert breaker.allow(COOLDOWN)
    assert breaker.state is Circuit.HALF_OPEN


def test_the_cooldown_is_jittered_within_a_fifth() -> None:
    """random() 0 and 1 put the half-open at 24 s and 36 s (30 s ± 20 %)."""
    assert opened(random=0.0).ready_at(0.0) == COOLDOWN * 0.8
    assert math.isclose(opened(random=0.999999).ready_at(0.0), COOLDOWN * 1.2, rel_tol=1e-5)


def test_a_task_finishing_during_an_outage_does_not_close_it() -> None:
    """A success recorded while open (a task accepted before the outage) waits for the probe."""
    breaker = opened()
    breaker.succeeded(5.0)
    assert breaker.state is Circuit.OPEN
    assert not breaker.allow(6.0)


def test_a_circuit_another_process_opened_holds_here_and_doubles_from_its_cooldown() -> None:
    """hold_open() opens a closed circuit until the shared time, takes the larger cooldown,
    never shortens an open one, and leaves this process's own probe alone."""
    breaker = Breaker(lambda: 0.5)
    breaker.hold_open(40.0, 120.0, 10.0)
    assert breaker.state is Circuit.OPEN
    assert breaker.ready_at(10.0) == 40.0
    breaker.hold_open(20.0, 30.0, 10.0)
    assert breaker.ready_at(10.0) == 40.0
    assert breaker.allow(40.0)
    breaker.hold_open(100.0, 30.0, 40.0)
    assert breaker.state is Circuit.HALF_OPEN
    breaker.failed(41.0)
    assert breaker.ready_at(41.0) == 41.0 + 240.0
    expired = Breaker(lambda: 0.5)
    expired.hold_open(5.0, 30.0, 10.0)
    assert expired.state is Circuit.CLOSED


def test_circuit_policy_defaults_are_the_documented_numbers() -> None:
    """Without a policy a breaker opens after 5 faults in a row and cools down 30 s → 5 min."""
    policy = nb.CircuitPolicy()
    assert (policy.failures, policy.window, policy.ratio, policy.min_attempts) == (5, 60, 0.5, 20)
    assert (policy.cooldown, policy.max_cooldown) == (COOLDOWN, MAX_COOLDOWN) == (30.0, 300.0)
    assert Breaker(lambda: 0.5).policy == policy


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"failures": 0}, "whole number"),
        ({"failures": 2.5}, "whole number"),
        ({"min_attempts": True}, "whole number"),
        ({"ratio": 0.0}, r"in \(0, 1\]"),
        ({"ratio": 1.5}, r"in \(0, 1\]"),
        ({"ratio": math.nan}, r"in \(0, 1\]"),
        ({"window": 0}, "positive"),
        ({"cooldown": -1.0}, "positive"),
        ({"cooldown": math.inf}, "finite"),
        ({"cooldown": "3"}, "finite"),
        ({"cooldown": 10.0, "max_cooldown": 5.0}, "at least cooldown"),
    ],
)
def test_circuit_policy_refuses_bad_numbers(bad: dict[str, object], message: str) -> None:
    """Each bad number is a ConfigurationError naming the field, before any router exists."""
    with pytest.raises(nb.ConfigurationError, match=message):
        nb.CircuitPolicy(**bad)  # type: ignore[arg-type]


def test_a_policy_sets_the_thresholds_and_cooldowns() -> None:
    """failures=2 opens after two faults; cooldown 2 s (jitter at its middle) doubles to the
    4 s maximum after failed probes; the share rule follows ratio and min_attempts."""
    policy = nb.CircuitPolicy(failures=2, cooldown=2.0, max_cooldown=4.0)
    breaker = Breaker(lambda: 0.5, policy)
    breaker.failed(0.0)
    assert breaker.state is Circuit.CLOSED
    breaker.failed(0.0)
    assert breaker.state is Circuit.OPEN
    assert breaker.ready_at(0.0) == 2.0
    now = 2.0
    for expected in (4.0, 4.0):
        assert breaker.allow(now)
        breaker.failed(now)
        assert breaker.ready_at(now) == now + expected
        now += expected
    share = Breaker(lambda: 0.5, nb.CircuitPolicy(failures=100, ratio=0.25, min_attempts=4))
    for fault in (True, False, False):
        (share.failed if fault else share.succeeded)(0.0)
    assert share.state is Circuit.CLOSED
    share.succeeded(0.0)
    share.failed(0.0)  # 2 of 5 ≥ 25 %
    assert share.state is Circuit.OPEN
