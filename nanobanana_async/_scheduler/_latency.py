"""A (provider, model)'s learned task durations, and when to check a task of it (pure, no I/O).

Before enough tasks finished, checks follow the provider's documented advice (and a few probe
tasks check early on a geometric schedule); after, they fall at fixed steps of the learned
lognormal's quantiles: dense where tasks tend to finish, rare elsewhere.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

MIN_SAMPLES: Final = 3
# A probe's checks before the advice's first check: at 1/16, 1/8, 1/4 and 1/2 of it (four
# checks more than the advice for a task as slow as the advice says; issue 20 item 8: growing
# 1.5x, and past the first check too, one 17.5 s task got 12). Starting later (1/8) saved one
# check per probe but saw tasks of a fast server (0.4 s against apixo's 10 s advice) finish
# 0.3 s late at the median instead of 0.09 s, as no model was learned before 1.25 s.
PROBE_GROWTH: Final = 2.0
PROBE_START: Final = 1 / 16  # a probe's first check, as a fraction of the prior first check
# Few completions say little about the spread: the first ones are also the fastest, so a
# model learned from three of them was sure every task ends within a second of its median and
# checked the slower ones every 0.8 s through their tail. Until the model has seen enough, its
# variance is drawn towards a wide prior, as if _PRIOR_WEIGHT completions of log-spread
# _PRIOR_SIGMA had been seen too.
_PRIOR_SIGMA: Final = 0.5
_PRIOR_WEIGHT: Final = 5
_Z_FIRST: Final = -0.5  # first check at the 31st percentile of learned durations
_Z_STEP: Final = 0.6  # then every 0.6 standard deviations of log-duration
_MIN_STEP_FRACTION: Final = 0.05  # never closer than 5% of the median duration
_WINDOW: Final = 200  # completions remembered per (provider, model)
# With callbacks a check before the finish is pure waste, and the first completions seen are
# the fastest ones (the model starts biased low): wait for more samples, and aim late.
LATE_MIN_SAMPLES: Final = 20
_Z_LATE: Final = 2.33
# A model carried over from an earlier run of the process counts as this many completions: as
# learned at once (>= MIN_SAMPLES, so the new run skips the advice and the probes), yet the new
# run's own tasks outweigh it after ten completions and leave a quarter of it after thirty, so
# a server that got slower or faster between runs is followed within a few dozen tasks (at the
# full _WINDOW it would take hundreds). Under LATE_MIN_SAMPLES: callback tasks still wait for
# this run's own completions before aiming late.
CARRIED_SAMPLES: Final = 10
_SQRT2: Final = math.sqrt(2.0)


@attrs.frozen(kw_only=True)
class Learned:
    """What a learned model knows, to start another run's model from (plain floats).

    Attributes:
        mean: mean of log-duration.
        var: variance of log-duration.
        samples: completions it was learned from.
    """

    mean: float
    var: float
    samples: int


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
        self.own = 0  # completions seen by this run (samples also counts a carried model's)
        self._mean = 0.0
        self._var = 0.0
        # Derived from the two above, kept current by _derive(): read several times per check
        # (every plan and every spare look), where a sqrt and an exp each time were measurable.
        self._sigma = 0.0
        self._median = 0.0
        self._derive()

    def snapshot(self) -> Learned:
        """What the model has learned, to carry over to a later run."""
        return Learned(mean=self._mean, var=self._var, samples=self.samples)

    def carry_over(self, learned: Learned) -> None:
        """Start from what an earlier run learned, counted as at most ``CARRIED_SAMPLES``
        completions so this run's own tasks soon outweigh it."""
        self._mean, self._var = learned.mean, learned.var
        self.samples = min(learned.samples, CARRIED_SAMPLES)
        self._derive()

    def observe(self, low: float, high: float) -> None:
        """Record a task that finished between ``low`` and ``high`` seconds after submit."""
        value = math.log(max(1e-3, (low + high) / 2.0))
        self.samples += 1
        self.own += 1
        weight = 1.0 / min(self.samples, _WINDOW)
        delta = value - self._mean
        self._mean += weight * delta
        self._var = (1 - weight) * (self._var + weight * delta * delta)
        self._derive()

    def _derive(self) -> None:
        # The spread is floored so checks keep moving, and drawn towards a wide prior while
        # few completions were seen.
        seen = min(self.samples, _WINDOW)
        var = (seen * self._var + _PRIOR_WEIGHT * _PRIOR_SIGMA**2) / (seen + _PRIOR_WEIGHT)
        self._sigma = max(0.1, math.sqrt(var))
        # An attribute, not a property: read a few times per task (a call each).
        self.learned = self.samples >= MIN_SAMPLES
        """True once enough tasks finished to trust the estimate."""
        self._median = math.exp(self._mean) if self.learned else self.prior_first

    @property
    def learned_here(self) -> bool:
        """True once enough tasks finished in this run: an estimate carried from an earlier
        run may plan checks, but not tell when a task of unknown fate has surely ended."""
        return self.own >= MIN_SAMPLES

    @property
    def median(self) -> float:
        """Median duration in seconds (the prior's first check before learning)."""
        return self._median

    @property
    def sigma(self) -> float:
        """Spread of log-duration, floored so checks keep moving, and drawn towards a wide
        prior while few completions were seen."""
        return self._sigma

    def finished_share(self, age: float) -> float:
        """The share of tasks finished by ``age`` seconds (the lognormal CDF)."""
        z = (math.log(max(age, 1e-3)) - self._mean) / self._sigma
        return 0.5 * math.erfc(-z / _SQRT2)

    def chance_finished(self, seen_running: float, age: float) -> float:
        """The chance that a task seen running at ``seen_running`` seconds has finished by
        ``age``: the lognormal's share finishing between the two, over the share still
        running at the first."""
        # finished_share() twice, inline: this scores every candidate of every spare look.
        mean, sigma = self._mean, self._sigma
        before = 0.5 * math.erfc(-((math.log(max(seen_running, 1e-3)) - mean) / sigma) / _SQRT2)
        after = 0.5 * math.erfc(-((math.log(max(age, 1e-3)) - mean) / sigma) / _SQRT2)
        return (after - before) / max(1e-9, 1.0 - before)

    def quantile(self, z: float) -> float:
        """The duration at standard-normal score ``z``."""
        return math.exp(self._mean + z * self._sigma)

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
            return self.prior_first * PROBE_START if probe else self.prior_first
        return self.quantile(min(1.0, _Z_FIRST + 0.5 * (pressure - 1.0)))

    def next_check(self, age: float, *, probe: bool = False, pressure: float = 1.0) -> float:
        """Seconds after submit for the next check of a task seen running at ``age``.

        Checks are ``0.6 * pressure`` standard deviations of log-duration apart, so they are
        dense where tasks tend to finish and sparser in the tail, but at most one median
        duration apart.
        """
        if not self.learned:
            if probe and age < self.prior_first:
                # Geometric up to the advice's first check, then the advice's cadence.
                return min(age * PROBE_GROWTH, self.prior_first)
            return age + self.prior_interval
        z = (math.log(max(age, 1e-3)) - self._mean) / self._sigma
        step = self.quantile(z + _Z_STEP * pressure) - age
        # Never closer than 5% of the median, never further than the median itself: in the
        # tail, quantile steps grow without bound and would leave a finished task unseen.
        median = self._median
        return age + min(median, max(_MIN_STEP_FRACTION * median, step))
