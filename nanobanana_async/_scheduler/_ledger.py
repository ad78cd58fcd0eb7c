"""The account ledger: one owner for what an account is using (waits through the injected clock).

What an account uses is four things, kept here and mutated nowhere else:

- **requests** in the sliding window: submits book a send time ahead and wait for it; status
  checks take a request only if one is free now, so they spend what submits leave;
- **slots**, one per task that may be running on the provider;
- the **pause** after a 429 (its Retry-After);
- the **effective limits**: the configured :class:`Limits` are a ceiling, not a belief. A 429
  the ledger did not expect lowers them to what the account just showed, and a quiet period
  lets them climb back, additively, towards the ceiling.

The slot rule. A slot is held from the moment a create may reach the provider until the client
knows the task ended; or, when it can no longer know (the submit's outcome is unknown, the
task's deadline passed, its client closed), until the task's *horizon*: the submit time plus
the model's learned p99.9 latency, or :data:`DEFAULT_HORIZON` before anything is learned,
capped by the client's task timeout. Requests of unknown outcome were sent, so they count in
the window too. A provider never sees more tasks than the cap because of us.

Telling the two 429s apart. No provider says whether a 429 was about the window or about the
concurrent tasks, so the ledger infers it from its own counts: a 429 on a create while the
client's window is well below its effective rate means the account's task cap was reached
(new cap: the tasks running less one); anything else is a window 429, whose window and rate
are estimated from the client's own send log and the Retry-After (the oldest request leaves
the account's window when the Retry-After ends).

A backend shared by processes (Redis) keeps the same state under the same rules; its hot
paths (``try_take_request``) then serve from a small batch of grants taken ahead.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import itertools
import logging
import math
import uuid
import weakref
from typing import Final

import attrs

from .._clock import Clock
from .._config import Limits
from .._errors import NanoBananaError
from .._limits import Gcra, pacing

_log = logging.getLogger("nanobanana_async")

DEFAULT_HORIZON: Final = 300.0
"""Seconds a slot of unknown fate is held before any latency is learned (5 minutes)."""

_CONCURRENCY_SHARE: Final = 0.9  # below this share of the window, a create's 429 is the cap
_RATE_MARGIN: Final = 0.95  # of what the account showed, after a window 429
_BLIND_CUT: Final = 0.7  # of the rate, after a window 429 that says nothing of the window
_QUIET_PERIODS: Final = 3  # windows without a 429 before the limits start to climb back
_RECOVERY_STEP: Final = 0.05  # of the ceiling's requests, per quiet window


@attrs.define(eq=False)
class Lease:
    """One slot, held by ``owner`` (a client) until released or its horizon passes.

    ``id`` names it in a shared ledger: the journal key when there is one, so a restarted
    process finds its leases again.
    """

    owner: object
    id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    held: bool = True
    sent: bool = False


class Slots:
    """The concurrent-task cap: first come, first served, leases released exactly once.

    A lease is granted when a caller may prepare a create, and *admitted* right before its
    create is sent: at most ``cap`` admitted leases at once, so a cap lowered by a 429 holds
    back creates already granted, not only new callers. A waiter costs one future.
    """

    def __init__(self, cap: int, clock: Clock) -> None:
        self.cap = cap
        self.held = 0
        self.sent = 0
        self.peak = 0
        self._clock = clock
        self._waiters: collections.deque[tuple[asyncio.Future[Lease], object, str | None]] = (
            collections.deque()
        )
        self.closed: weakref.WeakKeyDictionary[object, NanoBananaError] = (
            weakref.WeakKeyDictionary()
        )
        self._admits: collections.deque[tuple[asyncio.Future[None], Lease]] = collections.deque()
        self._timed: list[tuple[float, int, Lease]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        waiting = sum(1 for future, _, _ in self._waiters if not future.done())
        return waiting + sum(1 for future, _ in self._admits if not future.done())

    def try_admit(self, lease: Lease) -> bool:
        """Admit ``lease`` now if fewer than ``cap`` creates are out; False otherwise."""
        if lease.sent:
            return True
        if self.sent < self.cap and not self._admits:
            self._mark(lease)
            return True
        return False

    async def admit(self, lease: Lease) -> bool:
        """Wait until ``lease``'s create may be sent (fewer than ``cap`` creates out).

        Returns:
            True when it was admitted at once, False when it had to wait.

        Raises:
            NanoBananaError: what :meth:`fail` hands the waiters of ``lease.owner``.
        """
        if self.try_admit(lease):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admits.append((future, lease))
        self._ensure_timer()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.refused(lease)
            raise
        return False

    def refused(self, lease: Lease) -> None:
        """The create of ``lease`` was refused (nothing created): it no longer counts as out."""
        if lease.sent:
            lease.sent = False
            self.sent -= 1
            self._wake()

    def _mark(self, lease: Lease) -> None:
        lease.sent = True
        self.sent += 1
        self.peak = max(self.peak, self.sent)

    def try_acquire(self, owner: object, lease_id: str | None = None) -> Lease | None:
        """A slot now, or None when none is free (or others wait first)."""
        self._expire()
        if self.held >= self.cap or self._waiters:
            return None
        return self._grant(owner, lease_id)

    async def acquire(self, owner: object, lease_id: str | None = None) -> Lease:
        """Wait for a slot, in arrival order.

        Raises:
            NanoBananaError: what :meth:`fail` hands the waiters of ``owner`` (a closed client).
        """
        lease = self.try_acquire(owner, lease_id)
        if lease is not None:
            return lease
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, owner, lease_id))
        self._ensure_timer()
        try:
            return await future
        except asyncio.CancelledError:
            # Granted in the same tick the caller was cancelled: hand the slot back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result())
            raise

    def release(self, lease: Lease) -> None:
        """Free ``lease`` now (a second release of the same lease does nothing)."""
        if lease.held:
            lease.held = False
            self.held -= 1
            if lease.sent:
                lease.sent = False
                self.sent -= 1
            self._wake()

    def hold_until(self, lease: Lease, horizon: float) -> None:
        """Keep ``lease`` until ``horizon`` (monotonic), then free it by itself."""
        if not lease.held:
            return
        if horizon <= self._clock.now():
            self.release(lease)
            return
        heapq.heappush(self._timed, (horizon, next(self._seq), lease))
        self._ensure_timer()

    def take(self, owner: object, lease_id: str | None = None) -> Lease:
        """A sent slot now, even over the cap: for a task that already runs on the provider (a
        resumed or re-attached one), which uses a slot whether or not one is free."""
        self._expire()
        lease = self._grant(owner, lease_id)
        self._mark(lease)
        return lease

    def set_cap(self, cap: int) -> None:
        """Move the cap; waiters are served if it rose."""
        self.cap = max(1, cap)
        self._wake()

    def fail(self, owner: object, error: NanoBananaError) -> None:
        """Fail every waiter of ``owner`` with ``error`` (its client closed)."""
        self.closed[owner] = error
        kept: collections.deque[tuple[asyncio.Future[Lease], object, str | None]] = (
            collections.deque()
        )
        for future, who, lease_id in self._waiters:
            if who is owner:
                if not future.done():
                    future.set_exception(error)
            else:
                kept.append((future, who, lease_id))
        self._waiters = kept
        admits: collections.deque[tuple[asyncio.Future[None], Lease]] = collections.deque()
        for waiter, lease in self._admits:
            if lease.owner is owner:
                if not waiter.done():
                    waiter.set_exception(error)
            else:
                admits.append((waiter, lease))
        self._admits = admits

    async def aclose(self) -> None:
        """Stop the horizon timer (the process is done with this account)."""
        if self._timer is not None:
            timer, self._timer = self._timer, None
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)

    def _ensure_timer(self) -> None:
        # Only a horizon can free a slot when every other lease is out of reach.
        if self._timed and (self._timer is None or self._timer.done()):
            self._timer = asyncio.get_running_loop().create_task(
                self._run_timer(), name="nanobanana-slot-horizons"
            )

    def _grant(self, owner: object, lease_id: str | None) -> Lease:
        self.held += 1
        return Lease(owner) if lease_id is None else Lease(owner, lease_id)

    def _wake(self) -> None:
        while self._admits and self.sent < self.cap:
            waiter, lease = self._admits.popleft()
            if not waiter.done() and lease.held:
                self._mark(lease)
                waiter.set_result(None)
        while self._waiters and self.held < self.cap:
            future, owner, lease_id = self._waiters.popleft()
            if not future.done():
                future.set_result(self._grant(owner, lease_id))

    def _expire(self) -> None:
        now = self._clock.now()
        while self._timed and self._timed[0][0] <= now:
            _, _, lease = heapq.heappop(self._timed)
            self.release(lease)

    async def _run_timer(self) -> None:
        while self._timed:
            await self._clock.sleep_until(self._timed[0][0])
            self._expire()


class Ledger:
    """The in-memory ledger of one account (one process, one event loop).

    Args:
        limits: the configured ceiling.
        clock: the scheduler's monotonic clock.
    """

    def __init__(self, limits: Limits, clock: Clock) -> None:
        self.configured = limits
        self.effective = limits
        self._clock = clock
        interval, burst = pacing(limits)
        self.gcra = Gcra(interval, burst)
        self.slots = Slots(limits.concurrent_tasks, clock)
        self._sent: list[float] = []  # monotonic send times, oldest first
        self._last_429 = -math.inf
        self._recovered_at = -math.inf
        self.requests = 0

    # ----------------------------------------------------------------- requests

    async def acquire_request(self) -> None:
        """Wait for a submit's turn in the window (booked ahead, so submits go first).

        A 429 that arrives while we wait moves the turn: a booked time that falls inside a
        pause is booked again after it.
        """
        while True:
            self._recover()
            at = self.gcra.reserve(self._clock.now())
            await self._clock.sleep_until(at)
            now = self._clock.now()
            if self.gcra.is_paused(now):
                continue
            free = self._window_free_at(now)
            if free <= now:
                return
            await self._clock.sleep_until(free)

    admit_first = False
    """Whether a create waits for its slot admission before its turn in the window: a shared
    ledger counts a turn from the moment it is granted, so a turn taken before a wait for
    admission would be spent by the time the create goes."""

    def demand(self, checks: int) -> None:
        """Say how many status checks wait for a request (a shared ledger sizes its batches)."""

    def try_take_request(self, now: float) -> bool:
        """Take a request only if one is free now (status checks)."""
        return self._window_free_at(now) <= now and self.gcra.try_take(now)

    def next_request_free(self) -> float:
        """The earliest time :meth:`try_take_request` can succeed."""
        now = self._clock.now()
        return max(self.gcra.next_free(), self._window_free_at(now))

    def _window_free_at(self, now: float) -> float:
        # Once the limits were lowered, the requests already sent at the old pace still sit in
        # the account's window: pacing alone would overfill it, so the send log bounds it too.
        if self.effective == self.configured:
            return now
        per = self.effective.per
        budget = max(1, math.floor(self.effective.requests * (1.0 - self.effective.safety_margin)))
        if self._in_window(now, per) < budget:
            return now
        return self._sent[-budget] + per

    def note_send(self) -> None:
        """Count one request sent now (sent means counted, whatever its outcome)."""
        now = self._clock.now()
        self.requests += 1
        self._sent.append(now)
        self._trim(now - max(self.configured.per, self.effective.per))

    def requests_in_window(self) -> int:
        """Requests sent in the last effective ``per`` seconds."""
        return self._in_window(self._clock.now(), self.effective.per)

    def _in_window(self, now: float, per: float) -> int:
        return len(self._sent) - bisect.bisect_right(self._sent, now - per)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now."""
        self.gcra.pause(self._clock.now() + seconds)

    def is_paused(self) -> bool:
        """True while a 429's Retry-After runs."""
        return self.gcra.is_paused(self._clock.now())

    # ----------------------------------------------------------------- 429s

    def rate_limited(self, *, retry_after: float | None, creating: bool) -> bool:
        """Learn from a 429; returns True when it was about the task cap (no pause needed).

        A 429 inside a running pause belongs to the same episode and teaches nothing new.
        ``creating``: the 429 answered a create whose slot is still held by the caller.
        """
        now = self._clock.now()
        self._last_429 = now
        if self.gcra.is_paused(now):
            return False
        running = self.slots.sent - (1 if creating else 0)
        in_window = self.requests_in_window()
        window_budget = self.effective.requests * (1.0 - self.effective.safety_margin)
        # Under a cap already learned, a create's 429 cannot be about the cap.
        under_learned_cap = (
            self.effective.concurrent_tasks < self.configured.concurrent_tasks
            and running < self.effective.concurrent_tasks
        )
        if (
            creating
            and running >= 1
            and in_window < _CONCURRENCY_SHARE * window_budget
            and not under_learned_cap
        ):
            cap = max(1, running - 1) if running > 1 else 1
            if cap < self.effective.concurrent_tasks:
                self._set_effective(attrs.evolve(self.effective, concurrent_tasks=cap))
            return True
        per, requests = self._estimate_window(now, retry_after)
        if requests / per < self.effective.requests / self.effective.per:
            self._set_effective(attrs.evolve(self.effective, requests=requests, per=per))
        return False

    def _estimate_window(self, now: float, retry_after: float | None) -> tuple[float, int]:
        # The account's window ends when its oldest counted request leaves it, which is when
        # the Retry-After ends: so it spans from our first send of this busy spell to then.
        # A missing or implausible hint (longer than any window we know) says nothing about
        # the window: cut the rate multiplicatively instead, as AIMD does.
        ceiling = max(self.configured.per, self.effective.per)
        if retry_after is None or not 0 < retry_after <= ceiling:
            cut = max(1, math.floor(self.effective.requests * _BLIND_CUT))
            return self.effective.per, cut
        start = self._spell_start(now, ceiling)
        per = min(ceiling, max(1.0, now - start + retry_after))
        shown = self._shown(now, per)
        return per, max(1, math.floor(shown * _RATE_MARGIN))

    def _shown(self, now: float, per: float) -> int:
        # What the account showed it accepts in ``per``: our own sends in one process.
        return self._in_window(now, per)

    def _spell_start(self, now: float, ceiling: float) -> float:
        # The first send after the last idle gap as long as a window, within the ceiling.
        start = now
        for at in reversed(self._sent):
            if at <= now - ceiling or start - at > self.effective.per:
                break
            start = at
        return start

    def _recover(self) -> None:
        now = self._clock.now()
        if self.effective == self.configured:
            return
        quiet = _QUIET_PERIODS * self.effective.per
        since = max(self._last_429, self._recovered_at)
        if now - since < quiet:
            return
        self._recovered_at = now
        ceiling = self.configured
        share = ceiling.requests * self.effective.per / ceiling.per
        step = max(1, math.ceil(share * _RECOVERY_STEP))
        requests = self.effective.requests + step
        if requests / self.effective.per >= ceiling.requests / ceiling.per:
            requests, per = ceiling.requests, ceiling.per
        else:
            per = self.effective.per
        cap = min(ceiling.concurrent_tasks, self.effective.concurrent_tasks + 1)
        self._set_effective(
            attrs.evolve(self.effective, requests=requests, per=per, concurrent_tasks=cap)
        )

    def _set_effective(self, limits: Limits) -> None:
        old, self.effective = self.effective, limits
        interval, burst = pacing(limits)
        self.gcra.retune(interval, burst)
        self.slots.set_cap(limits.concurrent_tasks)
        lowered = (
            limits.concurrent_tasks < old.concurrent_tasks
            or limits.requests / limits.per < old.requests / old.per
        )
        level = logging.WARNING if lowered else logging.INFO
        _log.log(
            level,
            "account limits %s to %d requests per %.1f s and %d tasks at once "
            "(configured: %d per %.1f s, %d tasks)",
            "lowered" if lowered else "raised",
            limits.requests,
            limits.per,
            limits.concurrent_tasks,
            self.configured.requests,
            self.configured.per,
            self.configured.concurrent_tasks,
        )

    def _trim(self, horizon: float) -> None:
        # Amortized: drop the stale head in one slice once it is a sizeable share of the log.
        stale = bisect.bisect_right(self._sent, horizon)
        if stale > 256 and stale * 2 > len(self._sent):
            del self._sent[:stale]

    async def aclose(self) -> None:
        """Stop the ledger's timers."""
        await self.slots.aclose()
