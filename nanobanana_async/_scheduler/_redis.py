"""The account's window and slots shared through Redis, for every process on one key.

Why own Lua scripts rather than the ``limits`` library: its Redis moving window stamps entries
with the caller's clock (hosts' clocks then matter), grants one hit per round trip, and has no
notion of a concurrency lease. Here three short scripts do it all atomically on the server, read
the server's ``TIME`` (so clients' clocks never matter), grant or lease many at once (one round
trip per batch), and are sent once and then called by SHA (redis-py's ``Script`` re-sends a
script the server lost, e.g. after a restart).

Keys derive from a SHA-256 of provider, base URL and API key; the key itself never reaches Redis.

Slots are leases in a sorted set scored by their expiry (server milliseconds). A lease is taken
with a short expiry that its live process renews; once a create may have reached the provider,
:meth:`RedisCoordinator.hold` raises the expiry to the task's horizon. Expiries only ever move
later (``ZADD XX GT``), so a SIGKILLed process's slots come back once the horizon has passed and
never sooner. Lease ids derive from the caller's task/journal keys: a process restarted from its
journal asks for the same ids and re-attaches to the leases it already holds.

Fail closed: when Redis is unreachable or failing, nothing is granted. Calls retry with a short
backoff and raise :class:`CoordinatorUnavailableError` once ``unavailable_after`` has passed;
when Redis comes back within it they continue. A restarted Redis has lost the window, so the
client waits one full window (``per``) after an outage before it grants again: no breach after
it returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError, CoordinatorUnavailableError

INSTALL_HINT = "the Redis coordinator needs the redis extra: pip install 'nanobanana-async[redis]'"

# KEYS: window, pause, alive. ARGV: limit, per_ms, wanted, token.
# Returns {granted, wait_ms}: grants up to `wanted` requests in the sliding window. A server
# that has no `alive` marker has never seen this account or has restarted and forgotten its
# window: it grants nothing for one full window first.
_GRANT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, per, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('SET', KEYS[3], '1', 'NX') then
  redis.call('SET', KEYS[2], '1', 'PX', per)
  return {0, per}
end
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.min(wanted, limit - used)
if granted <= 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + per - now + 1)}
end
local seq = redis.call('INCRBY', KEYS[1] .. ':seq', granted)
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. (seq - i))
end
redis.call('PEXPIRE', KEYS[1], per)
redis.call('PEXPIRE', KEYS[1] .. ':seq', per)
return {granted, 0}
"""

# KEYS: slots. ARGV: cap, ttl_ms, id... Returns the ids now held (re-attached or new), in order.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'GT', now + ttl, id)
    table.insert(held, id)
  elseif redis.call('ZCARD', KEYS[1]) < cap then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    table.insert(held, id)
  end
end
return held
"""

# KEYS: slots. ARGV: ttl_ms, id... Moves leases' expiry to now+ttl, never earlier. Callers
# pass only leases they hold, so a lease a restarted server forgot is written again.
_EXTEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'GT', 'CH', now + ttl, ARGV[i])
end
return n
"""


def account_key(provider: str, base_url: str, api_key: str) -> str:
    """The Redis key prefix of one account: a hash, never the key itself."""
    digest = hashlib.sha256(f"{provider}\0{base_url}\0{api_key}".encode()).hexdigest()
    return f"nanobanana:{digest[:32]}"


def lease_id(journal_key: str) -> str:
    """A lease id derived from a task's journal key, stable across restarts of the process."""
    return hashlib.sha256(journal_key.encode()).hexdigest()[:24]


class RedisCoordinator:
    """Window grants and slot leases of one account, shared by every process through Redis.

    Args:
        url: ``redis://host:port/db``.
        account: :func:`account_key` of the provider, base URL and API key.
        requests, per, concurrent: the account's limits (requests per ``per`` seconds, tasks).
        lease_ttl: expiry of a lease; this process renews every lease it holds each third of it
            (one round trip for all), so a dead process's leases come back after it (or after
            their horizon, when :meth:`hold` set a later one).
        unavailable_after: how long calls wait for an unreachable Redis before
            :class:`CoordinatorUnavailableError`.
    """

    def __init__(
        self,
        url: str,
        account: str,
        *,
        requests: int,
        per: float,
        concurrent: int,
        lease_ttl: float = 5.0,
        unavailable_after: float = 10.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis  # optional extra
        except ImportError as exc:
            raise ConfigurationError(INSTALL_HINT) from exc
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._window = f"{account}:window"
        self._pause = f"{account}:pause"
        self._slots = f"{account}:slots"
        self._alive = f"{account}:alive"
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._pump: asyncio.Task[None] | None = None
        self.poll = 0.05
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._grant = self._redis.register_script(_GRANT)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._extend = self._redis.register_script(_EXTEND)
        self._set_pause = self._redis.register_script(
            "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) return 1"
        )
        self.requests, self.per, self.concurrent = requests, per, concurrent
        self.lease_ttl = lease_ttl
        self.unavailable_after = unavailable_after
        self._token = hashlib.sha256(f"{id(self)}{time.time_ns()}".encode()).hexdigest()[:12]
        self.round_trips = 0

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError  # optional extra

        deadline = time.monotonic() + self.unavailable_after
        delay = 0.05
        while True:
            try:
                self.round_trips += 1
                result = await script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise CoordinatorUnavailableError(
                        f"coordinator unreachable for {self.unavailable_after:g} s "
                        f"({type(exc).__name__}); nothing was sent"
                    ) from None
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
                continue
            return result

    async def grant(self, wanted: int = 1) -> int:
        """Wait until at least one request is granted in the shared window; return how many
        (at most ``wanted``). Raises :class:`CoordinatorUnavailableError` (fail closed)."""
        while True:
            granted, wait_ms = await self._call(
                self._grant,
                [self._window, self._pause, self._alive],
                [self.requests, int(self.per * 1000), wanted, self._token],
            )
            if granted:
                return int(granted)
            await asyncio.sleep(int(wait_ms) / 1000)

    async def pause(self, seconds: float) -> None:
        """Pause every process on the account (a 429's Retry-After)."""
        await self._call(
            self._set_pause,
            [self._pause],
            [max(1, int(seconds * 1000))],
        )

    async def try_acquire(self, ids: Sequence[str]) -> list[str]:
        """Lease as many of ``ids`` as the cap allows, in one round trip; ids this account
        already leases (a restarted process) are re-attached, not taken again."""
        raw = await self._call(
            self._acquire, [self._slots], [self.concurrent, int(self.lease_ttl * 1000), *ids]
        )
        held = [h.decode() if isinstance(h, bytes) else str(h) for h in raw]
        self._held.update(held)
        if held and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._run_renewer())
        return held

    async def _run_renewer(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await self.renew(sorted(self._held))
            except CoordinatorUnavailableError:
                continue  # the leases keep their expiry; the next renewal tries again

    async def acquire(self, lease: str) -> None:
        """Wait for one slot. Every waiter of this process is served by one poller that asks
        for as many leases as the cap could allow in one round trip."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[lease] = future
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        try:
            await future
        finally:
            self._waiting.pop(lease, None)

    async def _run_pump(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[: self.concurrent]
            try:
                held = await self.try_acquire(ids)
            except CoordinatorUnavailableError as exc:
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(exc)
                return
            lost = []
            for lease in held:
                waiter = self._waiting.pop(lease, None)
                if waiter is None or waiter.done():
                    lost.append(lease)  # its waiter was cancelled meanwhile
                else:
                    waiter.set_result(None)
            if lost:
                await self.release(lost)
            if not held:
                # Other processes release through Redis; there is no local event to wait on.
                await asyncio.sleep(self.poll)

    async def renew(self, ids: Sequence[str]) -> int:
        """Renew live leases (one round trip for all); returns how many were extended."""
        if not ids:
            return 0
        return int(
            await self._call(self._extend, [self._slots], [int(self.lease_ttl * 1000), *ids])
        )

    async def hold(self, ids: Sequence[str], horizon: float) -> None:
        """Hold leases until ``horizon`` seconds from now at least (a create may have reached
        the provider): they outlive this process if it dies, and come back after it."""
        await self._call(self._extend, [self._slots], [int(horizon * 1000), *ids])

    async def release(self, ids: Sequence[str]) -> None:
        """Give leases back (the client knows their tasks ended)."""
        if ids:
            self._held.difference_update(ids)
            self.round_trips += 1
            await self._redis.zrem(self._slots, *ids)

    async def held(self) -> int:
        """Leases live on the account now (any process)."""
        self.round_trips += 1
        now_s, now_us = await self._redis.time()
        return int(
            await self._redis.zcount(self._slots, f"({now_s * 1000 + now_us // 1000}", "+inf")
        )

    async def aclose(self) -> None:
        """Stop renewing (held leases then end at their expiry or horizon) and disconnect."""
        for task in (self._renewer, self._pump):
            if task is not None:
                task.cancel()
        self._held.clear()
        await self._redis.aclose()
