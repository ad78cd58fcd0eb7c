"""The polling-ceiling model (``benchmarks.ceiling``): its figures rest on these properties."""

from __future__ import annotations

import math
import random

import attrs
import pytest

import nanobanana_async as nb
from benchmarks import ceiling
from benchmarks.scenarios import SCENARIO_1, paced_clairvoyant_wall
from nanobanana_async._limits import budget

SMALL = attrs.evolve(SCENARIO_1, tasks=200)
DIST = ceiling.Lognormal(SMALL.median, SMALL.sigma)
PLAN = ceiling.frontier(DIST, 0.1)  # the per-task optimal plan at 0.1 s of lag per check


def _policies(durations: list[float]) -> list[ceiling.Policy]:
    point = PLAN
    return [
        ceiling.Greedy(DIST),
        ceiling.Greedy(DIST, check_first_at=0.3),
        ceiling.Schedule((1.2, 1.7, 2.2), 0.4),
        ceiling.Schedule(point.ages[:-1], point.ages[-1] - point.ages[-2], spare=DIST),
        ceiling.ClientPlan(durations),
    ]


@pytest.mark.parametrize("seed", [1, 7])
def test_clairvoyant_policy_reproduces_the_paced_clairvoyant_wall(seed: int) -> None:
    """The model with a policy that checks at the exact finish takes the benchmark's own
    denominator's time: the model's pace, cap and bookkeeping are the benchmark's."""
    durations = ceiling.drawn_durations(SMALL, seed)
    limits = ceiling.limits_of(SMALL)
    got = ceiling.run(durations, limits, ceiling.Clairvoyant(durations))
    assert got.wall == pytest.approx(paced_clairvoyant_wall(durations, limits, SMALL.concurrent))
    assert got.checks_per_task == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_polling_policy_never_beats_the_clairvoyant_one(seed: int) -> None:
    """However it spends its requests, a client that sees a finish only by checking takes at
    least the clairvoyant's time and at least one check per task."""
    durations = ceiling.drawn_durations(SMALL, seed)
    limits = ceiling.limits_of(SMALL)
    floor = ceiling.run(durations, limits, ceiling.Clairvoyant(durations)).wall
    for policy in _policies(durations):
        got = ceiling.run(durations, limits, policy)
        assert got.wall >= floor, policy.name
        assert got.checks_per_task >= 1.0, policy.name
        assert len(got.lags) == len(durations), policy.name
        assert min(got.lags) >= 0.0, policy.name  # no check saw a task done before its finish


def test_the_pace_and_the_cap_are_never_exceeded_in_the_model() -> None:
    """No window of ``per`` seconds holds more sends than the pace's budget, and never more
    tasks are in flight than the cap, even for the greedy policy that spends every token."""
    regime = attrs.evolve(SMALL, requests=100, per=1.0, concurrent=20, tasks=200)
    limits = ceiling.limits_of(regime)
    durations = ceiling.drawn_durations(regime, 3)
    for policy in _policies(durations):
        got = ceiling.run(durations, limits, policy)
        sends = got.sends
        assert sends == sorted(sends)
        most, lo = 0, 0
        for hi, at in enumerate(sends):
            while sends[lo] <= at - regime.per:
                lo += 1
            most = max(most, hi - lo + 1)
        assert most <= budget(limits), policy.name
        assert got.peak_in_flight <= regime.concurrent, policy.name
        assert len(sends) == round(regime.tasks * (1 + got.checks_per_task))


def test_the_frontier_plan_costs_what_it_says() -> None:
    """The per-task plan's mean checks and lag, as the dynamic programme reports them, are
    what the plan gives (in closed form, and on 20,000 sampled latencies)."""
    point = PLAN
    checks, lag = ceiling.plan_cost(DIST, point.ages)
    assert checks == pytest.approx(point.checks, rel=1e-9)
    assert lag == pytest.approx(point.lag, rel=1e-9)
    rng = random.Random(5)
    seen_checks = seen_lag = 0.0
    samples = 20_000
    for _ in range(samples):
        latency = math.exp(DIST.mu + DIST.sigma * rng.gauss(0.0, 1.0))
        count = next(i for i, age in enumerate(point.ages, 1) if age >= latency)
        seen_checks += count
        seen_lag += point.ages[count - 1] - latency
    assert seen_checks / samples == pytest.approx(point.checks, rel=0.02)
    assert seen_lag / samples == pytest.approx(point.lag, rel=0.03)


@pytest.mark.parametrize("price", [0.05, 0.2])
def test_no_plan_beats_the_frontier(price: float) -> None:
    """Random plans (any ages, any number of checks) never cost less than the frontier's plan
    for the same price per check, less the grid's step: the ceiling rests on this."""
    point = ceiling.frontier(DIST, price)
    best = point.lag + price * point.checks - 0.01
    rng = random.Random(11)
    for _ in range(300):
        ages = sorted(rng.uniform(0.3, 6.0) for _ in range(rng.randint(1, 8)))
        checks, lag = ceiling.plan_cost(DIST, [*ages, 14.0])
        assert lag + price * checks >= best
    # The plan itself, nudged, costs more too (a local optimum, not just a good plan).
    for i in range(min(4, len(point.ages) - 1)):
        for delta in (-0.05, 0.05):
            ages = list(point.ages)
            ages[i] += delta
            checks, lag = ceiling.plan_cost(DIST, sorted(ages))
            assert lag + price * checks >= point.lag + price * point.checks - 1e-9


def test_the_ceiling_is_where_budget_and_cap_bind_together() -> None:
    """The steady ceiling meets both bounds and sits where they cross: fewer checks would
    leave more lag than the cap allows, more would exceed the budget."""
    limits = nb.Limits(requests=1000, per=6.0, concurrent_tasks=100)
    points = [ceiling.frontier(DIST, p) for p in (0.05, 0.2, 0.3)] + [PLAN]
    rate = 161.0
    top = ceiling.ceiling_rate(points, rate, 100, DIST.mean)
    assert top.price <= rate / (1 + top.checks) + 1e-9
    assert top.price <= 100 / (DIST.mean + top.lag) + 1e-9
    assert rate / (1 + top.checks) == pytest.approx(100 / (DIST.mean + top.lag), rel=0.01)
    assert top.price < min(rate / 2, 100 / DIST.mean)
    assert limits.concurrent_tasks == 100


def test_planner_what_ifs_restore_the_constants() -> None:
    """A what-if of the planner's constants leaves the library as it found it, even when the
    block fails: the next client in the process plans as shipped."""
    from nanobanana_async._scheduler import _latency

    before = _latency._Z_STEP
    seen = []

    def fail_inside() -> None:
        with ceiling.planner_constants(_Z_STEP=0.05):
            seen.append(_latency._Z_STEP)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen == [0.05]
    assert before == _latency._Z_STEP
