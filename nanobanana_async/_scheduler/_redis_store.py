"""The Redis side of the shared ledger: the Lua scripts that grant requests and admit creates on
the Redis server's clock, the connection, and the fail-closed retry around it (does I/O).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from .._clock import Clock
from .._config import Limits
from .._errors import ConfigurationError, CoordinatorStateError, CoordinatorUnavailableError
from .._limits import paced_share

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logging.getLogger("nanobanana_async")

_SLACK_MIN: Final = 0.5
POLL_MIN: Final = 0.01

LEASE_TTL: Final = 15.0
"""Seconds a lease outlives its owner's last renewal (owners renew every third of it)."""

MAX_AHEAD: Final = 5.0
"""Seconds at most a create's grant is booked ahead of now (its turn in the shared pace)."""

ADMIT_GONE: Final = 0.5
"""Seconds after its last ask a process waiting for a slot loses its place in line (killed, or
nothing left to admit); waiting processes ask every few dozen milliseconds."""

MAX_PAUSE: Final = 3600.0  # a shared pause longer than this is not one we wrote
MAX_LEASE: Final = 86400.0  # nor a lease expiring further ahead than this

# Every script starts here. KEYS[1..4]: epoch, rebuild, slots, old. ARGV[1..3]: the hold after
# a restart (one window: the provider still counts what was sent before it), unused, the epoch
# the caller last saw ('' for none).
#
# The epoch is the Redis process's run id, so any restart is seen, whether Redis came back
# empty, from a snapshot or from its AOF, by the first process that used the account before
# it (an empty Redis looks new to a process that never saw it: the first one that did starts
# the rebuild). Then the ledger *rebuilds* for one window: nothing is admitted or granted
# while owners write their leases back (each heartbeat does). Without an AOF what Redis
# remembers may be stale: its leases move to ``old`` and those no owner re-registers by the end
# are ghosts, dropped at once (the caller that drops them logs how many). With an AOF the state
# is the last second's: leases stay, and a dead owner's still expire at their horizon.
# Keys of the wrong type or absurd values raise an error naming the key, never a hang.
_PRELUDE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function bad(key, why)
  return redis.error_reply('nanobanana-state ' .. key .. ' ' .. why)
end
local function typed(key, want)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'none' and kind ~= want then return bad(key, 'is a ' .. kind .. ', not a ' .. want) end
end
local err = typed(KEYS[1], 'hash') or typed(KEYS[2], 'string') or typed(KEYS[3], 'zset')
  or typed(KEYS[4], 'zset')
if err then return err end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local epoch = redis.call('HGET', KEYS[1], 'run')
local hold = tonumber(ARGV[1])
local function rebuild(seconds)
  local at = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if now + seconds > at then
    redis.call('SET', KEYS[2], tostring(now + seconds), 'PX', math.ceil(seconds * 1000))
  end
end
if epoch ~= run then
  redis.call('HSET', KEYS[1], 'run', run, 'at', tostring(now))
  if epoch then
    if string.match(redis.call('INFO', 'persistence'), 'aof_enabled:(%d)') ~= '1' then
      if redis.call('EXISTS', KEYS[3]) == 1 then
        redis.call('ZUNIONSTORE', KEYS[4], 2, KEYS[3], KEYS[4], 'AGGREGATE', 'MAX')
        redis.call('DEL', KEYS[3])
      end
    end
    rebuild(hold)
  elseif ARGV[3] ~= '' then
    rebuild(hold)
  end
elseif ARGV[3] ~= '' and ARGV[3] ~= run then
  -- The caller saw another Redis before this one: the window it counted is lost.
  local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '0') or 0
  if at + hold > now then rebuild(at + hold - now) end
end
local building = tonumber(redis.call('GET', KEYS[2]) or '0')
if building == nil then return bad(KEYS[2], 'is not a number') end
building = math.max(0, building - now)
local ghosts = 0
if building == 0 and redis.call('EXISTS', KEYS[4]) == 1 then
  ghosts = redis.call('ZCARD', KEYS[4])
  redis.call('DEL', KEYS[4])
end
local far = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. (now + @MAX_LEASE@), '+inf', 'LIMIT', 0, 1)
if far[1] then return bad(KEYS[3], 'holds lease ' .. far[1] .. ' expiring beyond a day') end
""".replace("@MAX_LEASE@", repr(MAX_LEASE))

# KEYS: + win, pause, limits, sent, pace. ARGV: + wanted, requests, per, margin, member prefix,
# slack, paced ('1': hold to the shared pace as well as to the window), ahead (seconds a grant
# may be booked ahead of now: creates book, status checks take only what is free now).
# Returns {granted, "now", "wait", sent, epoch, ghosts, learned, "first", "interval"}: granted
# > 0 (the i-th counted from first + i * interval, or now if later), or 0 and how long to wait;
# sent counts every process's sends in the window, learned is the limits hash's (requests,
# per, cap) while a learned cut is in force (else three nils).
#
# The pace is one process's GCRA, shared (``pace`` holds its theoretical arrival time): grants
# spread evenly over the window instead of spending it in a burst and then stalling, so checks
# that cannot go wait and their planner spaces them out (fewer find a task still running).
# Creates book their turn ahead (as in one process, where they wait in the account's queue of
# creates ahead of the checks: Ledger.dispense), so every process's creates go
# before any process's status checks, which take only what is free now; and a waiting create
# costs one round trip, not a poll each time the window frees.
_GRANT: Final = (
    _PRELUDE
    + """
err = typed(KEYS[5], 'zset') or typed(KEYS[6], 'string') or typed(KEYS[7], 'hash')
  or typed(KEYS[8], 'zset') or typed(KEYS[9], 'string')
if err then return err end
local none = {false, false, false}
if building > 0 then return {0, tostring(now), tostring(building), 0, run, ghosts, none} end
local pause = tonumber(redis.call('GET', KEYS[6]) or '0')
if pause == nil or pause ~= pause or pause == math.huge then
  return bad(KEYS[6], 'is not a finite number')
end
if pause > now then
  local ttl = redis.call('PTTL', KEYS[6])
  if ttl < 0 or pause - now > @MAX_PAUSE@ then
    return bad(KEYS[6], 'pauses for ' .. (pause - now) .. ' s (ttl ' .. ttl .. ' ms)')
  end
  return {0, tostring(now), tostring(pause - now), 0, run, ghosts, none}
end
local function limit(field, least)
  local value = redis.call('HGET', KEYS[7], field)
  if not value then return nil end
  local n = tonumber(value)
  if n == nil or n ~= n or n == math.huge or n < least then
    return nil, bad(KEYS[7], field .. ' = ' .. value)
  end
  return n
end
local l_requests, e1 = limit('requests', 1)
local l_per, e2 = limit('per', 0.001)
local _, e3 = limit('cap', 1)
if e1 or e2 or e3 then return e1 or e2 or e3 end
local requests = tonumber(ARGV[5])
local per = tonumber(ARGV[6])
-- Limits a process learned hold for everyone until they expire, never above a caller's own.
local learned = none
if l_requests and l_per and redis.call('PTTL', KEYS[7]) >= 0 then
  learned = redis.call('HMGET', KEYS[7], 'requests', 'per', 'cap')
  if l_requests / l_per < requests / per then requests, per = l_requests, l_per end
end
-- What every process sent in the window (a 429 is learned from sends, not grants).
local sent = redis.call('ZCOUNT', KEYS[8], '(' .. (now - per), '+inf')
per = per + tonumber(ARGV[9])
local budget = math.max(1, math.floor(requests * (1 - tonumber(ARGV[7]))))
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - per)
local count = redis.call('ZCARD', KEYS[5])
local burst = math.max(1, math.min(20, math.floor(budget / 100)))
local interval = per / math.max(1, budget - burst)
local tolerance = (burst - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[9]) or '0')
if tat == nil or tat ~= tat or tat > now + per + @MAX_AHEAD@ then
  return bad(KEYS[9], 'is not a time')
end
tat = math.max(tat, now)
local paced, ahead = ARGV[10] == '1', tonumber(ARGV[11])
local room = budget
local wait = 0
if paced then
  room = math.floor((now + ahead + tolerance - tat) / interval) + 1
  wait = tat - tolerance - ahead - now
end
-- A booked grant counts from now in this window (and from its turn in later ones).
local free = math.min(budget - count, room)
if free <= 0 then
  if count >= budget then
    local oldest = redis.call('ZRANGE', KEYS[5], count - budget, count - budget, 'WITHSCORES')
    local left = tonumber(oldest[2]) + per - now
    if left > per + @MAX_AHEAD@ then return bad(KEYS[5], 'holds a grant from the future') end
    wait = math.max(wait, left)
  end
  return {0, tostring(now), tostring(math.max(0, wait)), sent, run, ghosts, learned}
end
local granted = math.min(tonumber(ARGV[4]), free)
local first = now
if paced then
  first = tat - tolerance
  redis.call('SET', KEYS[9], tostring(tat + granted * interval), 'PX', math.ceil(per * 2000))
end
local seq = redis.call('INCRBY', KEYS[5] .. ':seq', granted)
for i = 1, granted do
  local at = now
  if paced then at = math.max(now, first + (i - 1) * interval) end
  redis.call('ZADD', KEYS[5], at, ARGV[8] .. (seq - i))
end
redis.call('PEXPIRE', KEYS[5] .. ':seq', math.ceil(per * 1000) + 60000)
redis.call('PEXPIRE', KEYS[5], math.ceil(per * 1000) + 1000 + math.ceil(ahead * 1000))
return {granted, tostring(now), '0', sent, run, ghosts, learned, tostring(first),
  tostring(paced and interval or 0)}
""".replace("@MAX_PAUSE@", repr(MAX_PAUSE)).replace("@MAX_AHEAD@", repr(MAX_AHEAD))
)

# KEYS: + limits, queue, asked, turns, wants, holds. ARGV: + lease id, cap, expiry delta, force
# (1: a task already running: over the cap, and even while the ledger rebuilds), the caller's
# process ('' for none), how many of its creates wait for a slot (this one included), how many
# slots it holds. Returns
# {admitted, "now", epoch, ghosts, "wait", slots the caller may take at once after this one,
# processes served before the caller}; a lease already admitted keeps its place (re-attach).
#
# Processes wait for slots in a line (``queue``, scored by turn: a process joins at the end;
# ``asked``, by when each last asked: a process that stopped asking for @GONE@ s left). Each
# ask first hands the slots free under the cap out as turns (``turns``: process -> slots kept
# for it), each to the process holding fewest (``holds``, as it said at its last ask; among
# equals, the first in line: one per process in turn), never more than a process has creates
# waiting (``wants``); a process served goes to the end of the line. A caller is admitted on a
# turn of its own, so several slots freed at once are shared among the processes waiting, not
# taken by whichever asks first (the head of the line used to take all but one), and a process
# that came first to a free account and took its slots does not keep more than its share.
# Turns count against the cap like leases: never more admitted than the cap.
_ADMIT: Final = (
    _PRELUDE
    + """
local err = typed(KEYS[5], 'hash') or typed(KEYS[6], 'zset') or typed(KEYS[7], 'zset')
  or typed(KEYS[8], 'hash') or typed(KEYS[9], 'hash') or typed(KEYS[10], 'hash')
if err then return err end
local member = ARGV[8]
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - @GONE@)) do
  redis.call('ZREM', KEYS[6], gone)
  redis.call('ZREM', KEYS[7], gone)
  redis.call('HDEL', KEYS[8], gone)
  redis.call('HDEL', KEYS[9], gone)
  redis.call('HDEL', KEYS[10], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local expiry = now + tonumber(ARGV[6])
local force = ARGV[7] == '1'
if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  redis.call('ZADD', KEYS[3], 'GT', expiry, ARGV[4])
  return {1, tostring(now), run, ghosts, '0',
    math.max(0, tonumber(ARGV[5]) - redis.call('ZCARD', KEYS[3]))}
end
if force then
  redis.call('ZREM', KEYS[4], ARGV[4])
  redis.call('ZADD', KEYS[3], expiry, ARGV[4])
  return {1, tostring(now), run, ghosts, '0'}
end
if building > 0 then return {0, tostring(now), run, ghosts, tostring(building)} end
local cap = tonumber(ARGV[5])
local learned = redis.call('HGET', KEYS[5], 'cap')
if learned then
  local n = tonumber(learned)
  if n == nil or n ~= n or n < 1 or n == math.huge then
    return bad(KEYS[5], 'cap = ' .. learned)
  end
  -- A cap another process learned holds while it lasts, never above the caller's own.
  if redis.call('PTTL', KEYS[5]) > 0 and n < cap then cap = n end
end
local function last()
  local tail = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')
  return tail[2] and tonumber(tail[2]) or 0
end
local function count(hash, m)
  local n = tonumber(redis.call('HGET', hash, m) or '0')
  if n == nil then return 0 end
  return n
end
local held = redis.call('ZCARD', KEYS[3])
if member ~= '' then
  redis.call('ZADD', KEYS[7], now, member)
  if not redis.call('ZSCORE', KEYS[6], member) then
    redis.call('ZADD', KEYS[6], last() + 1, member)
  end
  redis.call('HSET', KEYS[9], member, math.max(1, math.floor(tonumber(ARGV[9]) or 1)))
  redis.call('HSET', KEYS[10], member, math.max(0, math.floor(tonumber(ARGV[10]) or 0)))
end
local reserved = 0
local kept = redis.call('HVALS', KEYS[8])
for _, value in ipairs(kept) do
  local n = tonumber(value)
  if n == nil or n < 0 or n > 1e9 then return bad(KEYS[8], 'holds ' .. value .. ' turns') end
  reserved = reserved + n
end
if held + reserved > cap then
  -- The cap came down (learned, or leases forced over it): turns are handed out anew.
  redis.call('DEL', KEYS[8])
  reserved = 0
end
local free = cap - held - reserved
if free > 0 then
  -- Each slot goes to the process holding fewest (its leases as it said at its last ask,
  -- plus its turns), the first in line among equals. Played in memory (a cap of 1,000 is
  -- 1,000 slots), then written back: each process's turns, and the line with those served
  -- at its end in the order they were last served.
  local order = redis.call('ZRANGE', KEYS[6], 0, -1)
  local have, want, holds, given = {}, {}, {}, {}
  for _, m in ipairs(order) do
    have[m] = count(KEYS[8], m)
    want[m] = tonumber(redis.call('HGET', KEYS[9], m) or '1') or 1
    holds[m] = count(KEYS[10], m)
    given[m] = 0
  end
  while free > 0 do
    local pick, least = nil, math.huge
    for i, m in ipairs(order) do
      if have[m] < want[m] and holds[m] + have[m] < least then
        pick, least = i, holds[m] + have[m]
      end
    end
    if not pick then break end
    local m = table.remove(order, pick)
    have[m], given[m], free = have[m] + 1, given[m] + 1, free - 1
    order[#order + 1] = m
  end
  local base = last()
  for i, m in ipairs(order) do
    if given[m] > 0 then
      redis.call('HSET', KEYS[8], m, have[m])
      reserved = reserved + given[m]
    end
    redis.call('ZADD', KEYS[6], base + i, m)
  end
end
local mine = member ~= '' and count(KEYS[8], member) or 0
for i = 6, 10 do redis.call('PEXPIRE', KEYS[i], math.ceil(@GONE@ * 1000)) end
if mine > 0 or (member == '' and held + reserved < cap) then
  redis.call('ZADD', KEYS[3], expiry, ARGV[4])
  if member == '' then
    return {1, tostring(now), run, ghosts, '0', cap - held - 1 - reserved, 0}
  end
  if mine == 1 then
    redis.call('HDEL', KEYS[8], member)
  else
    redis.call('HINCRBY', KEYS[8], member, -1)
  end
  local left = count(KEYS[9], member) - 1
  if left > 0 then
    redis.call('HSET', KEYS[9], member, left)
  else
    redis.call('ZREM', KEYS[6], member)
    redis.call('ZREM', KEYS[7], member)
    redis.call('HDEL', KEYS[9], member)
    redis.call('HDEL', KEYS[10], member)
  end
  return {1, tostring(now), run, ghosts, '0', mine - 1 + free, 0}
end
-- Refused: served before the caller at the next slot freed are those ahead of it in line
-- that hold no turn yet (a caller outside the line: everyone in it); 0 tells it to ask often.
local before = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  if m == member then break end
  if member == '' or count(KEYS[8], m) == 0 then before = before + 1 end
end
return {0, tostring(now), run, ghosts, '0', 0, before}
""".replace("@GONE@", repr(ADMIT_GONE))
)

# One owner's batched lease updates (a heartbeat among them). ARGV: + ops, each three values:
# 'r' id _ (release), 'h' id at (hold until server time ``at``), 'k' id ttl (keep: renew to
# now + ttl at least). A kept or held lease missing from Redis is written back (re-registered).
# Returns {epoch, ghosts, "rebuilding"}.
_SYNC: Final = (
    _PRELUDE
    + """
for i = 4, #ARGV, 3 do
  local op, id, value = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  redis.call('ZREM', KEYS[4], id)
  if op == 'r' then
    redis.call('ZREM', KEYS[3], id)
  elseif op == 'h' then
    redis.call('ZADD', KEYS[3], value, id)
  else
    redis.call('ZADD', KEYS[3], 'GT', now + value, id)
  end
end
return {run, ghosts, tostring(building)}
"""
)


def _learned(reply: list[bytes | None]) -> tuple[int, float, int] | None:
    # The script answers the learned hash's fields, or nothing while none is in force.
    try:
        requests, per, cap = (float(v) if v is not None else math.nan for v in reply)
    except (TypeError, ValueError):
        return None
    if not (requests >= 1 and per > 0 and cap >= 1):
        return None
    return int(requests), per, int(cap)


def slack(limits: Limits) -> float:
    # A grant is counted from when Redis gives it, the provider counts the request when it
    # arrives, later: after a wait for a pooled connection, a busy event loop, the network.
    # Counting each grant this much longer keeps our window a superset of the provider's.
    return max(_SLACK_MIN, limits.safety_margin * limits.per)


def pace(limits: Limits) -> tuple[float, int]:
    """The shared pace's (interval, burst) for ``limits``, as the grant script computes it:
    one process's pacing (:func:`~nanobanana_async._limits.pacing`) over the window the
    script counts, ``per`` plus the slack."""
    paced, burst = paced_share(limits)
    return (limits.per + slack(limits)) / paced, burst


def account_prefix(provider: str, base_url: str, key: str | None) -> str:
    """The Redis key prefix of an account: a hash of provider, base URL and API key."""
    digest = hashlib.sha256("\0".join((provider, base_url, key or "")).encode()).hexdigest()
    return f"nanobanana:{digest[:32]}"


def connect(url: str) -> Redis:
    """A redis-py asyncio client for ``url`` (nothing is sent until first use).

    Raises:
        ConfigurationError: the ``redis`` extra is missing, or ``url`` is not a Redis URL.
    """
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise ConfigurationError(
            "coordinator= needs redis-py: pip install 'nanobanana-async[redis]'"
        ) from None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError("coordinator must be a redis://, rediss:// or unix:// URL")
    try:
        return Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    except ValueError as exc:
        raise ConfigurationError(f"coordinator URL is not valid: {exc}") from None


class RedisStore:
    """The scripts, the clock offset, the epoch and the fail-closed retry around one Redis
    client.

    While Redis cannot be reached, one reconnect loop probes it for every caller; each caller
    waits for it at most ``max_wait`` seconds from when it started waiting (or from when Redis
    went away, if later), then gets :class:`CoordinatorUnavailableError`.
    """

    def __init__(self, redis: Redis, prefix: str, clock: Clock, max_wait: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.max_wait = max_wait
        self.lease_ttl = LEASE_TTL
        self.offset = 0.0  # Redis server time minus our monotonic clock
        self.round_trips = 0
        self.calls: collections.Counter[str] = collections.Counter()  # script calls, by script
        self.window_count = 0  # requests every process sent in the window, at the last grant
        # Limits another process learned, as the last grant read them (requests, per, cap).
        self.learned: tuple[int, float, int] | None = None
        self.epoch = ""  # the run id of the Redis last seen ("": none yet)
        self.down_since: float | None = None
        self.on_restart: list[Callable[[], None]] = []
        self._up: asyncio.Event | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._last_error = ""
        self._grant = redis.register_script(_GRANT)
        self._admit = redis.register_script(_ADMIT)
        self._sync = redis.register_script(_SYNC)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def server_time(self, monotonic: float) -> float:
        return monotonic + self.offset

    async def call(self, what: Callable[[], Awaitable[Any]], *, since: float | None = None) -> Any:
        """Run ``what``; while Redis cannot be reached, wait for the shared reconnect.

        Args:
            since: when the caller started waiting (default: now); it gives up ``max_wait``
                seconds after this, or after Redis went away if that was later.

        Raises:
            CoordinatorUnavailableError: Redis did not come back in time.
            CoordinatorStateError: Redis answered, but a key of the account is not in a shape
                the ledger wrote (named in the message).
        """
        started = self.clock.now() if since is None else since
        while True:
            if self.down_since is not None:
                give_up = max(started, self.down_since) + self.max_wait
                if not await self._wait_up(give_up):
                    raise CoordinatorUnavailableError(
                        f"the coordinator (Redis) did not answer for {self.max_wait:g} s "
                        f"({self._last_error}); nothing was sent"
                    )
            try:
                self.round_trips += 1
                return await what()
            except Exception as exc:
                _state_error(exc)
                self._went_down(exc)

    def _went_down(self, exc: Exception) -> None:
        self._last_error = type(exc).__name__
        if self.down_since is None:
            self.down_since = self.clock.now()
            self._up = asyncio.Event()
            _log.warning(
                "the coordinator (Redis) is unreachable (%s): waiting for it, nothing is "
                "sent without it",
                self._last_error,
            )
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(
                self._reconnect_loop(), name="nanobanana-redis-reconnect"
            )

    async def _reconnect_loop(self) -> None:
        # The one prober while Redis is away: callers wait for it instead of each retrying.
        delay = POLL_MIN
        while True:
            await self.clock.sleep_until(self.clock.now() + delay)
            try:
                await self.redis.ping()
            except Exception as exc:
                self._last_error = type(exc).__name__
                # Backing off to 1 s, but never past a quarter of a caller's wait: a Redis back
                # within that wait is seen before the caller gives up.
                delay = min(1.0, self.max_wait / 4, delay * 2)
                continue
            self.down_since = None
            if self._up is not None:
                self._up.set()
            _log.info("the coordinator (Redis) answers again")
            return

    async def _wait_up(self, give_up: float) -> bool:
        up = self._up
        if up is None or up.is_set():
            return True
        if self.clock.now() >= give_up:
            return False
        waiter = asyncio.ensure_future(up.wait())
        timer = asyncio.ensure_future(self.clock.sleep_until(give_up))
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
            await asyncio.gather(waiter, timer, return_exceptions=True)
        return up.is_set()

    async def aclose(self) -> None:
        """Stop the reconnect loop (the ledger is closing)."""
        if self._reconnect is not None:
            self._reconnect.cancel()
            await asyncio.gather(self._reconnect, return_exceptions=True)

    def note_now(self, server_now: bytes) -> None:
        self.offset = float(server_now) - self.clock.now()

    def _common(self, limits: Limits) -> tuple[list[str], list[str | int | float]]:
        keys = [self.key(name) for name in ("epoch", "rebuild", "slots", "old")]
        # One window, or two heartbeats if longer: owners learn of a restart at their next one.
        hold = max(limits.per + slack(limits), self.lease_ttl * 2 / 3)
        return keys, [hold, 0, self.epoch]

    def _seen(self, epoch: bytes, ghosts: int) -> None:
        run = epoch.decode()
        if ghosts:
            _log.warning(
                "the coordinator (Redis) restarted from an old state: %d ghost lease%s no "
                "owner re-registered %s dropped",
                ghosts,
                "" if ghosts == 1 else "s",
                "was" if ghosts == 1 else "were",
            )
        if run != self.epoch:
            restarted = self.epoch != ""
            self.epoch = run
            if restarted:
                # Redis restarted: write back every lease this process holds, at once.
                for listener in self.on_restart:
                    listener()

    async def grant(
        self,
        wanted: int,
        limits: Limits,
        member: str,
        *,
        since: float | None = None,
        paced: bool = True,
    ) -> tuple[int, float]:
        """Take up to ``wanted`` grants free now in the shared window; returns (granted,
        seconds to wait before asking again when none was granted).

        Args:
            paced: hold to the shared pace (grants spread evenly over the window, a burst of 1%
                of it at most) as well as to the window; False: the window alone bounds this
                call, and it does not move the pace.
        """
        granted, wait, _ = await self._take(wanted, limits, member, since, paced, 0.0)
        return granted, wait

    async def book(
        self, wanted: int, limits: Limits, member: str, *, since: float | None = None
    ) -> tuple[list[float], float]:
        """Book up to ``wanted`` turns in the shared pace, at most :data:`MAX_AHEAD` seconds
        ahead; returns their times (monotonic, ascending; empty when none was booked) and, if
        none was, the seconds to wait before asking again."""
        granted, wait, times = await self._take(wanted, limits, member, since, True, MAX_AHEAD)
        return times[:granted], wait

    async def _take(
        self,
        wanted: int,
        limits: Limits,
        member: str,
        since: float | None,
        paced: bool,
        ahead: float,
    ) -> tuple[int, float, list[float]]:
        keys, args = self._common(limits)
        keys += [self.key(name) for name in ("win", "pause", "limits", "sent", "pace")]
        args += [
            wanted,
            limits.requests,
            limits.per,
            limits.safety_margin,
            member,
            slack(limits),
            "1" if paced else "0",
            ahead,
        ]
        self.calls["book" if ahead else "grant"] += 1
        reply = await self.call(lambda: self._grant(keys=keys, args=args), since=since)
        granted, now, wait, count, epoch, ghosts, learned = reply[:7]
        self.note_now(now)
        self.window_count = int(count)
        self.learned = _learned(learned)
        self._seen(epoch, int(ghosts))
        times: list[float] = []
        if int(granted) and len(reply) == 9:
            server_now, first, interval = float(now), float(reply[7]), float(reply[8])
            times = [
                max(server_now, first + i * interval) - self.offset for i in range(int(granted))
            ]
        return int(granted), float(wait), times

    async def admit(
        self,
        lease_id: str,
        cap: int,
        expiry: float,
        limits: Limits,
        *,
        force: bool,
        since: float | None = None,
        member: str = "",
        waiting: int = 1,
        holding: int = 0,
    ) -> tuple[bool, float, int]:
        """Admit a lease under ``cap``; returns (admitted, how long the ledger rebuilds, and
        slots the caller may take at once after it or, when not admitted, processes served
        before this one).

        Args:
            member: the caller's process: it waits in line for a slot, and slots free are
                handed out one per process in line, in turn (``""``: it takes a slot only
                when every process in line has one).
            waiting: how many of the process's creates wait for a slot, this one included
                (the most slots handed out to it at once).
            holding: how many slots the process holds (slots freed go first to the processes
                holding fewest).
        """
        keys, args = self._common(limits)
        keys += [self.key(name) for name in ("limits", "queue", "asked", "turns", "wants", "holds")]
        args += [lease_id, cap, expiry, "1" if force else "0", member, waiting, holding]
        self.calls["admit"] += 1
        reply = await self.call(lambda: self._admit(keys=keys, args=args), since=since)
        admitted, now, epoch, ghosts, wait = reply[:5]
        self.note_now(now)
        self._seen(epoch, int(ghosts))
        # Slots left, or processes before this one (0 when the script did not say: a
        # re-attach of a running task).
        room = int(reply[5]) if len(reply) > 5 else 0
        before = int(reply[6]) if len(reply) > 6 else 0
        return bool(int(admitted)), float(wait), room if int(admitted) else before

    async def sync(self, ops: list[tuple[str, str, float]], limits: Limits) -> None:
        """Apply one owner's lease updates in one round trip (``r``elease, ``h``old, ``k``eep)."""
        keys, args = self._common(limits)
        for op, lease_id, value in ops:
            args += [op, lease_id, value]
        self.calls["sync"] += 1
        epoch, ghosts, _ = await self.call(lambda: self._sync(keys=keys, args=args))
        self._seen(epoch, int(ghosts))


def _state_error(exc: Exception) -> None:
    # A script's own refusal (a key it did not write) or Redis refusing a command on a key of
    # the wrong type: the account's state is corrupt, waiting would never end.
    from redis.exceptions import ReadOnlyError, ResponseError

    # A read-only replica (a failover under way) is a Redis not reachable for writes yet.
    if not isinstance(exc, ResponseError) or isinstance(exc, ReadOnlyError):
        return
    text = str(exc)
    if text.startswith("nanobanana-state "):
        key, _, why = text.removeprefix("nanobanana-state ").partition(" ")
        raise CoordinatorStateError(
            f"the coordinator (Redis) holds {key} in a shape this client never writes: {why}; "
            "delete the key (or fix it) and retry",
            key=key,
        ) from None
    raise CoordinatorStateError(
        f"the coordinator (Redis) refused an update of the account's keys: {text[:200]}",
        key="",
    ) from None
