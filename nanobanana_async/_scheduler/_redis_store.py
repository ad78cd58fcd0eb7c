"""The Redis side of the shared ledger: the Lua scripts that grant requests and admit creates on
the Redis server's clock, the connection, and the fail-closed retry around it (does I/O).
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from .._clock import Clock
from .._config import Limits
from .._errors import ConfigurationError, CoordinatorUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logging.getLogger("nanobanana_async")

_SLACK_MIN: Final = 0.5
POLL_MIN: Final = 0.01

_GRANT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[4], epoch)
end
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {0, tostring(now), tostring(pause - now), 0, epoch, {}} end
local requests = tonumber(ARGV[2])
local per = tonumber(ARGV[3])
-- Limits a process learned hold for everyone until they expire, never above a caller's own.
local learned = redis.call('HMGET', KEYS[3], 'requests', 'per', 'cap')
local l_requests, l_per = tonumber(learned[1]), tonumber(learned[2])
if redis.call('PTTL', KEYS[3]) < 0 or not l_requests or not l_per or l_per <= 0 then
  learned = {false, false, false}
elseif l_requests / l_per < requests / per then
  requests, per = l_requests, l_per
end
local sent = 0
if KEYS[5] then sent = redis.call('ZCOUNT', KEYS[5], '(' .. (now - per), '+inf') end
per = per + tonumber(ARGV[6])
local budget = math.max(1, math.floor(requests * (1 - tonumber(ARGV[4]))))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
local count = redis.call('ZCARD', KEYS[1])
local free = budget - count
if free <= 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], count - budget, count - budget, 'WITHSCORES')
  return {0, tostring(now), tostring(tonumber(oldest[2]) + per - now), sent, epoch, learned}
end
local granted = math.min(tonumber(ARGV[1]), free)
local seq = redis.call('INCRBY', KEYS[1] .. ':seq', granted)
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. (seq - i))
end
redis.call('PEXPIRE', KEYS[1] .. ':seq', math.ceil(per * 1000) + 60000)
redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 1000)
return {granted, tostring(now), '0', sent, epoch, learned}
"""

# KEYS: slots, limits. ARGV: lease id, cap, expiry delta, force (1: admit over the cap).
# Returns {admitted, "now"}; a lease already admitted keeps its place (re-attach).
_ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'GT', expiry, ARGV[1])
  return {1, tostring(now)}
end
local cap = tonumber(ARGV[2])
local learned = tonumber(redis.call('HGET', KEYS[2], 'cap') or ARGV[2]) or cap
if redis.call('PTTL', KEYS[2]) > 0 and learned < cap then cap = math.max(1, learned) end
if ARGV[4] == '1' or redis.call('ZCARD', KEYS[1]) < cap then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return {1, tostring(now)}
end
return {0, tostring(now)}
"""


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
    """The scripts, the clock offset and the fail-closed retry around one Redis client."""

    def __init__(self, redis: Redis, prefix: str, clock: Clock, max_wait: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.max_wait = max_wait
        self.offset = 0.0  # Redis server time minus our monotonic clock
        self.round_trips = 0
        self.window_count = 0  # requests every process sent in the window, at the last grant
        # Limits another process learned, as the last grant read them (requests, per, cap).
        self.learned: tuple[int, float, int] | None = None
        self.epoch: bytes | None = None
        self.on_restart: list[Callable[[], None]] = []
        self._grant = redis.register_script(_GRANT)
        self._admit = redis.register_script(_ADMIT)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def server_time(self, monotonic: float) -> float:
        return monotonic + self.offset

    async def call(self, what: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``what``; while Redis fails, retry with backoff up to ``max_wait`` seconds."""
        give_up = self.clock.now() + self.max_wait
        delay = POLL_MIN
        while True:
            try:
                self.round_trips += 1
                return await what()
            except Exception as exc:
                if self.clock.now() + delay > give_up:
                    raise CoordinatorUnavailableError(
                        f"the coordinator (Redis) did not answer for {self.max_wait:g} s "
                        f"({type(exc).__name__}); nothing was sent"
                    ) from None
                await self.clock.sleep_until(self.clock.now() + delay)
                delay = min(1.0, delay * 2)

    def note_now(self, server_now: bytes) -> None:
        self.offset = float(server_now) - self.clock.now()

    async def grant(self, wanted: int, limits: Limits, member: str) -> tuple[int, float]:
        keys = [
            self.key("win"),
            self.key("pause"),
            self.key("limits"),
            self.key("epoch"),
            self.key("sent"),
        ]
        args: list[str | int | float] = [
            wanted,
            limits.requests,
            limits.per,
            limits.safety_margin,
            member,
            slack(limits),
            uuid.uuid4().hex,
        ]
        reply = await self.call(lambda: self._grant(keys=keys, args=args))
        granted, now, wait, count, epoch, learned = reply
        self.note_now(now)
        self.window_count = int(count)
        self.learned = _learned(learned)
        if self.epoch is not None and epoch != self.epoch:
            # Redis restarted and forgot the window, while the provider still counts what
            # was sent before: hold every process back for one window, and write our
            # running tasks' leases back.
            self.epoch = epoch
            hold = limits.per + slack(limits)
            pause_key = self.key("pause")
            until = repr(float(now) + hold)
            await self.call(lambda: self.redis.set(pause_key, until, px=math.ceil(hold * 1000)))
            for listener in self.on_restart:
                listener()
            return 0, hold
        self.epoch = epoch
        return int(granted), float(wait)

    async def admit(self, lease_id: str, cap: int, expiry: float, *, force: bool) -> bool:
        keys = [self.key("slots"), self.key("limits")]
        args: list[str | int | float] = [lease_id, cap, expiry, "1" if force else "0"]
        admitted, now = await self.call(lambda: self._admit(keys=keys, args=args))
        self.note_now(now)
        return bool(int(admitted))
