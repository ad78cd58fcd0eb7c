"""The ledger shared through a real Redis: processes on one key keep one account's limits
(F35), an unreachable Redis fails closed (F37), and Redis never holds the API key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

import nanobanana_async as nb
from nanobanana_async._clock import DEFAULT_CLOCK
from nanobanana_async._scheduler import _redis
from nanobanana_async.testing import Latency, ServerLimits, Simulator
from tests.redis_server import RedisServer

LIMITS = nb.Limits(requests=40, per=1.0, concurrent_tasks=6)

WORKER = """
import asyncio, json, sys
import nanobanana_async as nb

async def main(base_url, key, coordinator, tag, count):
    limits = nb.Limits(requests=40, per=1.0, concurrent_tasks=6)
    retry = nb.RetryPolicy(base_delay=0.01, max_delay=0.05)
    async with nb.Client("apixo", api_key=key, base_url=base_url, coordinator=coordinator or None,
                         limits=limits, retry=retry) as client:
        results = await asyncio.gather(
            *(client.generate(f"{tag} {i}") for i in range(count)), return_exceptions=True
        )
    errors = [repr(r) for r in results if not isinstance(r, nb.ImageResult)]
    print(json.dumps({"ok": count - len(errors), "errors": errors}))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
"""


def coordinated(simulator: Simulator, redis: RedisServer, **options: object) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key=simulator.api_key,
        base_url=simulator.base_url,
        coordinator=redis.url,
        limits=LIMITS,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def simulator(canary: str) -> Iterator[Simulator]:
    sim = Simulator(
        "apixo",
        api_key=canary,
        latency=Latency(median=0.3, sigma=0.2),
        limits=ServerLimits(requests=40, per=1.0, concurrent_tasks=6),
    )
    sim.start_in_thread()
    try:
        yield sim
    finally:
        sim.stop_thread()


def test_f35_processes_on_one_key_share_one_account(
    redis_server: RedisServer, simulator: Simulator
) -> None:
    """F35: three processes on one key through one Redis, each told the account's limits:
    the provider sees no 429, no window over the limit and never more tasks than the cap."""
    # 8 prompts each (was 12): 24 tasks still press the cap of 6 from the three processes at
    # once (asserted below), which is what the shared lease has to hold.
    count = 8
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                simulator.base_url,
                simulator.api_key,
                redis_server.url,
                f"worker{n}",
                str(count),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    outputs = [worker.communicate(timeout=90) for worker in workers]
    reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["ok"] for r in reports] == [count] * 3, [r["errors"] for r in reports]
    stats = simulator.stats
    assert stats.rate_limited == 0
    assert stats.max_window <= LIMITS.requests
    assert stats.max_concurrent <= LIMITS.concurrent_tasks
    assert stats.creates == 3 * count
    assert stats.duplicate_creates == 0
    # The three together pressed the cap, so "never above it" means something.
    assert stats.max_concurrent == LIMITS.concurrent_tasks


async def test_f37_redis_down_fails_closed_then_recovers(
    redis_server: RedisServer, simulator: Simulator
) -> None:
    """F37: with Redis stopped no create is sent (status checks of running tasks go on under a
    local tenth of the window); a caller gets CoordinatorUnavailableError after the bounded
    wait; once Redis is back, work goes on within the limits."""
    client = coordinated(simulator, redis_server, timeouts=nb.Timeouts(coordinator=0.5))
    async with client:
        # Heartbeats every 0.2 s: the restarted Redis admits after one window (1.5 s), not
        # after two default heartbeats (10 s); the wait it asserts is the same rule.
        ledger = client._life.submitter.conn.account.ledger  # type: ignore[union-attr]
        ledger.store.lease_ttl = 0.6  # type: ignore[attr-defined]
        assert isinstance(await client.generate("before"), nb.ImageResult)
        running = asyncio.ensure_future(client.generate("running while Redis is down"))
        await asyncio.sleep(0.05)
        redis_server.stop()
        await asyncio.sleep(0.4)  # batch grants already given expire locally within 0.25 s
        creates, checks = simulator.stats.creates, simulator.stats.requests["status"]
        started = time.monotonic()
        with pytest.raises(nb.CoordinatorUnavailableError):
            await client.generate("during")
        assert time.monotonic() - started < 3.0
        await asyncio.sleep(0.5)
        assert simulator.stats.creates == creates  # no create without a grant
        away = time.monotonic() - started + 0.5
        assert simulator.stats.requests["status"] - checks <= 1 + away * 0.1 * LIMITS.requests
        redis_server.start()
        assert isinstance(await client.generate("after"), nb.ImageResult)
        assert isinstance(await running, nb.ImageResult)
    assert simulator.stats.rate_limited == 0
    assert simulator.stats.max_window <= LIMITS.requests
    assert simulator.stats.max_concurrent <= LIMITS.concurrent_tasks


async def test_redis_never_holds_the_api_key(
    redis_server: RedisServer, simulator: Simulator, canary: str
) -> None:
    """Keys and values in Redis derive from a hash of the API key, never the key itself."""
    assert simulator.api_key == canary
    async with coordinated(simulator, redis_server) as client:
        await client.generate("a cat")
    redis = Redis.from_url(redis_server.url)
    try:
        keys = [key async for key in redis.scan_iter()]
        assert keys
        dump = b" ".join(keys)
        for key in keys:
            kind = await redis.type(key)
            if kind == b"zset":
                dump += b" ".join(m for m, _ in await redis.zrange(key, 0, -1, withscores=True))
            elif kind == b"string":
                dump += await redis.get(key) or b""
            elif kind == b"hash":
                dump += json.dumps(
                    {str(k): str(v) for k, v in (await redis.hgetall(key)).items()}
                ).encode()
    finally:
        await redis.aclose()
    assert canary.encode() not in dump


def test_coordinator_needs_the_redis_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, coordinator= is a ConfigurationError naming the extra to install."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(nb.ConfigurationError, match=r"nanobanana-async\[redis\]"):
        nb.Client("apixo", api_key="k", coordinator="redis://127.0.0.1:6379/0")


def test_coordinator_url_is_checked() -> None:
    """A coordinator that is not a Redis URL is refused before anything runs."""
    with pytest.raises(nb.ConfigurationError, match="redis://"):
        nb.Client("apixo", api_key="k", coordinator="http://127.0.0.1:6379")


async def test_f37_no_breach_after_redis_forgets_the_window(redis_server: RedisServer) -> None:
    """F37: a Redis restarted without persistence has forgotten the window the provider still
    counts; a process that sees the new Redis holds every process back for one window."""
    limits = nb.Limits(requests=5, per=1.0)
    ledger = _redis.RedisLedger(
        limits,
        DEFAULT_CLOCK,
        redis=_redis.connect(redis_server.url),
        prefix="nanobanana:test-restart",
        max_wait=5.0,
    )
    # Heartbeats every 0.2 s: the rebuild after a restart lasts one window (1.5 s with its
    # slack), not two default heartbeats (10 s).
    ledger.store.lease_ttl = 0.6
    try:
        for _ in range(4):  # the window is nearly full at the provider
            await ledger.acquire_request()
        redis_server.stop()
        redis_server.start()
        started = time.monotonic()
        await ledger.acquire_request()
        assert time.monotonic() - started >= limits.per
    finally:
        await ledger.aclose()
