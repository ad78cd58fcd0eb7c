"""Request pacing by GCRA: pure arithmetic on the caller's clock (no I/O, no waiting).

The pacing is a reservation form of the Generic Cell Rate Algorithm: each request is handed the
earliest time it may be sent, ``interval`` after the previous one, with a tolerance of ``burst``
requests. Over any window of ``per`` seconds GCRA lets through at most ``per / interval +
burst`` requests, so the interval is chosen to keep that at or below the account's limit less a
safety margin (the server counts at arrival, a little after our send).
"""

from __future__ import annotations

import math
from typing import Final

from ._config import Limits

_SLOWDOWN_STEP: Final = 1.5
_SLOWDOWN_MAX: Final = 4.0
_SLOWDOWN_RECOVERY: Final = 0.005  # fraction of the excess slowdown dropped per request


def pacing(limits: Limits) -> tuple[float, int]:
    """Return ``(interval, burst)`` so no ``per``-second window holds more than allowed.

    The budget is ``floor(requests * (1 - safety_margin))``; burst is 1% of it (at least 1, at
    most 20), and ``interval = per / (budget - burst)``.
    """
    budget = max(1, math.floor(limits.requests * (1.0 - limits.safety_margin)))
    burst = max(1, min(20, budget // 100))
    usable = max(1, budget - burst)
    return limits.per / usable, burst


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
        self.slowdown = 1.0
        self.paused_until = -math.inf

    def retune(self, interval: float, burst: int) -> None:
        """Change the pace (the account's effective limits moved); bookings made stay."""
        self.interval = interval
        self.tolerance = (burst - 1) * interval

    def reserve(self, now: float) -> float:
        """Book one request and return the earliest time it may be sent (``>= now``)."""
        step = self.interval * self.slowdown
        start = max(now, self._tat - self.tolerance, self.paused_until)
        self._tat = max(self._tat, start) + step
        if self.slowdown > 1.0:
            self.slowdown = max(1.0, self.slowdown - (self.slowdown - 1.0) * _SLOWDOWN_RECOVERY)
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

    def pause(self, until: float, now: float) -> None:
        """Send nothing before ``until`` (a 429's Retry-After) and slow the pace for a while.

        Only a 429 outside a running pause slows the pace further: the other requests that
        were in flight when the first 429 came belong to the same episode.
        """
        if not self.is_paused(now):
            self.slowdown = min(_SLOWDOWN_MAX, self.slowdown * _SLOWDOWN_STEP)
        self.paused_until = max(self.paused_until, until)
        self._tat = max(self._tat, until + self.tolerance)

    def is_paused(self, now: float) -> bool:
        """True while a 429's Retry-After is still running."""
        return now < self.paused_until
