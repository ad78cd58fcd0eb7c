"""The account ledger: one owner for what an account is using (waits through the injected clock).

What an account uses is four things, kept here and mutated nowhere else:

- **requests** in the sliding window: a create whose turn has not come waits in the account's
  queue of creates (first in, first out), and the scheduler's runner hands out the turns at
  its wake-ups (:meth:`Ledger.dispense`); status checks take a request only if one is free now
  and no create waits, so they spend what creates leave;
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
import logging
import math
from collections.abc import Callable
from typing import Final

import attrs

from .._clock import Clock, Timer, timers
from .._config import Limits
from .._errors import ClientClosedError
from .._limits import Gcra, budget, on_grid, pacing
from ..events import LimitsLowered, LimitsRecovered, _AccountEvents
from ._slots import Lease, Slots

_log = logging.getLogger("nanobanana_async")

__all__ = ("DEFAULT_HORIZON", "QUIET_PERIODS", "Lease", "Ledger", "Slots")

DEFAULT_HORIZON: Final = 300.0
"""Seconds a slot of unknown fate is held before any latency is learned (5 minutes)."""

_CONCURRENCY_SHARE: Final = 0.9  # below this share of the window, a create's 429 is the cap
# Of what the account showed it accepts, after a window 429: the count is exact once the
# refusals of requests already in flight are taken off it (see rate_limited), so the margin
# only covers the skew between our send times and the provider's arrival times.
_RATE_MARGIN: Final = 0.98
_BLIND_CUT: Final = 0.7  # of the rate, after a window 429 that says nothing of the window
# Seconds a cap episode lasts while the account's window is not known (see rate_limited).
_CAP_EPISODE: Final = 10.0
QUIET_PERIODS: Final = 3
"""Windows without a 429 before learned limits start to climb back (and a shared cut expires)."""
_RECOVERY_STEP: Final = 0.05  # of the ceiling's requests, per quiet window
# Creates handed their turns per wake, at most: as many checks are sent per turn of the
# runner, so a turn stays a few milliseconds however many creates come due at once.
_HAND_OUT: Final = 64


class _Waiting:
    """A create in its account's queue: woken with True once its turn is booked, with False
    when it must ask again (the task cap was cut meanwhile: it waits for its slot first)."""

    __slots__ = ("booked", "future", "lease", "since")

    def __init__(self, future: asyncio.Future[bool], lease: Lease | None, since: float) -> None:
        self.future = future
        self.lease = lease
        self.since = since  # when it asked: its turn is never before (see Gcra.turn)
        self.booked = math.inf  # the pace's next turn right after its own was booked


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
        self._budget = budget(limits)  # the most requests the send log may hold in a window
        self.slots = Slots(limits.concurrent_tasks, clock)
        self.steady = False
        """Whether requests go at the steady pace, never in a burst (see _set_effective)."""
        # The account's events; its Account hands the same to the slots (a subclass's too).
        self.events = _AccountEvents()
        self._sent: list[float] = []  # monotonic send times, oldest first
        self._last_429 = -math.inf
        self._recovered_at = -math.inf
        # Until when a 429 belongs to the episode of the last one (see rate_limited).
        self._window_episode = -math.inf
        self._cap_episode = -math.inf
        # Bumped when the turns booked ahead are dropped (a cut of the task cap): each holder
        # books again, after a slot is free if it is a create (RedisLedger.acquire_request;
        # here the queued creates are sent back instead, see _bounce).
        self._bookings = 0
        self._shown_tasks = 0  # the most tasks the account accepted at once (see _may_burst)
        # Whether the last window cut was measured (not blind): refusals of requests sent
        # before it then come off what it counted as accepted.
        self._measured: int | None = None  # what it counted as accepted
        # The cap a create's 429 taught (never raised by an acceptance; see _has_room).
        self._taught_cap: int | None = None
        # The admission order (Lease.seq) of the earliest create the cap refused in its
        # episode: a create admitted after it and accepted shows no more running at once.
        self._refused_seq: int | None = None
        self.requests = 0
        # Creates waiting for their turn, oldest first (see dispense), and how to have the
        # runner wake at a time (its one timer; without a runner, a timer of the ledger's own).
        self._creates: collections.deque[_Waiting] = collections.deque()
        self._wake_at: Callable[[float], None] = self._arm_own
        self._own: Timer | None = None
        self._own_at = math.inf
        self.dispensed = 0  # creates handed their turn from the queue so far

    # ----------------------------------------------------------------- requests

    async def acquire_request(self, lease: Lease | None = None) -> None:
        """Wait for a request's turn in the window (creates go before status checks).

        A request whose turn is free now and that no other create waits before goes at
        once; any other waits in the account's queue of creates, without a timer of its own:
        the runner's wake-ups hand out the turns (:meth:`dispense`), so a 429's pause or a
        limit lowered while it waits moves its turn, and a cut of the task cap sends it back
        to wait for its slot. ``lease``: the create's slot; while no slot is free it asks for
        no turn (a turn it could not use would be lost to the status checks): it waits for
        its admission first, and returns with the lease admitted.

        Raises:
            ClientClosedError: the scheduler stopped (its last client closed) while it waited.
        """
        while True:
            now = self._clock.now()
            if self.effective is not self.configured:  # unlowered: nothing to recover, no call
                self._recover(now)
            if lease is not None and lease.sent and self.slots.sent > self.slots.cap:
                self.slots.refused(lease)  # admitted here before a cap cut: over the new cap
            if lease is not None and not lease.sent and self.slots.full:
                await self.slots.admit(lease)
                now = self._clock.now()  # read once per step: again only after a wait
            creates = self._creates
            free = self._window_free_at(now)
            if not creates:
                burst = self._may_burst(lease)
                if self.gcra.turn(now, burst=burst) <= now and free <= now:
                    self.gcra.reserve(now, burst=burst)
                    return
            # Asking while the window is full is asking when it frees (see dispense).
            waiting = _Waiting(asyncio.get_running_loop().create_future(), lease, max(now, free))
            creates.append(waiting)
            if len(creates) == 1:
                self._wake_at(self._next_turn(waiting, now))
            try:
                if await waiting.future:
                    return
            except asyncio.CancelledError:
                future = waiting.future
                if not future.done() or future.cancelled():
                    # Cancelled while queued: it booked nothing, and leaves its place.
                    self._leave(waiting)
                elif future.exception() is None and future.result():
                    # Cancelled in the tick its turn was booked: nothing goes on that turn.
                    self._pass_on(waiting)
                raise

    def dispense(self, now: float) -> float:
        """Hand their turns to the queued creates whose turn has come, oldest first (the
        runner calls this at each of its wake-ups, before it sends status checks).

        A turn is what :class:`Gcra` books for a create asking when it joined the queue,
        after the ones before it: never before it, so the window bound is the even pace's.
        Returns when to call again: the next create's turn on the wake grid, ``now`` when
        more may go after the creates woken here run, ``inf`` when none waits.
        """
        creates = self._creates
        if not creates:
            return math.inf
        self._recover(now)
        handed = 0
        gcra = self.gcra
        while creates:
            waiting = creates[0]
            if waiting.future.done():
                creates.popleft()  # its caller was cancelled
                continue
            lease = waiting.lease
            if lease is not None and lease.sent and self.slots.sent > self.slots.cap:
                creates.popleft()  # over a cap cut since: it waits for its slot again
                waiting.future.set_result(False)
                continue
            if handed == _HAND_OUT:
                return now
            burst = self._may_burst(lease)
            at = gcra.turn(waiting.since, burst=burst)
            if at > now:
                return on_grid(at)
            free = self._window_free_at(now, handed)
            if free > now:
                if handed:
                    return now  # those woken here are counted once sent: look again then
                # Its pace turn passed while the window was full: paced from when the window
                # frees, not from then (booked in the past, the creates behind it would all go
                # at once, as far as the window lets them).
                waiting.since = max(waiting.since, free)
                return on_grid(free)
            gcra.reserve(at, burst=burst)
            waiting.booked = gcra.booked  # to undo, should its caller leave in this tick
            creates.popleft()
            waiting.future.set_result(True)
            handed += 1
            self.dispensed += 1
        return math.inf

    @property
    def creates_waiting(self) -> bool:
        """Whether a create waits in the queue for its turn."""
        return bool(self._creates)

    def dispense_through(self, wake_at: Callable[[float], None]) -> None:
        """Have ``wake_at(time)`` (the runner's one timer) wake the caller of :meth:`dispense`
        when a queued create's turn comes, instead of a timer of the ledger's own."""
        self._wake_at = wake_at

    def _next_turn(self, waiting: _Waiting, now: float) -> float:
        at = max(self.gcra.turn(waiting.since, burst=self._may_burst(waiting.lease)), now)
        return on_grid(max(at, self._window_free_at(now)))

    def _leave(self, waiting: _Waiting) -> None:
        creates = self._creates
        was_first = bool(creates) and creates[0] is waiting
        try:
            creates.remove(waiting)
        except ValueError:
            return
        if was_first:
            # The checks it held back, or the create after it, may go sooner.
            now = self._clock.now()
            self._wake_at(self._next_turn(creates[0], now) if creates else now)

    def _pass_on(self, waiting: _Waiting) -> None:
        # A turn booked for a create whose caller left before it could send: the next create
        # waiting takes it (booked in the pace already, it books nothing more), or, with none
        # waiting, the booking is undone. Kept, the pace lost a turn, and every create queued
        # behind went one interval later for a request never sent.
        creates = self._creates
        while creates:
            head = creates[0]
            if head.future.done():
                creates.popleft()  # its caller left too
                continue
            lease = head.lease
            if lease is not None and lease.sent and self.slots.sent > self.slots.cap:
                break  # over a cap cut: the dispenser sends it back to wait for its slot
            creates.popleft()
            head.booked = waiting.booked  # its turn now: undone if it leaves in this tick too
            head.future.set_result(True)
            return
        self.dispensed -= 1
        self.gcra.unreserve(waiting.booked)
        if creates:
            self._wake_at(self._next_turn(creates[0], self._clock.now()))

    def _bounce(self) -> None:
        # The queued creates ask again (see rate_limited): each waits for its slot first.
        creates, self._creates = self._creates, collections.deque()
        for waiting in creates:
            if not waiting.future.done():
                waiting.future.set_result(False)

    def _arm_own(self, at: float) -> None:
        # Without a runner (a ledger on its own): one timer of the ledger's, for the head.
        if at >= self._own_at:
            return
        if self._own is not None:
            self._own.cancel()
        self._own_at = at
        self._own = timers(self._clock)(at, self._own_wake)

    def _own_wake(self) -> None:
        self._own, self._own_at = None, math.inf
        at = self.dispense(self._clock.now())
        if at < math.inf:
            self._arm_own(at)

    def _may_burst(self, lease: Lease | None) -> bool:
        # A create beyond the most tasks the account has shown it runs, while another create
        # is still unanswered, goes at the steady pace: the cap may be there, and each create
        # sent before the first one's 429 comes back would draw its own.
        if lease is None:
            return True
        own = 1 if lease.sent else 0
        unanswered = self.slots.sent - self.slots.accepted - own
        return unanswered <= 0 or self.slots.sent - own < self._shown_tasks

    async def refresh_request(self, granted: float) -> None:
        """The send of a turn taken at ``granted`` (monotonic) goes now: take a fresh turn if
        a 429 paused the account since, or a shared window may have forgotten that one (here
        the turn counts from the send, :meth:`note_send`); and while the send log is full
        (others went first after a stall of the loop), wait for room."""
        # is_paused() and has_send_room() on one clock read: once per create.
        now = self._clock.now()
        if self.gcra.is_paused(now):
            await self.acquire_request()
            now = self._clock.now()
        if self._window_free_at(now) > now:
            await self.wait_send_room()

    def has_send_room(self) -> bool:
        """Whether a request sent now keeps the send log within the budget in every window."""
        now = self._clock.now()
        return self._window_free_at(now) <= now

    async def wait_send_room(self) -> None:
        """Wait until a request sent now keeps the send log within the budget (the sender
        has its turn already: this only holds it while a stall's backlog leaves the window)."""
        while (free := self._window_free_at(now := self._clock.now())) > now:
            await self._clock.sleep_until(on_grid(free))

    admit_first = False
    """Whether a create waits for its slot admission before its turn in the window: a shared
    ledger counts a turn from the moment it is granted, so a turn taken before a wait for
    admission would be spent by the time the create goes."""

    def demand(self, checks: int) -> None:
        """Say how many status checks wait for a request (a shared ledger sizes its batches)."""

    def try_take_request(self, now: float) -> bool:
        """Take a request only if one is free now and no create waits for one (status
        checks)."""
        if self._creates:
            return False
        # _window_free_at(now) <= now, inlined as in take_send: once per status check.
        sent, budget = self._sent, self._budget
        if len(sent) < budget or sent[-budget] + self.effective.per <= now:
            return self.gcra.try_take(now)
        return False

    def next_request_free(self) -> float:
        """The earliest time :meth:`try_take_request` can succeed (not before the first
        queued create's turn)."""
        now = self._clock.now()
        free = max(self.gcra.next_free(), self._window_free_at(now))
        if self._creates:
            free = max(free, self._next_turn(self._creates[0], now))
        return free

    def _window_free_at(self, now: float, pending: int = 0) -> float:
        # The pace bounds the turns, not the sends: a turn is sent after it is taken, later
        # when the loop lags, and the turns booked through a stall of the loop all go when it
        # ends, on top of the paced ones after it (a window then held the turns of a window
        # plus the stall: 1,001 of 1,000 in scenario 1b). Once the limits were lowered, the
        # requests sent at the old pace sit in the account's window too. So the send log
        # bounds every send as well: one comparison, as the log is in send order.
        # ``pending``: requests let go but not sent yet (counted once sent, see note_send).
        sent, budget = self._sent, self._budget
        room = budget - pending
        if room > 0 and (len(sent) < room or sent[-room] + self.effective.per <= now):
            return now
        if pending:
            return math.nextafter(now, math.inf)
        return sent[-budget] + self.effective.per

    def note_send(self) -> None:
        """Count one request sent now (sent means counted, whatever its outcome)."""
        self._count_send(self._clock.now())

    def take_send(self) -> bool:
        """:meth:`has_send_room` and then :meth:`note_send` in one (a status check's send):
        count one request sent now and return True if the send log has room for it; else
        count nothing and return False (the caller waits in :meth:`wait_send_room`)."""
        now = self._clock.now()
        # _window_free_at(now) <= now, inlined (the budget is at least 1): once per check.
        sent, budget = self._sent, self._budget
        if len(sent) < budget or sent[-budget] + self.effective.per <= now:
            self._count_send(now)
            return True
        return False

    def _count_send(self, now: float) -> None:
        # Every counted send comes here (a shared ledger also tells the others).
        self.requests += 1
        sent = self._sent
        sent.append(now)
        if not len(sent) & 63:
            # The trim only bounds memory (the window reads the log's tail): looked at once
            # every 64 sends rather than a search per send.
            self._trim(now - max(self.configured.per, self.effective.per))

    window_in_journal = True
    """Whether a journal should remember this ledger's recent sends for a rerun (a shared
    ledger's window outlives the process by itself)."""

    def recent_sends(self) -> list[float]:
        """Monotonic times of the requests sent in the longest window the account may have."""
        horizon = self._clock.now() - max(self.configured.per, self.effective.per)
        return self._sent[bisect.bisect_right(self._sent, horizon) :]

    def seed_sends(self, times: list[float]) -> None:
        """Count requests an earlier process sent on this account, at these monotonic times
        (a killed run, as its journal remembers them): the provider's window still holds
        them, so until they leave it this process's sends are bounded by the send log too,
        not by the pace alone (which starts afresh and would overfill the window)."""
        now = self._clock.now()
        per = max(self.configured.per, self.effective.per)
        kept = [at for at in times if at > now - per]
        if not kept:
            return
        self._sent = sorted(self._sent + kept)

    def adopt_learned(self, limits: Limits, *, age: float) -> None:
        """Hold limits an earlier run on this account learned ``age`` seconds ago (its journal
        says so) as if learned here then: they recover after the same quiet period, and are
        never above the configured ceiling. Limits older than the quiet period are dropped."""
        ceiling = self.configured
        if age >= QUIET_PERIODS * limits.per:
            return
        rate = min(limits.requests / limits.per, ceiling.requests / ceiling.per)
        requests = max(1, math.floor(rate * limits.per))
        cap = max(1, min(limits.concurrent_tasks, ceiling.concurrent_tasks))
        learned = attrs.evolve(ceiling, requests=requests, per=limits.per, concurrent_tasks=cap)
        if learned == self.effective or learned == ceiling:
            return
        self._last_429 = max(self._last_429, self._clock.now() - age)
        self._set_effective(learned, level=logging.INFO, note="learned by an earlier run")

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

    def rate_limited(
        self, *, retry_after: float | None, creating: bool, lease: Lease | None = None
    ) -> bool:
        """Learn from a 429; returns True when it was about the task cap (no pause needed).

        One episode, one cut: the 429s that answer requests sent before the limits were cut,
        those inside the pause and those inside one window of the cut, show the same overflow
        again and teach nothing new (no second cut, no second warning). A cap is never cut
        below the tasks the account showed it runs (:meth:`note_accepted` raises it back).
        ``creating``: the 429 answered a create whose slot is still held by the caller;
        ``lease``: that slot (its admission order bounds what later acceptances teach).
        """
        now = self._clock.now()
        self._last_429 = now
        running = self.slots.sent - (1 if creating else 0)
        if creating and self._has_room(running, now):
            # Not the cap: by our own count the account runs fewer tasks than the cap it
            # refused at, so its window is full. Read as the cap (no pause), the creates and
            # checks that follow went on into the full window, each drawing its own 429.
            creating = False
        if creating and now < self._cap_episode:
            # One more create of the burst the cap was cut for: it waits a slot. Even with
            # fewer running than the cap (learned back up, it may count a task the provider
            # had ended unseen): never a window 429. The cap is not lowered on it, as what
            # runs now is not what ran when the provider refused it (tasks seen ending since
            # would walk the cap below the account's); the next cap 429 after the episode does.
            self._note_refused(lease)
            return True
        if self.gcra.is_paused(now):
            # Nothing is sent during the pause: this answers a request sent before the cut,
            # which the cut counted as accepted. It was refused: count it off.
            self._refused_in_flight()
            return False
        if now < self._window_episode:
            return False
        in_window = self.requests_in_window()
        window_budget = self.effective.requests * (1.0 - self.effective.safety_margin)
        if creating and running >= 1 and in_window < _CONCURRENCY_SHARE * window_budget:
            # The account runs the tasks it accepted, and refused one more: that is its cap
            # (creates still in flight may be accepted yet, and then raise it back). Even under
            # a cap already learned: the tasks we count as running include some the provider
            # has ended unseen, so a learned cap can be one too high, and a window this far
            # from full cannot be what refused it.
            cap = max(1, min(running, self.slots.accepted))
            self._taught_cap = cap
            self._refused_seq = None
            self._note_refused(lease)
            if cap < self.effective.concurrent_tasks:
                self._set_effective(attrs.evolve(self.effective, concurrent_tasks=cap))
                # The creates that booked turns under the old cap mostly cannot go now: their
                # turns would go unused while status checks (which end tasks and free slots)
                # wait behind them. Drop them; each books again once it has a slot.
                self._bookings += 1
                self.gcra.cancel_bookings(now)
                self._bounce()
            episode = self.effective.per
            if self._window_unknown():
                # The configured per says nothing of the account (the default's 60 s made a
                # minute of cap 429s "the same burst", never taught from). The creates in
                # flight at the cut come back within a round trip, well inside this.
                episode = min(episode, _CAP_EPISODE)
            self._cap_episode = now + episode
            return True
        old_per = self.effective.per
        per, requests = self._estimate_window(now, retry_after)
        if requests / per < self.effective.requests / self.effective.per:
            self._set_effective(attrs.evolve(self.effective, requests=requests, per=per))
        else:
            self._measured = None  # nothing was cut: nothing to make exact
        # What was sent at the old pace stays in the account's window for one more window.
        self._window_episode = now + max(old_per, self.effective.per)
        return False

    def _has_room(self, running: int, now: float) -> bool:
        # Whether a create's 429 cannot have been the task cap: the window is not known yet
        # (its rate was never cut below the ceiling's), and we run fewer tasks than the cap a
        # 429 taught. The provider runs no more than we count (a task ended unseen is still
        # counted), and that cap was exact: taught during the ramp, before any task ended.
        # Under a learned window the window's own count tells them apart instead.
        taught = self._taught_cap
        return (
            taught is not None
            and running < taught
            and self._window_unknown()
            and self._sole_sender(now)
        )

    def _window_unknown(self) -> bool:
        ceiling, limits = self.configured, self.effective
        return limits.requests / limits.per >= ceiling.requests / ceiling.per

    def _sole_sender(self, now: float) -> bool:
        # Whether this process's count of running tasks is the account's (see RedisLedger).
        return True

    def note_accepted(self, lease: Lease) -> None:
        """A create of ``lease`` was accepted: the task runs. When more ran at once than the
        learned cap, the account showed a higher one, and the cap goes back up: by one per
        create admitted before the one the cap refused (the provider took it before that
        refusal, so it ran then), never for one admitted after. The provider took that one
        because a task had ended, which the client may not have seen yet: counted, it raised
        the cap far above the account's under a lagging loop (64-152 for 50)."""
        self.slots.accept(lease)
        self._shown_tasks = max(self._shown_tasks, self.slots.accepted)
        refused = self._refused_seq
        if refused is not None and lease.seq > refused:
            return
        cap = self.effective.concurrent_tasks
        shown = min(self.slots.accepted, self.configured.concurrent_tasks)
        if refused is not None:
            shown = min(shown, cap + 1)
        if shown > cap:
            self._set_effective(
                attrs.evolve(self.effective, concurrent_tasks=shown), level=logging.DEBUG
            )

    def _note_refused(self, lease: Lease | None) -> None:
        # Without the refused lease, every create admitted so far may still show more.
        seq = lease.seq if lease is not None else self.slots.admitted
        if self._refused_seq is None or seq < self._refused_seq:
            self._refused_seq = seq

    def _estimate_window(self, now: float, retry_after: float | None) -> tuple[float, int]:
        # The account's window ends when its oldest counted request leaves it, which is when
        # the Retry-After ends: so it spans from our first send of this busy spell to then.
        # A missing or implausible hint (longer than any window we know) says nothing about
        # the window: cut the rate multiplicatively instead, as AIMD does.
        ceiling = max(self.configured.per, self.effective.per)
        if retry_after is None or not 0 < retry_after <= ceiling:
            self._measured = None
            cut = max(1, math.floor(self.effective.requests * _BLIND_CUT))
            return self.effective.per, cut
        start = self._spell_start(now, ceiling)
        per = min(ceiling, max(1.0, now - start + retry_after))
        # Less the request this 429 refused: it was sent, but the account did not take it.
        self._measured = max(1, self._shown(now, per) - 1)
        return per, max(1, math.floor(self._measured * _RATE_MARGIN))

    def _refused_in_flight(self) -> None:
        if self._measured is None or self._measured <= 1:
            return
        self._measured -= 1
        requests = max(1, math.floor(self._measured * _RATE_MARGIN))
        if requests < self.effective.requests:
            # The same episode's count made exact, not a new cut: no second warning.
            self._set_effective(
                attrs.evolve(self.effective, requests=requests), level=logging.DEBUG
            )

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

    def _recover(self, now: float) -> None:
        effective = self.effective
        if effective is self.configured or effective == self.configured:  # `is`: no __eq__ call
            return
        quiet = QUIET_PERIODS * self.effective.per
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

    def _set_effective(self, limits: Limits, *, level: int | None = None, note: str = "") -> None:
        old, self.effective = self.effective, limits
        self._budget = budget(limits)
        interval, burst = pacing(limits)
        # The account showed it is smaller than configured, so its window may be too: no
        # bursts until a 429 tells. A burst at the window's edge is sent whole before the
        # first refusal comes back, and each request of it draws its own 429.
        self.steady = (
            limits.concurrent_tasks < self.configured.concurrent_tasks and self._window_unknown()
        )
        self.gcra.retune(interval, 1 if self.steady else burst)
        self.slots.set_cap(limits.concurrent_tasks)
        lowered = (
            limits.concurrent_tasks < old.concurrent_tasks
            or limits.requests / limits.per < old.requests / old.per
        )
        if level is None:
            level = logging.WARNING if lowered else logging.INFO
        events = self.events
        if events.active:
            if lowered:
                cap_cut = limits.concurrent_tasks < old.concurrent_tasks
                events.emit(
                    LimitsLowered(
                        provider=events.provider,
                        at=self._clock.now(),
                        requests=limits.requests,
                        per=limits.per,
                        concurrent_tasks=limits.concurrent_tasks,
                        reason=note or ("tasks" if cap_cut else "window"),
                    )
                )
            else:
                events.emit(
                    LimitsRecovered(
                        provider=events.provider,
                        at=self._clock.now(),
                        requests=limits.requests,
                        per=limits.per,
                        concurrent_tasks=limits.concurrent_tasks,
                    )
                )
        _log.log(
            level,
            "account limits %s to %d requests per %.1f s and %d tasks at once "
            "(configured: %d per %.1f s, %d tasks)%s",
            "lowered" if lowered else "raised",
            limits.requests,
            limits.per,
            limits.concurrent_tasks,
            self.configured.requests,
            self.configured.per,
            self.configured.concurrent_tasks,
            f"; {note}" if note else "",
        )

    def _trim(self, horizon: float) -> None:
        # Amortized: drop the stale head in one slice once it is a sizeable share of the log.
        stale = bisect.bisect_right(self._sent, horizon)
        if stale > 256 and stale * 2 > len(self._sent):
            del self._sent[:stale]

    async def aclose(self) -> None:
        """Stop the ledger's timers; the creates still waiting for a turn fail with
        :class:`ClientClosedError`."""
        if self._own is not None:
            self._own.cancel()
            self._own, self._own_at = None, math.inf
        creates, self._creates = self._creates, collections.deque()
        for waiting in creates:
            if not waiting.future.done():
                waiting.future.set_exception(
                    ClientClosedError("the client was closed while a request waited for its turn")
                )
        await self.slots.aclose()
