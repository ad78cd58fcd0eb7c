"""A create paced through the Redis ledger waits at its send for room in this process's own
send log, as one paced in memory does (real redis-server, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import nanobanana_async as nb
from nanobanana_async._limits import budget
from nanobanana_async._scheduler import _redis
from nanobanana_async.testing import FakeClock
from tests.integration.conftest import PREFIX
from tests.redis_server import RedisServer

LIMITS = nb.Limits(requests=10, per=1.0, concurrent_tasks=100)


@pytest.fixture
async def ledger(redis_server: RedisServer, clock: FakeClock) -> AsyncIterator[_redis.RedisLedger]:
    """The account's ledger shared through the test's Redis, on the fake clock."""
    shared = _redis.RedisLedger(
        LIMITS, clock, redis=_redis.connect(redis_server.url), prefix=PREFIX, max_wait=5.0
    )
    try:
        yield shared
    finally:
        await shared.aclose()


async def advance(clock: FakeClock, seconds: float, *, until: asyncio.Future[None]) -> None:
    """Move fake time in small steps, letting Redis's real round trips answer between them,
    until ``seconds`` have passed or ``until`` is done."""
    for _ in range(round(seconds / 0.01)):
        if until.done():
            return
        await clock.advance(0.01)
        await asyncio.sleep(0.002)


async def test_f35_a_redis_paced_create_waits_at_its_send_for_room_in_the_send_log(
    ledger: _redis.RedisLedger, clock: FakeClock
) -> None:
    """A create has its grant from Redis, fresh; meanwhile a stall's backlog of this
    process's own requests filled its window (the budget, 9 of 10 a second). The create's
    send waits until the oldest of them leaves the window, then goes on a fresh grant,
    instead of going as the window's one too many (the Redis ledger had no such bound)."""
    await ledger.acquire_request()
    granted = clock.now()
    backlog = clock.now()
    for _ in range(budget(LIMITS)):
        ledger.note_send()
    send = asyncio.ensure_future(ledger.refresh_request(granted))
    await advance(clock, 0.9, until=send)
    assert not send.done(), "sent into a full window"
    await advance(clock, 1.0, until=send)
    assert send.done()
    await send
    assert clock.now() >= backlog + LIMITS.per
    assert ledger.stale_grants == 1  # the grant aged while it waited: a fresh one was taken
    ledger.note_send()
    assert ledger.requests_in_window() <= budget(LIMITS)
