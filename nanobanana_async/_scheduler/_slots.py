"""Slots: the account's cap on concurrent tasks, as leases granted, admitted and released
(waits through the injected clock). The rule for how long a slot is held is the ledger's; see
``_ledger``.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import math
import os
import weakref

import attrs

from .._clock import Clock, Timer, timers
from .._errors import NanoBananaError
from ..events import SlotGranted, WaitingForSlot, _AccountEvents

_log = logging.getLogger("nanobanana_async")


@attrs.define(eq=False)
class Lease:
    """One slot, held by ``owner`` (a client) until released or its horizon passes.

    ``id`` names it in a shared ledger. With a journal it is derived from the request's
    journal key, not that key itself: a digest of the host, the journal's path and the key
    (``JournalHooks.lease_id``), so two journals' keys never meet; the same on a rerun, so a
    restarted process finds its leases again. Without one it is random.
    """

    owner: object
    # Made on first read (see ``id``): only a shared ledger reads it.
    _id: str | None = attrs.field(default=None, alias="id")
    held: bool = True
    sent: bool = False
    accepted: bool = False  # its create was accepted: the task runs on the provider
    # The horizon it is held until once nobody tracks its task (None: tracked, or not timed).
    until: float | None = None
    # When its caller asked for a slot (monotonic): a wait for the coordinator counts from it.
    asked: float | None = None
    # The order of its latest admission among this process's creates (see Ledger.note_accepted).
    seq: int = 0

    @property
    def id(self) -> str:
        """Its name in a shared ledger: the one it was given, else 128 random bits as uuid4
        has, made on first read (a getrandom() call each, ~1-3 µs: the in-memory ledger
        never asks)."""
        if self._id is None:
            self._id = os.urandom(16).hex()
        return self._id


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
        self.accepted = 0
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
        self.admitted = 0  # creates admitted so far (the last Lease.seq given)
        # One timer for the earliest horizon, moved earlier when a nearer hold comes (a timer
        # left sleeping until the hold it knew freed a later, nearer one minutes late).
        self._call_at = timers(clock)
        self._timer: Timer | None = None
        self._timer_at = math.inf
        # The account's events (its Account shares the ledger's here).
        self.events = _AccountEvents()
        # Creates the cap refused while our count showed room (see freed), oldest first.
        self._freed: collections.deque[asyncio.Future[bool]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        waiting = sum(1 for future, _, _ in self._waiters if not future.done())
        return waiting + sum(1 for future, _ in self._admits if not future.done())

    @property
    def full(self) -> bool:
        """True when a create could not be admitted now (the cap is reached, or others wait)."""
        return self.sent >= self.cap or bool(self._admits)

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
        events = self.events
        waiting = None  # when a waiting event was emitted: a slot_granted follows it
        if events.active:
            waiting = self._clock.now()
            events.emit(
                WaitingForSlot(
                    provider=events.provider, at=waiting, running=self.sent, cap=self.cap
                )
            )
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.refused(lease)
            raise
        if waiting is not None and events.active:
            now = self._clock.now()
            events.emit(SlotGranted(provider=events.provider, at=now, waited=now - waiting))
        return False

    async def refuse(self, lease: Lease) -> None:
        """The create of ``lease`` was refused (nothing created): hand its admission back, and
        return only once it no longer counts as out anywhere, so a retry is admitted afresh.

        Raises:
            CoordinatorUnavailableError: a shared ledger could not be told (the lease is then
                handed back locally and released there as soon as the coordinator answers).
        """
        self.refused(lease)

    def refused(self, lease: Lease) -> None:
        """The create of ``lease`` was refused (nothing created): it no longer counts as out
        here (no round trip; see :meth:`refuse`)."""
        if lease.sent:
            lease.sent = False
            self.sent -= 1
            self._wake()

    def accept(self, lease: Lease) -> None:
        """The task of ``lease`` runs on the provider (its create was accepted, or it was
        re-attached): it counts in :attr:`accepted` until released."""
        if lease.held and not lease.accepted:
            lease.accepted = True
            self.accepted += 1

    def _mark(self, lease: Lease) -> None:
        self.admitted += 1
        lease.seq = self.admitted
        lease.sent = True
        self.sent += 1
        self.peak = max(self.peak, self.sent)

    def try_acquire(self, owner: object, lease_id: str | None = None) -> Lease | None:
        """A slot now, or None when none is free (or others wait first); what
        :meth:`acquire` gives when it need not wait."""
        if self._timed:  # _expire()'s own first test, without its call per task
            self._expire()
        if self.held >= self.cap or self._waiters:
            return None
        lease = self._grant(owner, lease_id)
        lease.asked = self._clock.now()
        return lease

    async def acquire(self, owner: object, lease_id: str | None = None) -> Lease:
        """Wait for a slot, in arrival order.

        Raises:
            NanoBananaError: what :meth:`fail` hands the waiters of ``owner`` (a closed client).
        """
        lease = self.try_acquire(owner, lease_id)
        if lease is not None:
            return lease
        asked = self._clock.now()
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, owner, lease_id))
        self._ensure_timer()
        events = self.events
        told = events.active  # a slot_granted follows only a waiting event
        if told:
            events.emit(
                WaitingForSlot(provider=events.provider, at=asked, running=self.held, cap=self.cap)
            )
        try:
            lease = await future
            lease.asked = asked
            if told and events.active:
                now = self._clock.now()
                events.emit(SlotGranted(provider=events.provider, at=now, waited=now - asked))
            return lease
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
            if lease.accepted:
                lease.accepted = False
                self.accepted -= 1
            if lease.sent:
                lease.sent = False
                self.sent -= 1
            if self._admits or self._waiters:  # _wake() has someone to wake: no call per task
                self._wake()
            if self.sent < self.cap and not self._admits:
                # A slot no waiting create took: a create held after a refusal asks again.
                while self._freed:
                    waiter = self._freed.popleft()
                    if not waiter.done():
                        waiter.set_result(True)
                        break

    async def freed(self, deadline: float) -> bool:
        """Wait until a lease is released here (one of this process's tasks was seen ending,
        or its horizon passed) and no waiting create took its slot, or until ``deadline``
        (monotonic), whichever is first.

        A create the cap refused while our count showed room waits here, still admitted,
        before it asks again: only a task ending frees a slot at the provider, and asked
        again at once it would be refused again. Each such release wakes one waiter, oldest
        first.

        Returns:
            True when a release woke it, False when the deadline did.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._freed.append(future)

        def expire() -> None:
            if not future.done():
                future.set_result(False)

        timer = self._call_at(deadline, expire)
        try:
            return await future
        finally:
            timer.cancel()

    def hold_until(self, lease: Lease, horizon: float) -> None:
        """Keep ``lease`` until ``horizon`` (monotonic), then free it by itself."""
        if not lease.held:
            return
        if horizon <= self._clock.now():
            self.release(lease)
            return
        lease.until = horizon
        heapq.heappush(self._timed, (horizon, next(self._seq), lease))
        self._ensure_timer()

    def keep(self, lease: Lease) -> None:
        """Its task is tracked again (a rerun re-attached it): the horizon it was held until
        no longer frees it; it is freed when the task is seen ending, or held again."""
        lease.until = None

    def drop(self, lease_id: str) -> None:
        """A lease of ``lease_id`` left by an earlier process (killed before it could release
        it) belongs to a task that ended: it holds no slot. In memory nothing outlives the
        process, so there is nothing to drop."""

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
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf

    def _ensure_timer(self) -> None:
        # Only a horizon can free a slot when every other lease is out of reach. Rows of leases
        # released (or held again) since are dropped first: no wake-up for them.
        timed = self._timed
        while timed and (not timed[0][2].held or timed[0][2].until != timed[0][0]):
            heapq.heappop(timed)
        if not timed or timed[0][0] >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = timed[0][0]
        self._timer = self._call_at(self._timer_at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        try:
            # The clock decides, not the timer (uvloop's fire up to a millisecond early).
            self._expire()
        except Exception:
            # A failing release must not stop every later horizon from freeing its slot.
            _log.exception("freeing slots held to their horizon failed")
        self._ensure_timer()

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
        if not self._timed:  # the common case: no slot held to a horizon, no clock read
            return
        now = self._clock.now()
        while self._timed and self._timed[0][0] <= now:
            horizon, _, lease = heapq.heappop(self._timed)
            # Only its latest hold frees it, and none once its task is tracked again (keep).
            if lease.until == horizon:
                self.release(lease)
