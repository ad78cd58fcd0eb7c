"""The account ledger shared through Redis: every client of one provider and key, in any process
on any host, shares the window, the slots, the pause and the effective limits (network I/O).

Why our own Lua rather than the ``limits`` library: its moving window is one round trip per
request and knows nothing of task slots, leases with horizons, a shared pause or limits that
move; and its asyncio Redis backend brings a second Redis client. The three scripts below do
each decision in one atomic round trip on the Redis server's clock (``TIME``), so the hosts'
clocks never matter.

Keys (``nanobanana:<sha256 of provider, base URL and key>:…``, never the key itself):

- ``win``: a sorted set of request grants scored by grant time; a grant is counted from the
  moment it is given, whether or not its request is sent (unused grants are budget lost, never
  a breach). Status checks take grants in small batches that expire locally after
  :data:`_TOKEN_TTL` so a late request is never sent on a grant the window has forgotten.
- ``pace``: the theoretical arrival time of the shared pace (one process's GCRA, over the
  window plus the slack). A create *books* its turn in it, up to ``MAX_AHEAD`` seconds ahead
  (counted in ``win`` from that turn), and is sent at it; status checks take only turns free
  now. So creates go first in every process, as one process's booked creates do, and the window
  is spent evenly instead of in a burst followed by a stall (measured: the burst made the
  checks of four processes find their tasks still running, 2.6 requests per task against 2.04).
- ``slots``: a sorted set of leases (creates that may be running) scored by expiry. A lease
  is admitted with an expiry of :data:`DEFAULT_HORIZON`; while its process tracks the task, a
  heartbeat renews it (one round trip per process every third of :data:`LEASE_TTL`, never
  lowering it); when the process can no longer see the task, it sets the expiry to the task's
  horizon and stops renewing; when it sees the task end, it removes it. A killed process's
  leases therefore come back at their horizon (or a TTL after its last heartbeat), never
  sooner. With a journal, a lease id is derived from the request's journal key (a digest of
  the host, the journal's path and that key), so a process restarted from its journal
  re-attaches to its leases instead of taking new ones.
- ``epoch``, ``rebuild``, ``old``: the run id of the Redis that holds the state, the end of the
  rebuild after a restart, and the leases a snapshot brought back that await their owners
  (see ``_redis_store``).
- ``pause``: the end of the account's pause after a 429.
- ``limits``: the limits a process learned from a 429, for every process: they expire after
  the quiet period (:data:`QUIET_PERIODS` of their window) that starts recovery, so each
  process adopts them, then climbs back to its own ceiling by itself; no process is ever
  held above its own configured limits, nor lowered by a hash that no longer expires.
- ``sent``: a sorted set of the requests each process sent, scored by send time: a 429 is
  learned from what was sent, not from grants (a batch grant may go unused).

Fail closed: when Redis cannot be reached, no create is sent; one reconnect loop probes it and
a caller waiting for a grant or an admission gets :class:`CoordinatorUnavailableError`
``Timeouts.coordinator`` seconds after it asked (or after Redis left). Status checks of tasks
already running go on under a local tenth of the window (see ``RedisLedger._take_away``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._clock import Clock
from .._config import Limits
from .._errors import CoordinatorStateError, CoordinatorUnavailableError
from .._limits import Gcra
from ..events import SlotGranted, WaitingForSlot
from ._ledger import DEFAULT_HORIZON, QUIET_PERIODS, Lease, Ledger, Slots
from ._redis_store import POLL_MIN, RedisStore, account_prefix, connect, pace, slack

__all__ = ("RedisLedger", "RedisSlots", "account_prefix", "connect", "ledger_factory")

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logging.getLogger("nanobanana_async")

_TOKEN_TTL: Final = 0.25  # at most this long may a batch-granted request wait before it is sent
_CHECK_POLL: Final = 0.05  # seconds at least between refused asks for status checks' grants
# A turn this close goes at once: a timer costs a loop turn (a whole millisecond on uvloop),
# and a request sent this early still lands inside the window's slack.
_EARLY: Final = 0.001
_BOOK_MAX: Final = 8  # turns one call books for this process's waiting creates
# At most this late is a turn booked for a create of this process when it takes it (they queue
# for it, so it is handed over within a few loop turns; a later one's caller left).
_HANDOFF_MAX: Final = 0.05
_BATCH_MAX: Final = 32
_ADMIT_POLL: Final = 0.05  # seconds between a process's asks for a slot while the cap is full
_FLUSH_EVERY: Final = 0.02
_SENT_FLUSH: Final = 0.05  # seconds between writes of this process's sends to ``sent``
_AWAY_SHARE: Final = 0.1  # of the window, for status checks while Redis is away


def ledger_factory(
    url: str, prefix: str, limits: Limits, clock: Clock, max_wait: float
) -> Callable[[], RedisLedger]:
    """Makes the account's ledger on the Redis at ``url`` when the account is first used."""

    def make() -> RedisLedger:
        return RedisLedger(limits, clock, redis=connect(url), prefix=prefix, max_wait=max_wait)

    return make


class RedisSlots(Slots):
    """Slots whose admissions are shared through Redis; grants and waiting stay local.

    A lease lives as long as its owner tracks its task: while this process tracks it, one
    heartbeat every third of :data:`LEASE_TTL` renews all its leases in one round trip; once it
    can no longer see the task, the lease is held to the task's horizon and no longer renewed.
    A killed process's leases therefore come back after its tasks' horizon (or
    :data:`LEASE_TTL` after its last heartbeat, if later), never while it still runs.
    """

    def __init__(
        self, cap: int, clock: Clock, store: RedisStore, limits: Callable[[], Limits]
    ) -> None:
        super().__init__(cap, clock)
        self._store = store
        self._limits = limits
        self._ops: list[tuple[str, str, float]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._admitting = asyncio.Lock()
        self._asking = 0  # leases in admit(): the slots this process waits for
        self._next = -math.inf  # when this process may ask for a slot again
        self._member = uuid.uuid4().hex[:12]  # this process in the line for slots
        self._out: dict[str, Lease] = {}  # admitted by this process, until released
        self._held: dict[str, float] = {}  # of those, held to a horizon (server time)
        self._beat: asyncio.Task[None] | None = None
        self._closing = False
        store.on_restart.append(self.readmit)

    def try_admit(self, lease: Lease) -> bool:
        return lease.sent  # an admission needs a round trip: always through admit()

    async def admit(self, lease: Lease) -> bool:
        # One poller per process, the others queue behind it in arrival order: the shared cap
        # costs one round trip per try, not one per waiting caller. Each caller's wait for an
        # unreachable Redis counts from when it came (see RedisStore.call).
        #
        # The processes wait in line in Redis (see _ADMIT): slots freed are handed out one per
        # process in line, in turn, and the first in line asks most often. Whichever asked
        # first took a freed slot before, and the process that had just got one asked again
        # at once for its next lease: 53 admissions against 27 for two processes of equal
        # demand, in 1.5 s; then, with the line, the head took all but one of several slots
        # freed at once.
        since = self._clock.now() if lease.asked is None else lease.asked
        immediate = not self._admitting.locked()
        # Redis hands this process at most as many slots at once as it has leases asking.
        self._asking += 1
        try:
            return await self._admit(lease, since, immediate)
        finally:
            self._asking -= 1

    async def _admit(self, lease: Lease, since: float, immediate: bool) -> bool:
        events = self.events
        waiting: float | None = None  # when a waiting event was emitted: slot_granted follows
        async with self._admitting:
            while True:
                closed = self.closed.get(lease.owner)
                if closed is not None:
                    raise closed
                if self._next > self._clock.now():
                    immediate = False
                    if waiting is None and events.active:
                        waiting = self._waiting()
                    await self._clock.sleep_until(self._next)
                    continue  # its owner may have closed meanwhile
                admitted, rebuilding, room = await self._store.admit(
                    lease.id,
                    self.cap,
                    DEFAULT_HORIZON,
                    self._limits(),
                    force=False,
                    since=since,
                    member=self._member,
                    waiting=self._asking,
                    holding=len(self._out),
                )
                now = self._clock.now()
                if admitted:
                    # The cap is full now: this process's next lease waits its turn in line,
                    # asking as often as the first in line (a slot handed to it while it
                    # waited longer stayed unused: 40 admissions a second, not 80, with two
                    # processes and 4 slots held 50 ms each).
                    self._next = now + 2 * POLL_MIN if room == 0 else now
                    self._mark(lease)
                    if waiting is not None and events.active:
                        events.emit(
                            SlotGranted(provider=events.provider, at=now, waited=now - waiting)
                        )
                    return immediate
                immediate = False
                if waiting is None and events.active:
                    waiting = self._waiting()
                # First in line: ask again soon; further back, a little later.
                poll = 2 * POLL_MIN if room == 0 else _ADMIT_POLL
                self._next = now + max(poll, min(rebuilding, 1.0))

    def _waiting(self) -> float:
        # Only once Redis refused this process (or its next ask waits for the line): a caller
        # merely queued behind another's round trip is not waiting for a slot. The account's
        # count is not read here; a refusal means its cap is taken (or others wait first).
        events, now = self.events, self._clock.now()
        events.emit(
            WaitingForSlot(provider=events.provider, at=now, running=self.cap, cap=self.cap)
        )
        return now

    def take(self, owner: object, lease_id: str | None = None) -> Lease:
        lease = super().take(owner, lease_id)
        self._queue("k", lease.id, DEFAULT_HORIZON)
        return lease

    def _mark(self, lease: Lease) -> None:
        super()._mark(lease)
        self._out[lease.id] = lease
        if self._beat is None or self._beat.done():
            self._beat = asyncio.get_running_loop().create_task(
                self._heartbeat(), name="nanobanana-redis-heartbeat"
            )

    def _forget(self, lease: Lease) -> None:
        self._queue("r", lease.id, 0.0)
        self._out.pop(lease.id, None)
        self._held.pop(lease.id, None)

    def release(self, lease: Lease) -> None:
        if lease.held and lease.sent:
            self._forget(lease)
        super().release(lease)

    async def refuse(self, lease: Lease) -> None:
        # One round trip, awaited: the retry that follows must not find this admission.
        if lease.sent:
            await self._store.sync([("r", lease.id, 0.0)], self._limits())
            self._out.pop(lease.id, None)
            Slots.refused(self, lease)

    def refused(self, lease: Lease) -> None:
        if lease.sent:
            self._forget(lease)
        super().refused(lease)

    def readmit(self) -> None:
        """Write back every lease this process holds (Redis restarted and may have lost them)."""
        ttl = self._store.lease_ttl
        for lease_id in self._out:
            at = self._held.get(lease_id)
            self._queue("k", lease_id, ttl) if at is None else self._queue("h", lease_id, at)

    def drop(self, lease_id: str) -> None:
        if lease_id not in self._out:
            self._queue("r", lease_id, 0.0)

    def keep(self, lease: Lease) -> None:
        if lease.held and lease.sent and lease.until is not None:
            # Its horizon was written to Redis: the lease lives as long as a tracked one again,
            # renewed by the heartbeat from now on.
            self._held.pop(lease.id, None)
            self._queue("k", lease.id, DEFAULT_HORIZON)
        super().keep(lease)

    def hold_until(self, lease: Lease, horizon: float) -> None:
        if lease.held and lease.sent:
            # No longer tracked: it stops being renewed and lives to the task's horizon.
            at = self._store.server_time(horizon)
            self._held[lease.id] = at
            self._queue("h", lease.id, at)
        super().hold_until(lease, horizon)

    async def _heartbeat(self) -> None:
        # One renewal of every tracked lease per beat, in the same round trip as other updates.
        while self._out and not self._closing:
            ttl = self._store.lease_ttl
            await self._clock.sleep_until(self._clock.now() + ttl / 3)
            for lease_id in self._out:
                if lease_id not in self._held:
                    self._queue("k", lease_id, ttl)

    def _queue(self, op: str, lease_id: str, value: float) -> None:
        self._ops.append((op, lease_id, value))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="nanobanana-redis-slots"
            )

    async def _flush(self) -> None:
        while self._ops:
            await asyncio.sleep(_FLUSH_EVERY)  # gather a few: one round trip for all
            ops, self._ops = self._ops, []
            try:
                await self._store.sync(ops, self._limits())
            except CoordinatorStateError as exc:
                _log.error("lease updates were dropped: %s", exc)
            except CoordinatorUnavailableError:
                if self._closing:
                    _log.warning(
                        "the coordinator (Redis) is unreachable: %d lease update%s lost; the "
                        "leases expire by themselves",
                        len(ops),
                        "" if len(ops) == 1 else "s",
                    )
                    return
                self._ops[:0] = ops  # in order, before anything queued since

    async def aclose(self) -> None:
        self._closing = True
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        if self._flusher is not None and not self._flusher.done():
            if self._store.down_since is not None:
                # Redis is away: closing does not wait for it; the leases expire by themselves.
                self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await super().aclose()


class RedisLedger(Ledger):
    """The ledger of one account, shared by every process through Redis.

    Args:
        limits: the configured ceiling.
        clock: the scheduler's monotonic clock.
        redis: the coordinator's client (closed with the ledger).
        prefix: the account's key prefix (:func:`account_prefix`).
        max_wait: seconds a caller waits for an unreachable Redis before
            :class:`CoordinatorUnavailableError`.
    """

    def __init__(
        self, limits: Limits, clock: Clock, *, redis: Redis, prefix: str, max_wait: float
    ) -> None:
        super().__init__(limits, clock)
        self.store = RedisStore(redis, prefix, clock, max_wait)
        self.slots = RedisSlots(limits.concurrent_tasks, clock, self.store, lambda: self.effective)
        self._member = f"{uuid.uuid4().hex[:12]}:"
        self._tokens: list[float] = []  # monotonic times batch grants were given
        self._batch = 1
        self.admit_first = True
        self._refill: asyncio.Task[None] | None = None
        self._blocked_until = -math.inf
        self._away = Gcra(limits.per, 1)  # status checks while Redis is away (_take_away)
        self._debt = 0  # of those, not yet charged to the shared window
        self._shared_count = 0
        self.stale_grants = 0  # grants a create let age past the slack, and took again
        self.lost_grants = 0  # grants taken but never sent on (expired unused)
        self._unbooked = 0  # callers of acquire_request (creates, mostly) without a turn yet
        self._booking = asyncio.Lock()
        self._handed: collections.deque[float] = collections.deque()  # turns booked for them
        self._background: set[asyncio.Task[None]] = set()
        self._sends: list[float] = []  # server times of sends not yet written to ``sent``
        self._send_seq = 0
        self._send_flusher: asyncio.Task[None] | None = None

    window_in_journal = False  # every process's grants stay in Redis's window

    def seed_sends(self, times: list[float]) -> None:
        """Nothing to seed: the shared window still holds the grants of the earlier run."""

    async def acquire_request(self, lease: Lease | None = None) -> None:
        since = self._clock.now()
        # This process's own pace first, as in memory: creates go one after another, so the
        # 429 of the first create over a cap not yet learned comes back before the next one
        # goes (sent at once, every create in flight draws its own 429).
        while True:
            self._recover(self._clock.now())
            if lease is not None and lease.sent and self.slots.sent > self.slots.cap:
                # A create is admitted before its turn here (admit_first): admitted under a
                # cap cut since, it hands its admission back and waits for a slot again.
                await self.slots.refuse(lease)
                await self.slots.admit(lease)
            booked = self._bookings
            at = self.gcra.reserve(self._clock.now(), burst=self._may_burst(lease))
            await self._clock.sleep_until(at)
            if booked != self._bookings:
                continue  # the cap was cut while this turn waited: book again
            await self._grant_one(since)
            if booked == self._bookings:
                return

    async def _grant_one(self, since: float) -> None:
        # A create books its turn in the shared pace (one round trip) and sleeps until it, as
        # one process's creates book theirs: status checks, which take only turns free now,
        # never take one a create waits for, in any process. One caller at a time books, for
        # every create waiting here (a few at a time, so processes of equal demand interleave),
        # and hands the others their turns in arrival order.
        while True:
            self._unbooked += 1
            try:
                async with self._booking:
                    at = await self._turn(since)
            finally:
                self._unbooked -= 1
            if at - self._clock.now() > _EARLY:
                await self._clock.sleep_until(at)
            if not self.is_paused():
                return
            # A 429 came while it waited: the turn falls in the pause, book again after it.

    async def _turn(self, since: float) -> float:
        while True:
            self._recover(self._clock.now())
            if self.is_paused():
                await self._clock.sleep_until(self.gcra.paused_until)
                continue
            now = self._clock.now()
            handed = self._handed
            while handed and handed[0] < now - _HANDOFF_MAX:
                handed.popleft()  # its caller left: the turn goes unused
                self.lost_grants += 1
            if handed:
                return handed.popleft()
            times, wait = await self.store.book(
                min(_BOOK_MAX, self._unbooked), self.effective, self._member, since=since
            )
            self._adopt()
            if times:
                self._handed.extend(times[1:])
                return times[0]
            now = self._clock.now()
            await self._clock.sleep_until(now + max(POLL_MIN, min(wait, 1.0)))

    async def refresh_request(self, granted: float) -> None:
        # A grant counts in the shared window for its window plus the slack, from when Redis
        # gave it; the provider counts the request when it arrives. A journal write between
        # the two (each waits its turn on the journal's one thread, behind fsyncs) took over
        # half a second under load: a request sent that late can land after every process's
        # window forgot its grant and overfill the provider's. So the send goes on a fresh
        # grant, as a status check never goes on a batch grant older than the same bound.
        # A grant handed from a batch was up to _HANDOFF_MAX old when its caller got it.
        #
        # And, as in memory, the send waits for room in this process's own send log: creates
        # booked through a stall of the loop all wake when it ends, and the shared window's
        # grants (spread over its slack) let a window of sends hold more than the budget.
        while True:
            fresh = min(_TOKEN_TTL, slack(self.effective) / 2) - _HANDOFF_MAX
            if self._clock.now() - granted > fresh or self.is_paused():
                self.stale_grants += 1
                await self.acquire_request()
                granted = self._clock.now()
            if self.has_send_room():
                return
            # The grant ages while it waits: a fresh one is taken once there is room.
            await self.wait_send_room()

    def try_take_request(self, now: float) -> bool:
        if self.gcra.is_paused(now):
            return False
        # A grant counts in the shared window from when it was given, the provider counts the
        # request when it arrives: the wait must stay well inside the slack the window adds.
        ttl = min(_TOKEN_TTL, slack(self.effective) / 2)
        while self._tokens and self._tokens[0] < now - ttl:
            self._tokens.pop(0)  # the window may have forgotten it: never send on it
            self.lost_grants += 1
        if self._tokens:
            self._tokens.pop(0)
            return True
        if self.store.down_since is not None:
            return self._take_away(now)
        if now < self._blocked_until:
            return False
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(
                self._take_batch(), name="nanobanana-redis-grants"
            )
        return False

    def next_request_free(self) -> float:
        now = self._clock.now()
        if self._tokens:
            return max(now, self.gcra.paused_until)
        if self.store.down_since is not None:
            return max(now + POLL_MIN, self._away.next_free(), self.gcra.paused_until)
        return max(now + POLL_MIN, self._blocked_until, self.gcra.paused_until)

    def _take_away(self, now: float) -> bool:
        # Redis is away. A status check only reads, and it is what ends tasks and frees their
        # slots: stopping them would strand every running task until its deadline, while a
        # 429 on one only delays the next check. So checks go on under a small local budget
        # (creates never do), and the shared window is charged for them once Redis is back.
        limits = self.effective
        interval = limits.per / max(1, math.floor(limits.requests * _AWAY_SHARE))
        self._away.retune(interval, 1)
        if not self._away.try_take(now):
            return False
        self._debt += 1
        return True

    async def _take_batch(self) -> None:
        debt = self._debt
        try:
            granted, wait = await self.store.grant(self._batch + debt, self.effective, self._member)
        except CoordinatorUnavailableError:
            return  # the store said so once; checks go on under the local budget
        now = self._clock.now()
        paid = min(granted, debt)
        self._debt -= paid
        if granted > paid:
            self._tokens.extend([now] * (granted - paid))
        elif not granted:
            # Every process's checks ask for the same few turns the pace frees: asking again
            # at each one costs a round trip per process per turn (most of the round trips,
            # measured), while turns left unused pile up for a few intervals (the pace's
            # burst), so asking a little later loses none of them.
            interval, burst = pace(self.effective)
            self._blocked_until = now + max(wait, min(_CHECK_POLL, burst * interval))

    def demand(self, checks: int) -> None:
        # Take as many grants as checks wait, no more: an unused grant is budget lost.
        self._batch = max(1, min(_BATCH_MAX, checks - len(self._tokens)))
        if self.steady:
            # No bursts while the window may be smaller than configured (see _set_effective):
            # a batch of grants is a burst of checks.
            self._batch = 1

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        # The pause is the account's: every process's grant script reads this key and waits.
        until = self.store.server_time(self._clock.now() + seconds)
        key, px = self.store.key("pause"), max(1, math.ceil(seconds * 1000))
        self._spawn(lambda: self.store.redis.set(key, repr(until), px=px))

    def _count_send(self, now: float) -> None:
        super()._count_send(now)
        self._sends.append(self.store.server_time(now))
        if self._send_flusher is None or self._send_flusher.done():
            self._send_flusher = asyncio.get_running_loop().create_task(
                self._flush_sends(), name="nanobanana-redis-sends"
            )

    async def _flush_sends(self) -> None:
        # One write per few dozen milliseconds for every send since: what a 429 is learned from.
        key = self.store.key("sent")
        while self._sends:
            await asyncio.sleep(_SENT_FLUSH)
            sends, self._sends = self._sends, []
            first = self._send_seq
            self._send_seq += len(sends)
            mapping = {f"{self._member}{first + i}": at for i, at in enumerate(sends)}
            keep = max(self.configured.per, self.effective.per) * 2 + 1.0
            oldest = sends[-1] - keep

            ttl = math.ceil(keep * 1000)

            async def write(
                mapping: dict[str, float] = mapping, oldest: float = oldest, ttl: int = ttl
            ) -> None:
                async with self.store.redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(key, mapping)
                    pipe.zremrangebyscore(key, "-inf", oldest)
                    pipe.pexpire(key, ttl)
                    await pipe.execute()

            try:
                await self.store.call(write)
            except CoordinatorUnavailableError:
                _log.warning("the coordinator (Redis) is unreachable: sends were not shared")

    def _shown(self, now: float, per: float) -> int:
        # Every process's sends: ours as we count them, the others' as the shared ``sent`` set
        # counted them over the effective window at the last grant, spread evenly over it.
        own = super()._shown(now, per)
        others = max(0, self.store.window_count - super()._shown(now, self.effective.per))
        return own + math.floor(others * min(1.0, per / self.effective.per))

    def _sole_sender(self, now: float) -> bool:
        # Other processes' tasks run on the account too when they send on it: then our count
        # of running tasks is not the account's, and a create's 429 may be the cap after all.
        own = super()._shown(now, self.effective.per)
        return self.store.window_count <= own

    def rate_limited(
        self, *, retry_after: float | None, creating: bool, lease: Lease | None = None
    ) -> bool:
        before = self.effective
        about_cap = super().rate_limited(retry_after=retry_after, creating=creating, lease=lease)
        after = self.effective
        if after.concurrent_tasks < before.concurrent_tasks or (
            after.requests / after.per < before.requests / before.per
        ):
            self._publish(after)
        return about_cap

    def _publish(self, limits: Limits) -> None:
        # Only a cut is shared, and only for the quiet period: every process adopts it at its
        # next grant and recovers from it on its own, so a cut never outlives its evidence.
        key = self.store.key("limits")
        ttl = math.ceil(QUIET_PERIODS * limits.per * 1000)
        mapping: dict[
            bytes | bytearray | memoryview[int] | str | int | float, str | int | float
        ] = {"requests": limits.requests, "per": limits.per, "cap": limits.concurrent_tasks}

        async def publish() -> None:
            async with self.store.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=mapping)
                pipe.pexpire(key, ttl)
                await pipe.execute()

        self._spawn(publish)

    def _adopt(self) -> None:
        # What another process learned, at most our own ceiling: ours from now on, recovered
        # from like a 429 of our own (after the same quiet period).
        learned = self.store.learned
        if learned is None:
            return
        requests, per, cap = learned
        current = self.effective
        slower = requests / per < current.requests / current.per
        if not slower and cap >= current.concurrent_tasks:
            return
        if slower:
            current = attrs.evolve(current, requests=requests, per=per)
        cap = max(1, min(cap, current.concurrent_tasks))
        self._last_429 = max(self._last_429, self._clock.now())
        self._set_effective(
            attrs.evolve(current, concurrent_tasks=cap),
            level=logging.INFO,
            note="learned by another process",
        )

    def _spawn(self, work: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                await self.store.call(work)
            except CoordinatorUnavailableError:
                _log.warning("the coordinator (Redis) is unreachable: a shared update was lost")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        _log.debug(
            "shared ledger: %d round trips to Redis (%s), %d grants unused, %d taken again (stale)",
            self.store.round_trips,
            ", ".join(f"{name} {n}" for name, n in sorted(self.store.calls.items())),
            self.lost_grants + len(self._tokens) + len(self._handed),
            self.stale_grants,
        )
        if self._refill is not None:
            self._refill.cancel()
        if self._send_flusher is not None:
            await asyncio.gather(self._send_flusher, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        await super().aclose()
        await self.store.aclose()
        await self.store.redis.aclose()
