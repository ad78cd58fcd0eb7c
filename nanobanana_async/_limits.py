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

WAKE_GRID: Final = 1 / 256
"""Seconds (~3.9 ms) of the grid that scheduled wake-ups are rounded *up* to (:func:`on_grid`).

Paced at the limit, requests fall due one every ``interval`` (1.2 ms at 1,000 a 1.2 s window),
so each woke the event loop on its own: a timer, a turn, a system call per request. Rounded up
to a shared grid, the status checks and creates due within one step wake together in one turn
of the loop. Up, never down: a request still goes at or after the time its pacing allows, so
the window bound is exactly that of the even pace; the cost is at most one step of added wait
per request (about ``WAKE_GRID / interval`` requests share a wake). A power of two, so the
round times a fake clock uses (whole and half seconds) stay on the grid, unmoved.
"""
_GRID_STEPS: Final = 256  # 1 / WAKE_GRID


def on_grid(at: float) -> float:
    """``at`` rounded up to the next step of :data:`WAKE_GRID` (itself when on it; infinities
    unchanged)."""
    if at - at != 0.0:  # inf or nan: no step to round to
        return at
    return math.ceil(at * _GRID_STEPS) / _GRID_STEPS


def budget(limits: Limits) -> int:
    """The most requests one window may hold: ``floor(requests * (1 - safety_margin))``."""
    return max(1, math.floor(limits.requests * (1.0 - limits.safety_margin)))


def paced_share(limits: Limits) -> tuple[int, int]:
    """``(paced, burst)``: the burst is 1% of the :func:`budget` (at least 1, at most 20), and
    the rest of it is spread evenly over the window."""
    whole = budget(limits)
    burst = max(1, min(20, whole // 100))
    return max(1, whole - burst), burst


def pacing(limits: Limits) -> tuple[float, int]:
    """Return ``(interval, burst)`` so no ``per``-second window holds more than allowed:
    ``interval = per / paced`` (see :func:`paced_share`)."""
    paced, burst = paced_share(limits)
    return limits.per / paced, burst


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

    def reserve(self, now: float, *, burst: bool = True) -> float:
        """Book one request and return the earliest time it may be sent (``>= now``);
        ``burst=False``: at the steady pace, never back to back after an idle spell."""
        start = max(now, self._tat - (self.tolerance if burst else 0.0), self.paused_until)
        self._tat = max(self._tat, start) + self.interval
        return start

    def turn(self, now: float, *, burst: bool = True) -> float:
        """The time :meth:`reserve` would return for a request asking at ``now``, booking
        nothing (a create waiting in its account's queue books only once its turn comes)."""
        return max(now, self._tat - (self.tolerance if burst else 0.0), self.paused_until)

    def try_take(self, now: float) -> bool:
        """Take a request slot only if one is free now (never books ahead).

        Status checks use this, so they spend only what submits leave: a submit for a freed
        concurrent-task slot is never queued behind a backlog of checks.
        """
        if now < self.paused_until or now < self._tat - self.tolerance:
            return False
        self.reserve(now)
        return True

    def cancel_bookings(self, now: float) -> None:
        """Forget the turns booked ahead of ``now``: their holders book again (the ledger
        tells them), so a backlog booked under old limits does not hold back what comes next."""
        self._tat = min(self._tat, now)

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

    @property
    def booked(self) -> float:
        """The theoretical arrival time of the next request (what :meth:`unreserve` takes)."""
        return self._tat

    def unreserve(self, booked: float) -> None:
        """Undo a :meth:`reserve` whose request was never sent, if nothing was booked since
        (``booked``: :attr:`booked` right after it); otherwise the turn stays spent."""
        if self._tat == booked:
            self._tat -= self.interval
