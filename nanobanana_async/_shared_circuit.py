"""A router account's circuit as every process sees it, through the coordinator (Redis I/O).

Advisory, unlike the ledger: when Redis cannot be reached each process keeps its own circuit
(a breaker only saves requests that would fail; it never guards a limit), so nothing fails
closed here.

Keys, under the account's ledger prefix (a hash of provider, base URL and key, never the key):

- ``circuit``: exists while the circuit is open; its TTL is what is left of the cooldown, its
  value the cooldown, so a process that probes next doubles from it.
- ``probe``: held by the one process whose create is the half-open probe; it lapses after
  :data:`PROBE_TTL` if that process dies mid-probe.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final

from ._breaker import Breaker, Circuit
from ._clock import Clock

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logging.getLogger("nanobanana_async")

REFRESH: Final = 1.0  # seconds between reads of one account's shared circuit
PROBE_TTL: Final = 120.0


class SharedCircuit:
    """Mirrors one account's :class:`Breaker` in Redis and adopts what other processes wrote.

    Args:
        redis: the coordinator's client (closed by :meth:`aclose`).
        prefix: the account's key prefix.
    """

    def __init__(self, redis: Redis, prefix: str, clock: Clock) -> None:
        self._redis = redis
        self._circuit = f"{prefix}:circuit"
        self._probe = f"{prefix}:probe"
        self._clock = clock
        self._next_read = -math.inf

    async def adopt(self, breaker: Breaker) -> None:
        """Open ``breaker`` as long as another process holds the shared circuit open (read at
        most every :data:`REFRESH` seconds)."""
        now = self._clock.now()
        if now < self._next_read:
            return
        self._next_read = now + REFRESH
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.pttl(self._circuit)
                pipe.get(self._circuit)
                ttl_ms, cooldown = await pipe.execute()
        except Exception as exc:  # any Redis or connection failure: advisory only
            _log.debug("shared circuit %s unreadable: %s", self._circuit, exc)
            return
        if isinstance(ttl_ms, int) and ttl_ms > 0:
            now = self._clock.now()
            breaker.hold_open(now + ttl_ms / 1000, _seconds(cooldown), now)

    async def claim_probe(self) -> bool:
        """Whether this process may send the half-open probe (no other process holds it)."""
        try:
            claimed = await self._redis.set(self._probe, b"1", nx=True, px=int(PROBE_TTL * 1000))
        except Exception as exc:
            _log.debug("shared probe %s unclaimable: %s", self._probe, exc)
            return True
        return bool(claimed)

    async def publish(self, breaker: Breaker) -> None:
        """Share ``breaker``'s state after an outcome here: open (for what is left of its
        cooldown) or closed; either way the probe is over."""
        now = self._clock.now()
        try:
            if breaker.state is Circuit.OPEN:
                left = math.ceil((breaker.reopen_at - now) * 1000)
                if left > 0:
                    await self._redis.set(self._circuit, str(breaker.cooldown), px=left)
                await self._redis.delete(self._probe)
            elif breaker.state is Circuit.CLOSED:
                await self._redis.delete(self._circuit, self._probe)
            else:
                await self._redis.delete(self._probe)
        except Exception as exc:
            _log.debug("shared circuit %s unwritable: %s", self._circuit, exc)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._redis.aclose()


def _seconds(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type] # bytes or str from Redis; else ValueError
    except (TypeError, ValueError):
        return 0.0
