"""Request pacing: pure arithmetic on the caller's clock (no I/O, no waiting).

Two limiters with one interface (``reserve``, ``try_take``, ``next_free``, ``pause``,
``is_paused``, ``fit``):

- :class:`Gcra`, for limits the client assumes: a reservation form of the Generic Cell Rate
  Algorithm. Each request is handed the earliest time it may be sent, ``interval`` after the
  previous one, with a tolerance of ``burst`` requests. Over any window of ``per`` seconds it
  lets through at most ``per / interval + burst`` requests, so the interval is chosen to keep
  that at or below the account's limit less a safety margin (the server counts at arrival, a
  little after our send). Requests spread evenly, so an account smaller than assumed answers
  its first 429 while few requests are out.
- :class:`WindowLog`, for limits the caller stated: the provider's own rule, at most the
  budget in any window, so a run may spend a whole window at once (at its start, or after a
  lull) where GCRA would spread it over the window. On a rate-bound run that is up to a window
  of requests sooner. Its window is ``per`` plus a slack for the time from booking to the
  provider's count at arrival.
"""

from __future__ import annotations

import collections
import math
from typing import Final

from ._config import Limits


def pacing(limits: Limits) -> tuple[float, int]:
    """Return ``(interval, burst)`` so no ``per``-second window holds more than allowed.

    The budget is ``floor(requests * (1 - safety_margin))``; burst is 1% of it (at least 1, at
    most 20), and ``interval = per / (budget - burst)``.
    """
    budget = max(1, math.floor(limits.requests * (1.0 - limits.safety_margin)))
    burst = max(1, min(20, budget // 100))
    usable = max(1, budget - burst)
    return limits.per / usable, burst


_MIN_SLACK: Final = 0.25  # seconds: a booked request reaches the provider's count later


def window(limits: Limits) -> tuple[int, float]:
    """Return ``(budget, seconds)`` for a :class:`WindowLog`: ``floor(requests * (1 -
    safety_margin))`` in any ``per`` plus ``max(0.25 s, safety_margin * per)``."""
    budget = max(1, math.floor(limits.requests * (1.0 - limits.safety_margin)))
    return budget, limits.per + max(_MIN_SLACK, limits.safety_margin * limits.per)


class Gcra:
    """Pure GCRA reservation state; times are floats on the caller's monotonic clock.

    Args:
        interval: seconds between requests at the steady pace.
        burst: requests that may go back to back after an idle spell.
    """

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.tolerance = (burst - 1) * interval
        self._tat = -math.inf  # theoretical arrival time of the next request
        self.paused_until = -math.inf

    def retune(self, interval: float, burst: int) -> None:
        """Change the pace (the account's effective limits moved); bookings made stay."""
        self.interval = interval
        self.tolerance = (burst - 1) * interval

    def fit(self, limits: Limits) -> None:
        """Retune to ``limits`` (see :func:`pacing`)."""
        self.retune(*pacing(limits))

    def reserve(self, now: float) -> float:
        """Book one request and return the earliest time it may be sent (``>= now``)."""
        start = max(now, self._tat - self.tolerance, self.paused_until)
        self._tat = max(self._tat, start) + self.interval
        return start

    def try_take(self, now: float) -> bool:
        """Take a request slot only if one is free now (never books ahead).

        Status checks use this, so they spend only what submits leave: a submit for a freed
        concurrent-task slot is never queued behind a backlog of checks.
        """
        if now < self.paused_until or now < self._tat - self.tolerance:
            return False
        self.reserve(now)
        return True

    def next_free(self) -> float:
        """The earliest time :meth:`try_take` can succeed."""
        return max(self._tat - self.tolerance, self.paused_until)

    def pause(self, until: float) -> None:
        """Send nothing before ``until`` (a 429's Retry-After).

        The pace itself is not slowed here: the ledger lowers the account's effective limits
        from what the 429 showed, which retunes the interval.
        """
        self.paused_until = max(self.paused_until, until)
        self._tat = max(self._tat, until + self.tolerance)

    def is_paused(self, now: float) -> bool:
        """True while a 429's Retry-After is still running."""
        return now < self.paused_until


class WindowLog:
    """Sliding-window booking: at most ``budget`` requests in any ``seconds``, bursts allowed.

    Requests are booked in time order; one booked ahead (a submit waiting for its turn) goes
    before any request taken later, as with :class:`Gcra`.
    """

    def __init__(self, budget: int, seconds: float) -> None:
        self._ceiling = (budget, seconds)
        self._rules = [self._ceiling]
        # The last `budget` booked times are all a rule needs: the next request fits once the
        # oldest of them has left the window.
        self._log: collections.deque[float] = collections.deque(maxlen=budget)
        self.paused_until = -math.inf

    def fit(self, limits: Limits) -> None:
        """Hold to ``limits`` as well as to the limits it was made with, which stay a ceiling
        (see :func:`window`): a shorter window learned from a 429 must not let the configured
        one overfill. Bookings made stay."""
        rule = window(limits)
        self._rules = [self._ceiling] if rule == self._ceiling else [self._ceiling, rule]
        longest = max(budget for budget, _ in self._rules)
        if self._log.maxlen is not None and longest > self._log.maxlen:
            self._log = collections.deque(self._log, maxlen=longest)

    def next_free(self) -> float:
        """The earliest time :meth:`try_take` can succeed."""
        log = self._log
        free = self.paused_until
        if log:
            free = max(free, log[-1])
            for budget, seconds in self._rules:
                if len(log) >= budget:
                    free = max(free, log[-budget] + seconds)
        return free

    def reserve(self, now: float) -> float:
        """Book one request and return the earliest time it may be sent (``>= now``)."""
        at = max(now, self.next_free())
        self._log.append(at)
        return at

    def try_take(self, now: float) -> bool:
        """Take a request only if one is free now (never books ahead)."""
        if self.next_free() > now:
            return False
        self._log.append(now)
        return True

    def pause(self, until: float) -> None:
        """Send nothing before ``until`` (a 429's Retry-After)."""
        self.paused_until = max(self.paused_until, until)

    def is_paused(self, now: float) -> bool:
        """True while a 429's Retry-After is still running."""
        return now < self.paused_until
