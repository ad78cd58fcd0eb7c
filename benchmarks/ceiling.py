"""``python -m benchmarks.ceiling``: how close any *polling* client can come to the paced
clairvoyant client on scenario 1 (issue 22's "concurrency-bound >= 0.90").

A discrete-event model with no I/O and no overheads, on scenario 1's exact drawn latencies
(the simulator's seeded draw, :func:`drawn_durations`) and the same denominator as the
benchmark (:func:`benchmarks.scenarios.paced_clairvoyant_wall`). In the model requests are
tokens of our own pace (the library's :class:`~nanobanana_async._limits.Gcra` with its 2%
margin and 1% burst), at most ``cap`` tasks are in flight, a create costs one token and a
task's slot is freed by the first check at or after its finish. Each polling policy but the
client's own planner (:class:`ClientPlan`) is told the TRUE latency distribution (more than
the client knows); none sees a finish before a check shows it.

Besides the simulated policies, :func:`frontier` computes the least mean lag a single task can
have for a given mean number of checks (any policy, adaptive or not: a task's checks can only
depend on its being still pending and on other, independent tasks), and :func:`ceiling_rate`
turns it into an upper bound on the steady throughput of every polling client: with ``k``
checks and a mean lag ``l`` per task, ``rate <= B / (1 + k)`` (the pace's budget) and
``rate <= C / (T + l)`` (Little's law on the cap).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import math
import random
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol

import attrs

import nanobanana_async as nb
from nanobanana_async._limits import Gcra, pacing
from nanobanana_async.testing import Latency

from .scenarios import SCENARIO_1, Regime, paced_clairvoyant_wall

SEEDS: Final = (1, 2, 3, 4, 5)
CLIENT_RATIO: Final = 0.844  # the client on scenario 1, seed 1 (benchmarks/README.md)
CREATE: Final = -1  # an action: send a create
WAIT: Final = -2  # an action: send nothing before the time given
_STEP: Final = 0.001  # seconds per entry of the distribution's tables


def drawn_durations(regime: Regime, seed: int) -> list[float]:
    """The latencies the simulator draws for ``regime``'s tasks, in creation order.

    The simulator draws from one ``random.Random(seed)``: per create, the duration, then 64
    bits for the task's id (no faults are configured, so nothing else is drawn).
    """
    rng = random.Random(seed)
    latency = Latency(median=regime.median, sigma=regime.sigma)
    durations = []
    for _ in range(regime.tasks):
        durations.append(latency.sample(rng))
        rng.getrandbits(64)
    return durations


def limits_of(regime: Regime) -> nb.Limits:
    """The client's limits for ``regime`` (the defaults' margin and burst)."""
    return nb.Limits(requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent)


class Lognormal:
    """The latency distribution, with tables of its CDF by the millisecond (fast look-ups)."""

    def __init__(self, median: float, sigma: float, *, horizon: float = 40.0) -> None:
        self.mu = math.log(median)
        self.sigma = sigma
        self.mean = median * math.exp(sigma**2 / 2)
        self._cdf = [self.cdf(i * _STEP) for i in range(int(horizon / _STEP) + 1)]

    def cdf(self, x: float) -> float:
        """P(latency <= x)."""
        if x <= 0.0:
            return 0.0
        return 0.5 * (1.0 + math.erf((math.log(x) - self.mu) / (self.sigma * math.sqrt(2.0))))

    def partial_mean(self, x: float) -> float:
        """E[latency; latency <= x]."""
        if x <= 0.0:
            return 0.0
        z = (math.log(x) - self.mu - self.sigma**2) / (self.sigma * math.sqrt(2.0))
        return self.mean * 0.5 * (1.0 + math.erf(z))

    def fast_cdf(self, x: float) -> float:
        """:meth:`cdf` rounded down to the millisecond (table look-up)."""
        i = int(x / _STEP)
        return self._cdf[i] if 0 <= i < len(self._cdf) else (0.0 if i < 0 else 1.0)

    def hazard(self, age: float, seen_pending_at: float) -> float:
        """P(finished by ``age`` | still pending at age ``seen_pending_at``)."""
        before = self.fast_cdf(seen_pending_at)
        return (self.fast_cdf(age) - before) / max(1.0 - before, 1e-12)


# ---------------------------------------------------------------------- the model


@attrs.define
class World:
    """The state a policy reads: tasks created so far, their finishes (hidden from polling
    policies: only :meth:`check` reads them), and what the checks saw."""

    durations: Sequence[float]
    cap: int
    created: list[float] = attrs.Factory(list)
    last_seen: list[float] = attrs.Factory(list)  # time of the last pending check, or creation
    checks: list[int] = attrs.Factory(list)
    in_flight: set[int] = attrs.Factory(set)
    done: int = 0
    peak: int = 0  # the most tasks in flight at once
    lags: list[float] = attrs.Factory(list)  # from each finish to the check that saw it
    seen: list[float] = attrs.Factory(list)  # when each task was seen finished, in order

    @property
    def can_create(self) -> bool:
        """A prompt waits and a slot is free."""
        return len(self.created) < len(self.durations) and len(self.in_flight) < self.cap

    def finish(self, task: int) -> float:
        """The task's true finish (the model's own: no polling policy reads it)."""
        return self.created[task] + self.durations[task]

    def create(self, now: float) -> int:
        task = len(self.created)
        self.created.append(now)
        self.last_seen.append(now)
        self.checks.append(0)
        self.in_flight.add(task)
        self.peak = max(self.peak, len(self.in_flight))
        return task

    def check(self, task: int, now: float) -> bool:
        """A status check of ``task`` at ``now``: True if it shows the task finished."""
        self.checks[task] += 1
        if now >= self.finish(task):
            self.lags.append(now - self.finish(task))
            self.seen.append(now)
            self.in_flight.discard(task)
            self.done += 1
            return True
        self.last_seen[task] = now
        return False


class Policy(Protocol):
    """Decides what the next request (a token of the pace, free at ``now``) is spent on."""

    name: str

    def choose(self, world: World, now: float, bucket_full: bool) -> tuple[int, float]:
        """``(CREATE, now)``, ``(task, now)`` to check it, or ``(WAIT, later)`` to wait for
        ``later > now``. ``bucket_full``: waiting now loses tokens (the burst is banked)."""
        ...

    def created(self, task: int, now: float) -> None:
        """``task`` was created at ``now``."""

    def pending(self, task: int, now: float) -> None:
        """A check at ``now`` saw ``task`` still running."""

    def finished(self, task: int, now: float) -> None:
        """A check at ``now`` saw ``task`` finished."""


@attrs.frozen
class Run:
    """One model run: wall time, checks per task, every send's time, the most tasks in
    flight at once, and each task's lag (finish to the check that saw it, in the order seen)."""

    wall: float
    checks_per_task: float
    sends: list[float]
    peak_in_flight: int
    lags: list[float]
    seen: list[float]

    def phases(self) -> tuple[float, float, float]:
        """Seconds to see the first 10% finished, then the middle 80%, then the rest."""
        n = len(self.seen)
        lo, hi = self.seen[n // 10], self.seen[n * 9 // 10]
        return lo, hi - lo, self.wall - hi

    @property
    def steady_rate(self) -> float:
        """Tasks a second seen finished over the middle 80% of them (no start, no tail), as
        the benchmark's ``steady_ratio`` counts them."""
        n = len(self.seen)
        lo, hi = self.seen[n // 10], self.seen[n * 9 // 10]
        return n * 0.8 / max(hi - lo, 1e-9)


def run(durations: Sequence[float], limits: nb.Limits, policy: Policy) -> Run:
    """Run ``policy`` on ``durations`` under ``limits``' pace and cap, until every task is
    seen finished; the wall time is the time of the check that sees the last one."""
    gcra = Gcra(*pacing(limits))
    world = World(durations, limits.concurrent_tasks or len(durations))
    sends: list[float] = []
    now = 0.0
    n = len(durations)
    while world.done < n:
        free = gcra.next_free()
        at = max(now, free)
        action, later = policy.choose(world, at, at >= free + gcra.tolerance)
        if action == WAIT:
            assert later > at, (policy.name, later, at)
            now = later
            continue
        now = gcra.reserve(at)
        sends.append(now)
        if action == CREATE:
            assert world.can_create
            policy.created(world.create(now), now)
        elif world.check(action, now):
            policy.finished(action, now)
        else:
            policy.pending(action, now)
    return Run(now, sum(world.checks) / n, sends, world.peak, world.lags, world.seen)


class Clairvoyant:
    """Knows every finish: creates while it may, else checks the earliest finish at that
    finish. The same greedy as :func:`benchmarks.scenarios.paced_clairvoyant_wall`."""

    name = "clairvoyant (knows every finish)"

    def __init__(self, durations: Sequence[float]) -> None:
        self.durations = durations
        self._finishes: list[tuple[float, int]] = []

    def choose(self, world: World, now: float, bucket_full: bool) -> tuple[int, float]:
        if world.can_create:
            return CREATE, now
        finish, task = self._finishes[0]
        if finish > now:
            return WAIT, finish
        heapq.heappop(self._finishes)
        return task, now

    def created(self, task: int, now: float) -> None:
        heapq.heappush(self._finishes, (now + self.durations[task], task))

    def pending(self, task: int, now: float) -> None:
        raise AssertionError("a clairvoyant check never finds its task pending")

    def finished(self, task: int, now: float) -> None:
        pass


class Schedule:
    """Checks each task at fixed ages (the same for every task), then every ``tail`` seconds;
    creates first, due checks in order of their due time. A check delayed past the next age
    makes the next one due at once (it still waits its turn behind earlier ones).

    With ``spare`` (the distribution), a token that would be lost (the burst is banked and
    nothing is due) goes to the task likeliest to have finished, if that chance is at least
    ``spare_floor``.
    """

    def __init__(
        self,
        ages: Sequence[float],
        tail: float,
        *,
        name: str = "fixed schedule",
        spare: Lognormal | None = None,
        spare_floor: float = 0.05,
    ) -> None:
        assert ages, "at least one age"
        assert all(b > a for a, b in itertools.pairwise(ages)), "ages increase"
        assert tail > 0, "a tail gap"
        self.name = name
        self.ages = tuple(ages)
        self.tail = tail
        self.spare = spare
        self.spare_floor = spare_floor
        self._due: list[tuple[float, int]] = []
        self._next: dict[int, int] = {}  # task -> index of its next scheduled age
        self._created: dict[int, float] = {}

    def _age(self, j: int) -> float:
        last = len(self.ages) - 1
        return self.ages[j] if j <= last else self.ages[last] + (j - last) * self.tail

    def choose(self, world: World, now: float, bucket_full: bool) -> tuple[int, float]:
        if world.can_create:
            return CREATE, now
        while self._due[0][1] not in world.in_flight:  # seen done by a spare check
            heapq.heappop(self._due)
        due, task = self._due[0]
        if due <= now:
            heapq.heappop(self._due)
            return task, now
        if self.spare is not None and bucket_full:
            best, chance = _likeliest(world, now, self.spare)
            if chance >= self.spare_floor:
                return best, now
            return WAIT, min(due, now + _STEP)
        return WAIT, due

    def created(self, task: int, now: float) -> None:
        self._created[task] = now
        self._next[task] = 1
        heapq.heappush(self._due, (now + self.ages[0], task))

    def pending(self, task: int, now: float) -> None:
        if any(t == task for _, t in self._due):  # a spare check: the plan stands
            return
        j = self._next[task]
        self._next[task] = j + 1
        heapq.heappush(self._due, (max(now, self._created[task] + self._age(j)), task))

    def finished(self, task: int, now: float) -> None:
        pass


def _likeliest(world: World, now: float, dist: Lognormal) -> tuple[int, float]:
    """The in-flight task likeliest to have finished by ``now``, and that chance."""
    best, chance = -1, -1.0
    created, seen = world.created, world.last_seen
    for task in world.in_flight:
        p = dist.hazard(now - created[task], seen[task] - created[task])
        if p > chance:
            best, chance = task, p
    return best, chance


class Greedy:
    """Every token goes to a create if a slot is free and prompts wait, else to the
    in-flight task with the highest chance of having finished since it was last seen pending
    (the true distribution's hazard). With ``check_first_at`` below 1, a check whose chance is
    at least that goes before a create (it frees a slot for a second create)."""

    def __init__(self, dist: Lognormal, *, check_first_at: float = 1.01) -> None:
        self.dist = dist
        self.check_first_at = check_first_at
        self.name = (
            "greedy: likeliest finished"
            if check_first_at > 1
            else f"greedy, check before create at p >= {check_first_at:g}"
        )

    def choose(self, world: World, now: float, bucket_full: bool) -> tuple[int, float]:
        if world.can_create and self.check_first_at > 1:
            return CREATE, now
        if not world.in_flight:
            return CREATE, now
        best, chance = _likeliest(world, now, self.dist)
        if world.can_create and chance < self.check_first_at:
            return CREATE, now
        return best, now

    def created(self, task: int, now: float) -> None:
        pass

    def pending(self, task: int, now: float) -> None:
        pass

    def finished(self, task: int, now: float) -> None:
        pass


class ClientPlan:
    """The client's own planner (``_scheduler/_plan.py``) in the model, driven as the runner
    drives it with its limits known: apixo's advice (first check at 10 s, then every 3 s)
    until three probes have finished, then the learned model's plan; creates first, then due
    checks oldest due first, with the budget's pressure; idle requests (none waiting, a look
    every 50 ms, up to 32) on :meth:`Planner.spare`'s picks. It learns the distribution from
    the run, as the client does (from apixo's own duration in each answer); no I/O, no CPU
    time, no grid rounding. ``durations`` only stand for that duration in the answer."""

    name = "the client's planner (learns the distribution)"

    def __init__(
        self, durations: Sequence[float], told: Lognormal | None = None, *, pressure: bool = True
    ) -> None:
        from nanobanana_async._scheduler._account import _PRESSURE_FALL, _PRESSURE_RISE
        from nanobanana_async._scheduler._latency import Learned
        from nanobanana_async._scheduler._plan import Planner

        self.durations = durations
        self._rise, self._fall = (_PRESSURE_RISE if pressure else 0.0), _PRESSURE_FALL
        known = None if told is None else Learned(mean=told.mu, var=told.sigma**2, samples=10**6)
        self.plan: Planner[int] = Planner(None if known is None else lambda group: known)
        if told is not None:
            self.name = "the client's planner, told the distribution (as a rerun recalls it)"
        self._entries: dict[int, Any] = {}
        self._ready: list[Any] = []
        self.pressure = 1.0
        self._pressure_at = 0.0
        self._spare_next = 0.0
        self._spare: list[Any] = []
        self._spare_at = -1.0

    def _update_pressure(self, now: float) -> None:
        # As Account.update_pressure: sparser checks while checks wait for requests.
        elapsed = min(1.0, max(0.0, now - self._pressure_at))
        self._pressure_at = now
        rate = self._rise if self._ready else -self._fall
        self.pressure = min(3.0, max(1.0, self.pressure * math.exp(rate * elapsed)))

    def choose(self, world: World, now: float, bucket_full: bool) -> tuple[int, float]:
        self._ready.extend(self.plan.due(now))
        self._update_pressure(now)
        if world.can_create:
            return CREATE, now
        while self._ready:
            entry = self._ready.pop(0)
            if entry.payload in world.in_flight:
                self.plan.sent(entry, now)
                return int(entry.payload), now
        if self._spare_at != now:
            # The runner sends a look's picks only while requests are free at that instant;
            # the rest stay planned.
            self._spare.clear()
        while self._spare:
            entry = self._spare.pop()
            if entry.payload in world.in_flight:
                self.plan.sent(entry, now)
                return int(entry.payload), now
        wake = self.plan.next_wakeup()
        if now >= self._spare_next and world.in_flight:
            self._spare_next = now + 0.05
            picked, again = self.plan.spare(now, 32)
            self._spare, self._spare_at = list(reversed(picked)), now
            if self._spare:
                return self.choose(world, now, bucket_full)
            wake = min(wake, max(again, self._spare_next))
        return WAIT, max(min(wake, self._spare_next), now + 1e-6)

    def created(self, task: int, now: float) -> None:
        self._entries[task] = self.plan.add(
            task,
            group="g",
            now=now,
            deadline=math.inf,
            first_poll=10.0,
            poll_interval=3.0,
            pressure=self.pressure,
        )

    def pending(self, task: int, now: float) -> None:
        self.plan.record_running(self._entries[task], now, self.pressure)

    def finished(self, task: int, now: float) -> None:
        # apixo's answer carries the task's own duration (costTime, whole milliseconds).
        elapsed = int(self.durations[task] * 1000) / 1000.0
        self.plan.record_done(self._entries.pop(task), now, elapsed)


@contextlib.contextmanager
def planner_constants(**values: float) -> Iterator[None]:
    """The latency model's constants (``_scheduler._latency``) set to ``values`` inside the
    block: what-ifs for the client's planner in the model, restored after."""
    from nanobanana_async._scheduler import _latency

    old = {name: getattr(_latency, name) for name in values}
    try:
        for name, value in values.items():
            setattr(_latency, name, value)
        yield
    finally:
        for name, value in old.items():
            setattr(_latency, name, value)


# ---------------------------------------------------------------------- one task, analytically


@attrs.frozen
class Point:
    """A per-task check plan and what it costs: mean checks and mean lag (seconds)."""

    price: float
    checks: float
    lag: float
    ages: tuple[float, ...]


def frontier(dist: Lognormal, price: float, *, step: float = 0.01, horizon: float = 14.0) -> Point:
    """The check ages minimising ``mean lag + price * mean checks`` for one task, by dynamic
    programming on a grid of ``step`` seconds.

    From a check at age ``s`` that saw the task pending, the next check at ``a`` costs
    ``price`` if the task was still pending at ``s`` and adds ``a - x`` of lag for a finish at
    ``x`` in ``(s, a]``. Every policy's plan for one task is such a list of ages (it can only
    learn "still pending"), so no plan with the same mean checks has a smaller mean lag than
    this one's, to within ``step`` (rounding any plan's ages up to the grid adds less than
    ``step`` of lag and no check).
    """
    n = int(horizon / step)
    xs = [i * step for i in range(n + 1)]
    cdf = [dist.cdf(x) for x in xs]
    part = [dist.partial_mean(x) for x in xs]
    window = int(4.0 / step)  # no optimal gap between checks is longer (measured: < 2 s)
    cost = [0.0] * (n + 1)
    nxt = [n] * (n + 1)
    for s in range(n - 1, -1, -1):
        survive = 1.0 - cdf[s]
        best, best_a = math.inf, n
        for a in range(s + 1, min(n, s + window) + 1):
            c = xs[a] * (cdf[a] - cdf[s]) - (part[a] - part[s]) + cost[a]
            if c < best:
                best, best_a = c, a
        cost[s] = price * survive + best
        nxt[s] = best_a
    ages, checks, s = [], 0.0, 0
    while s < n:
        checks += 1.0 - cdf[s]
        s = nxt[s]
        ages.append(xs[s])
    lag = cost[0] - price * checks
    return Point(price, checks, lag, tuple(ages))


def plan_cost(dist: Lognormal, ages: Sequence[float]) -> tuple[float, float]:
    """``(mean checks, mean lag)`` of one task checked at ``ages`` until one sees it finished
    (a finish after the last age is left out: put the last one far in the tail)."""
    checks = lag = 0.0
    before = 0.0
    for age in ages:
        checks += 1.0 - dist.cdf(before)
        lag += age * (dist.cdf(age) - dist.cdf(before))
        lag -= dist.partial_mean(age) - dist.partial_mean(before)
        before = age
    return checks, lag


def ceiling_rate(points: Sequence[Point], budget_rate: float, cap: int, mean: float) -> Point:
    """The largest steady rate any polling client can reach, and the (checks, lag) where it
    does: the max over the frontier's hull of ``min(budget_rate / (1 + k), cap / (mean + l))``.
    Two plans mixed (a share of tasks on each) reach every point between them, so the hull's
    segments count too; the rate is returned as the Point's ``price`` field."""
    hull = sorted(points, key=lambda p: p.checks)
    best = Point(0.0, 0.0, 0.0, ())
    for p, q in itertools.pairwise(hull):
        for i in range(201):
            w = i / 200
            k = p.checks + w * (q.checks - p.checks)
            lag = p.lag + w * (q.lag - p.lag)
            rate = min(budget_rate / (1.0 + k), cap / (mean + lag))
            if rate > best.price:
                best = Point(rate, k, lag, ())
    return best


# ---------------------------------------------------------------------- search and report


def evaluate(
    make: Callable[[Sequence[float]], Policy],
    draws: dict[int, list[float]],
    limits: nb.Limits,
    cap: int,
) -> dict[str, Any]:
    """One policy on every draw: wall times, ratios to the paced clairvoyant, checks per task."""
    walls, ratios, checks, lags, steady, phases = [], [], [], [], [], []
    name = ""
    for durations in draws.values():
        policy = make(durations)
        name = policy.name
        result = run(durations, limits, policy)
        paced = paced_clairvoyant_wall(durations, limits, cap)
        walls.append(result.wall)
        ratios.append(paced / result.wall)
        checks.append(result.checks_per_task)
        lags.append(statistics.fmean(result.lags))
        steady.append(result.steady_rate)
        phases.append(result.phases())
    return {
        "policy": name,
        "wall_s": [round(w, 2) for w in walls],
        "ratio_to_paced_clairvoyant": [round(r, 3) for r in ratios],
        "mean_ratio": round(statistics.fmean(ratios), 3),
        "checks_per_task": round(statistics.fmean(checks), 2),
        "mean_lag_s": round(statistics.fmean(lags), 3),
        "steady_per_s": round(statistics.fmean(steady), 2),
        "phases_s": [[round(x, 2) for x in p] for p in phases],
    }


def best_schedule(
    draws: dict[int, list[float]],
    limits: nb.Limits,
    start: Sequence[float],
    tail: float,
    *,
    steps: Sequence[float] = (0.2, 0.1, 0.05, 0.02),
) -> tuple[tuple[float, ...], float, float]:
    """Coordinate search from ``start`` on the ages and the tail gap, for the best mean ratio
    to the paced clairvoyant over ``draws``: ``(ages, tail, ratio)``."""
    cap = limits.concurrent_tasks or 0
    paced = {s: paced_clairvoyant_wall(d, limits, cap) for s, d in draws.items()}

    def score(ages: Sequence[float], tail: float) -> float:
        if any(b <= a for a, b in itertools.pairwise(ages)) or ages[0] <= 0 or tail <= 0:
            return 0.0
        return statistics.fmean(
            paced[s] / run(d, limits, Schedule(ages, tail)).wall for s, d in draws.items()
        )

    point = [*start, tail]
    best = score(point[:-1], point[-1])
    for step in steps:
        improved = True
        while improved:
            improved = False
            for i in range(len(point)):
                for delta in (step, -step):
                    trial = list(point)
                    trial[i] = round(trial[i] + delta, 4)
                    got = score(trial[:-1], trial[-1])
                    if got > best + 1e-6:
                        point, best, improved = trial, got, True
                        break
    return tuple(point[:-1]), point[-1], best


def _fixed(
    ages: Sequence[float], tail: float, *, spare: Lognormal | None = None
) -> Callable[[Sequence[float]], Policy]:
    return lambda durations: Schedule(ages, tail, spare=spare)


def _greedy(dist: Lognormal, check_first_at: float) -> Callable[[Sequence[float]], Policy]:
    return lambda durations: Greedy(dist, check_first_at=check_first_at)


def report(regime: Regime = SCENARIO_1, seeds: Sequence[int] = SEEDS) -> dict[str, Any]:
    """Every policy on ``regime``'s draws for ``seeds``, and the analytic ceiling."""
    limits = limits_of(regime)
    cap = regime.concurrent
    dist = Lognormal(regime.median, regime.sigma)
    draws = {seed: drawn_durations(regime, seed) for seed in seeds}
    interval, burst = pacing(limits)
    budget_rate = 1.0 / interval
    rows = [evaluate(Clairvoyant, draws, limits, cap)]

    # The analytic frontier, and the steady ceiling it implies.
    points = [frontier(dist, price) for price in (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)]
    top = ceiling_rate(points, budget_rate, cap, dist.mean)
    clairvoyant_rate = min(budget_rate / 2, cap / dist.mean)

    # Fixed schedules, 1-5 checks before the tail, searched from the frontier's plans.
    fixed: list[dict[str, Any]] = []
    for count in range(1, 6):
        seed_plan = next((p.ages for p in points if len(p.ages) > count), points[-1].ages)
        start = list(seed_plan[:count])
        tail = max(0.1, seed_plan[count] - seed_plan[count - 1]) if count < len(seed_plan) else 0.5
        ages, gap, _ = best_schedule(draws, limits, start, tail)
        row = evaluate(_fixed(ages, gap), draws, limits, cap)
        row["policy"] = f"fixed: ages {', '.join(f'{a:.2f}' for a in ages)}, then every {gap:.2f}"
        fixed.append(row)
    rows.append(max(fixed, key=lambda r: float(r["mean_ratio"])))

    rows.append(evaluate(ClientPlan, draws, limits, cap))
    rows.append(evaluate(lambda d: ClientPlan(d, dist), draws, limits, cap))
    with planner_constants(_Z_FIRST=-1.1, _Z_STEP=0.05):
        row = evaluate(lambda d: ClientPlan(d, pressure=False), draws, limits, cap)
    row["policy"] = "the client's planner, first check at z -1.1, steps 0.05 sigma, no pressure"
    rows.append(row)
    rows.append(evaluate(lambda d: Greedy(dist), draws, limits, cap))
    for at in (0.5, 0.3):
        rows.append(evaluate(_greedy(dist, at), draws, limits, cap))

    # The frontier's own plans (an index policy: a price per request), with spare tokens.
    for p in points:
        if len(p.ages) < 2:
            continue
        ages = p.ages[:-1]
        gap = p.ages[-1] - p.ages[-2]
        row = evaluate(_fixed(ages, gap, spare=dist), draws, limits, cap)
        row["policy"] = f"priced plan (price {p.price:g} s/check) + spare tokens"
        rows.append(row)
    return {
        "regime": attrs.asdict(regime),
        "seeds": list(seeds),
        "pace": {"interval_s": interval, "burst": burst, "budget_per_s": round(budget_rate, 2)},
        "client_ratio_seed_1": CLIENT_RATIO,
        "policies": rows,
        "all_fixed": fixed,
        "frontier": [attrs.asdict(p) for p in points],
        "ceiling": {
            "steady_rate_per_s": round(top.price, 2),
            "clairvoyant_steady_rate_per_s": round(clairvoyant_rate, 2),
            "ratio": round(top.price / clairvoyant_rate, 3),
            "checks_per_task": round(top.checks, 2),
            "lag_s": round(top.lag, 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (and write JSON with ``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--out", help="write the report as JSON to this file")
    args = parser.parse_args(argv)
    result = report(seeds=[int(s) for s in args.seeds.split(",")])
    print(
        "| policy | wall (s) per seed | ratio to paced clairvoyant | mean | checks/task | lag "
        "| steady tasks/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in result["policies"]:
        walls = " / ".join(f"{w:.2f}" for w in row["wall_s"])
        ratios = " / ".join(f"{r:.3f}" for r in row["ratio_to_paced_clairvoyant"])
        print(
            f"| {row['policy']} | {walls} | {ratios} | {row['mean_ratio']:.3f} "
            f"| {row['checks_per_task']:.2f} | {row['mean_lag_s']:.3f} s "
            f"| {row['steady_per_s']:.1f} |"
        )
    print(f"| the client (measured, seed 1) | | {CLIENT_RATIO} | | 2.4 | | |")
    print("\nper-task frontier (price s/check: checks, lag s):")
    for p in result["frontier"]:
        ages = ", ".join(f"{a:.2f}" for a in p["ages"][:6])
        print(f"  {p['price']:g}: {p['checks']:.2f} checks, lag {p['lag']:.3f} s, ages {ages}, ...")
    print("steady ceiling:", json.dumps(result["ceiling"]))
    print("\nseconds to see the first 10% / the middle 80% / the last 10% (first seed):")
    for row in result["policies"]:
        first, middle, last = row["phases_s"][0]
        print(f"  {first:5.2f} / {middle:5.2f} / {last:5.2f}  {row['policy']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
