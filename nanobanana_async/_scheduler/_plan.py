"""The poll planner: which tasks to check when, learned from completion times (pure, no I/O).

Tasks sit in one time-ordered heap keyed by their next check. First checks and intervals start
from the provider's documented advice and, once a (provider, model) has finished enough tasks,
follow the learned lognormal distribution of its durations: checks fall at fixed steps of the
distribution's quantiles, so a task is checked densely where tasks tend to finish and rarely
elsewhere. Ties go to the older task, so under a tight budget older tasks are checked first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

import attrs

P = TypeVar("P")

MIN_SAMPLES: Final = 3
# With callbacks a check before the finish is pure waste, and the first completions seen are
# the fastest ones (the model starts biased low): wait for more samples, and aim late.
LATE_MIN_SAMPLES: Final = 20
_Z_LATE: Final = 2.33
# More probes than samples needed: the model is learned from the fastest few, not the slowest.
PROBES: Final = 8  # tasks per (provider, model) checked on a geometric schedule while unlearned
_PROBE_GROWTH: Final = 1.5
_LATE_PRESSURE: Final = 3.0
_PROBE_START: Final = 1 / 16  # a probe's first check, as a fraction of the prior first check
_Z_FIRST: Final = -0.5  # first check at the 31st percentile of learned durations
_Z_STEP: Final = 0.6  # then every 0.6 standard deviations of log-duration
_MIN_STEP_FRACTION: Final = 0.05  # never closer than 5% of the median duration
_WINDOW: Final = 200  # completions remembered per (provider, model)
# A check pulled forward by idle budget comes at least this share of the median duration after
# the task's last check: more often sees nothing new, and each check costs the client CPU.
_SPARE_GAP_FRACTION: Final = 0.1
_SPARE_GAP_MIN: Final = 0.05  # seconds
# An idle request goes to a task only if it has at least this chance of having finished since
# its last check: below it the check most likely sees "running" and only costs CPU.
_SPARE_MIN_CHANCE: Final = 0.2


class LatencyModel:
    """Running estimate of one (provider, model)'s task durations as a lognormal.

    Durations are interval-censored: a task finished after it was last seen running and before
    it was seen finished; the midpoint is used (an exponential moving estimate over about the
    last ``_WINDOW`` completions, so drift is followed).
    """

    def __init__(self, first_poll: float, poll_interval: float) -> None:
        self.prior_first = first_poll
        self.prior_interval = poll_interval
        self.probes = 0
        self.samples = 0
        self._mean = 0.0
        self._var = 0.0

    def observe(self, low: float, high: float) -> None:
        """Record a task that finished between ``low`` and ``high`` seconds after submit."""
        value = math.log(max(1e-3, (low + high) / 2.0))
        self.samples += 1
        weight = 1.0 / min(self.samples, _WINDOW)
        delta = value - self._mean
        self._mean += weight * delta
        self._var = (1 - weight) * (self._var + weight * delta * delta)

    @property
    def learned(self) -> bool:
        """True once enough tasks finished to trust the estimate."""
        return self.samples >= MIN_SAMPLES

    @property
    def median(self) -> float:
        """Median duration in seconds (the prior's first check before learning)."""
        return math.exp(self._mean) if self.learned else self.prior_first

    @property
    def sigma(self) -> float:
        """Spread of log-duration, floored so checks keep moving."""
        return max(0.1, math.sqrt(self._var))

    def finished_share(self, age: float) -> float:
        """The share of tasks finished by ``age`` seconds (the lognormal CDF)."""
        z = (math.log(max(age, 1e-3)) - self._mean) / self.sigma
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    def quantile(self, z: float) -> float:
        """The duration at standard-normal score ``z``."""
        return math.exp(self._mean + z * self.sigma)

    def first_check(
        self, *, late: bool = False, probe: bool = False, pressure: float = 1.0
    ) -> float:
        """Seconds after submit for the first check.

        Before anything is learned the provider's advice applies, except for a few probe tasks
        checked early and then at growing ages, which learn the real latency quickly when the
        advice is far off. Once learned: at the 31st percentile of durations, later under
        request-budget ``pressure`` (> 1), earlier with budget to spare (< 1); ``late`` puts it
        at the 99th percentile once 20 tasks have finished, and at the advice until then.
        """
        if late:
            return self.quantile(_Z_LATE) if self.samples >= LATE_MIN_SAMPLES else self.prior_first
        if not self.learned:
            return self.prior_first * _PROBE_START if probe else self.prior_first
        return self.quantile(min(1.0, _Z_FIRST + 0.5 * (pressure - 1.0)))

    def next_check(self, age: float, *, probe: bool = False, pressure: float = 1.0) -> float:
        """Seconds after submit for the next check of a task seen running at ``age``.

        Checks are ``0.6 * pressure`` standard deviations of log-duration apart, so they are
        dense where tasks tend to finish and sparser in the tail, but at most one median
        duration apart.
        """
        if not self.learned:
            if probe:
                return min(age * _PROBE_GROWTH, age + self.prior_interval)
            return age + self.prior_interval
        z = (math.log(max(age, 1e-3)) - self._mean) / self.sigma
        step = self.quantile(z + _Z_STEP * pressure) - age
        # Never closer than 5% of the median, never further than the median itself: in the
        # tail, quantile steps grow without bound and would leave a finished task unseen.
        median = self.median
        return age + min(median, max(_MIN_STEP_FRACTION * median, step))


@attrs.define(eq=False, kw_only=True)
class Entry(Generic[P]):
    """One tracked task.

    Attributes:
        payload: what the runner needs to poll and resolve it.
        group: the latency model's key, usually (provider, model).
        submitted: monotonic time of submit (or resume).
        deadline: monotonic time after which the task times out.
        due: when it should next be checked.
        last_running: when it was last seen not finished.
        checks, failures, bad_responses: counters for this task.
        done: resolved; stale heap rows are skipped.
        recheck: a callback came while a check was in flight; check once more right away.
        late: callbacks are expected, polling is only the safety net.
        hinted: a callback made the current check due, so the task ended just before it.
        min_gap: seconds at least between the submit and the first check and between checks
            (the provider's documented floor); no plan, callback or end-game goes below it.
        last_check: monotonic time the last check was sent (the submit before the first).
    """

    payload: P
    group: Hashable
    submitted: float
    deadline: float
    seq: int
    due: float = 0.0
    last_running: float = 0.0
    checks: int = 0
    failures: int = 0
    bad_responses: int = 0
    done: bool = False
    in_flight: bool = False
    probe: bool = False
    recheck: bool = False
    late: bool = False
    hinted: bool = False
    min_gap: float = 0.0
    last_check: float = 0.0


class Planner(Generic[P]):
    """Deadlines and check times of every pending task; never sleeps, never awaits."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Entry[P]]] = []
        self._deadlines: list[tuple[float, int, Entry[P]]] = []
        self._models: dict[Hashable, LatencyModel] = {}
        self._seq = 0
        self.pending = 0

    def model(self, group: Hashable, first_poll: float, poll_interval: float) -> LatencyModel:
        """The latency model of ``group``, created from the provider's advice on first use."""
        model = self._models.get(group)
        if model is None:
            model = self._models[group] = LatencyModel(first_poll, poll_interval)
        return model

    def learned_model(self, group: Hashable) -> LatencyModel | None:
        """The latency model of ``group`` once it is learned, else None."""
        model = self._models.get(group)
        return model if model is not None and model.learned else None

    def add(
        self,
        payload: P,
        *,
        group: Hashable,
        now: float,
        deadline: float,
        first_poll: float,
        poll_interval: float,
        late: bool = False,
        pressure: float = 1.0,
        min_gap: float = 0.0,
    ) -> Entry[P]:
        """Track a task submitted at ``now``; its first check follows the learned model."""
        self._seq += 1
        entry = Entry(
            payload=payload,
            group=group,
            submitted=now,
            deadline=deadline,
            seq=self._seq,
            last_running=now,
            min_gap=min_gap,
            last_check=now,
        )
        model = self.model(group, first_poll, poll_interval)
        entry.late = late
        # Callbacks teach the model without probing; only polled tasks probe.
        if not late and not model.learned and model.probes < PROBES:
            model.probes += 1
            entry.probe = True
        first = model.first_check(late=late, probe=entry.probe, pressure=pressure)
        self.pending += 1
        heapq.heappush(self._deadlines, (deadline, entry.seq, entry))
        self.schedule(entry, min(now + first, deadline))
        return entry

    def schedule(self, entry: Entry[P], at: float) -> None:
        """Make ``entry`` due at ``at``, or at its provider's minimum gap if that is later."""
        at = max(at, entry.last_check + entry.min_gap)
        entry.due = at
        heapq.heappush(self._due, (at, entry.seq, entry))

    def due(self, now: float) -> list[Entry[P]]:
        """Pop every live entry due at or before ``now``, earliest (then oldest) first."""
        out: list[Entry[P]] = []
        while self._due and self._due[0][0] <= now:
            at, _, entry = heapq.heappop(self._due)
            if entry.done or entry.in_flight or at != entry.due:
                continue
            out.append(entry)
        return out

    def spare(self, now: float, limit: int) -> tuple[list[Entry[P]], float]:
        """Checks worth pulling forward while the request budget is idle, and when to look again.

        Up to ``limit`` live entries planned for later, likeliest first: by the learned
        model's chance that the task finished since its last check, and only those with at
        least a 20% chance, each at least a tenth of the model's median (and its provider's
        floor) after its last check. Tasks that expect a callback and tasks of a model still
        being learned are left to their plan.

        Returns:
            the entries, and when to look again (``inf``: nothing is running to pull forward).
        """
        scored: list[tuple[float, int, Entry[P]]] = []
        retry_at = math.inf
        for at, _, entry in heapq.nsmallest(max(4 * limit, 64), self._due):
            if entry.done or entry.in_flight or at != entry.due or entry.late or at <= now:
                continue
            model = self._models.get(entry.group)
            if model is None or not model.learned:
                continue
            gap = max(entry.min_gap, _SPARE_GAP_MIN, _SPARE_GAP_FRACTION * model.median)
            eligible = entry.last_check + gap
            if eligible > now:
                retry_at = min(retry_at, eligible)
                continue
            seen_running = model.finished_share(entry.last_running - entry.submitted)
            chance = (model.finished_share(now - entry.submitted) - seen_running) / max(
                1e-9, 1.0 - seen_running
            )
            if chance >= _SPARE_MIN_CHANCE:
                scored.append((-chance, entry.seq, entry))
            else:
                retry_at = min(retry_at, now + gap)
        scored.sort()
        return [entry for _, _, entry in scored[:limit]], retry_at

    def record_running(self, entry: Entry[P], now: float, pressure: float = 1.0) -> None:
        """A check saw the task still running: plan the next check."""
        entry.last_running = now
        model = self._models[entry.group]
        if entry.late:
            pressure = _LATE_PRESSURE  # a lost callback costs a delay, not a stream of checks
        age = now - entry.submitted
        at = entry.submitted + model.next_check(age, probe=entry.probe, pressure=pressure)
        self.schedule(entry, min(at, entry.deadline))

    def record_done(self, entry: Entry[P], now: float, elapsed: float | None = None) -> None:
        """A check saw the task finished: learn from it and stop tracking it.

        ``elapsed`` is the provider's own duration, used when it fits the observed interval.
        """
        low, high = entry.last_running - entry.submitted, now - entry.submitted
        if elapsed is not None and 0.0 < elapsed <= high:
            low = high = elapsed
        elif entry.hinted:
            low = high  # the callback came when the task ended; this check followed at once
        model = self._models[entry.group]
        model.observe(low, high)
        self.finish(entry)
        if model.samples == MIN_SAMPLES:
            self._replan_first_checks(entry.group, model)

    def _replan_first_checks(self, group: Hashable, model: LatencyModel) -> None:
        # Tasks submitted before the model was learned wait on the provider's advice; move
        # their first check to what the learned model says (once per group, O(pending)).
        # Tasks expecting a callback keep the advice: an early model is biased low (the first
        # completions are the fastest), and for them an early check is pure waste.
        for at, _, entry in list(self._due):
            if entry.late:
                continue
            if entry.group == group and not entry.done and entry.checks == 0 and at == entry.due:
                first = min(entry.submitted + model.first_check(), entry.deadline)
                if first != entry.due:
                    self.schedule(entry, first)

    def finish(self, entry: Entry[P]) -> None:
        """Stop tracking ``entry`` (resolved, failed, expired or detached)."""
        if not entry.done:
            entry.done = True
            self.pending -= 1

    def expire(self, now: float) -> list[Entry[P]]:
        """Pop live entries whose deadline has passed and that have no check in flight."""
        out: list[Entry[P]] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, entry = self._deadlines[0]
            if entry.in_flight and not entry.done:
                break  # the check decides first; the deadline row stays
            heapq.heappop(self._deadlines)
            if not entry.done:
                out.append(entry)
        return out

    def next_wakeup(self) -> float:
        """The earliest time something is due or expires (``inf`` when nothing is)."""
        while self._due and (self._due[0][2].done or self._due[0][0] != self._due[0][2].due):
            heapq.heappop(self._due)
        while self._deadlines and self._deadlines[0][2].done:
            heapq.heappop(self._deadlines)
        first_due = self._due[0][0] if self._due else math.inf
        first_deadline = self._deadlines[0][0] if self._deadlines else math.inf
        return min(first_due, first_deadline)
