"""The Redis coordinator against a real redis-server: F35 (processes on one key) and F37
(coordinator failure: fail closed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from nanobanana_async import CoordinatorUnavailableError
from nanobanana_async._scheduler._redis import RedisCoordinator, account_key, lease_id
from tests.redis_server import RedisServer

ACCOUNT = account_key("apixo", "https://api.example", "nb-CANARY-7f3a9c2e51d84b06")

# One worker process: takes a grant and a slot per task, "runs" it for 30 ms, and reports the
# grant times and the most tasks it saw running on the account at once.
WORKER = """
import asyncio, json, sys, time
from nanobanana_async._scheduler._redis import RedisCoordinator, lease_id

async def main(url, account, name, tasks, requests, per, cap):
    coord = RedisCoordinator(url, account, requests=requests, per=per, concurrent=cap)
    grants, most = [], 0
    async def task(i):
        nonlocal most
        lease = lease_id(f"{name}-{i}")
        await coord.acquire(lease)
        await coord.grant(1)
        grants.append(time.time())
        running = await coord._redis.incr(account + ":observed")
        most = max(most, running)
        await asyncio.sleep(0.03)
        await coord._redis.decr(account + ":observed")
        await coord.release([lease])
    await asyncio.gather(*(task(i) for i in range(tasks)))
    print(json.dumps({"grants": grants, "most": most, "round_trips": coord.round_trips}))
    await coord.aclose()

a = sys.argv
asyncio.run(main(a[1], a[2], a[3], int(a[4]), int(a[5]), float(a[6]), int(a[7])))
"""


def most_in_window(times: list[float], per: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= per:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_f35_processes_on_one_key_share_window_and_slots(redis_server: RedisServer) -> None:
    """F35: three real processes on one key through one Redis never exceed the shared window
    (30 requests / 0.5 s) nor the shared cap (4 tasks), though each alone would allow both."""
    requests, per, cap, tasks = 30, 0.5, 4, 40
    limits = [str(tasks), str(requests), str(per), str(cap)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_server.url, ACCOUNT, f"p{n}", *limits],
            stdout=subprocess.PIPE,
        )
        for n in range(3)
    ]
    reports = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    grants = [t for r in reports for t in r["grants"]]
    assert len(grants) == 3 * tasks
    # Grants are stamped on return; 20 ms of slack absorbs the reply's latency jitter.
    assert most_in_window(grants, per - 0.02) <= requests
    assert max(r["most"] for r in reports) <= cap
    # Grant + acquire + release: three round trips per task when nothing waits.
    assert sum(r["round_trips"] for r in reports) / (3 * tasks) < 12


async def test_f35_dead_process_leases_return_at_horizon_and_reattach(
    redis_server: RedisServer,
) -> None:
    """F35 (leases): slots held to a horizon by a process that died come back after the horizon,
    never sooner; the same process restarted re-attaches to them instead of taking new ones."""
    dead = RedisCoordinator(
        redis_server.url, ACCOUNT, requests=100, per=1, concurrent=2, lease_ttl=0.2
    )
    ids = [lease_id("journal-key-1"), lease_id("journal-key-2")]
    assert await dead.try_acquire(ids) == ids
    await dead.hold(ids, horizon=1.0)
    await dead.aclose()  # the process dies: nobody renews or releases

    other = RedisCoordinator(redis_server.url, ACCOUNT, requests=100, per=1, concurrent=2)
    # A short renewal expiry: re-attaching must not end the lease before its horizon.
    restarted = RedisCoordinator(
        redis_server.url, ACCOUNT, requests=100, per=1, concurrent=2, lease_ttl=0.1
    )
    try:
        assert await other.try_acquire(["other"]) == []
        assert await restarted.try_acquire(ids) == ids  # re-attached, cap still 2
        assert await other.held() == 2
        await restarted.aclose()  # dies again
        await asyncio.sleep(0.6)
        assert await other.try_acquire(["other"]) == []  # before the horizon: still held
        await asyncio.sleep(0.6)
        assert await other.try_acquire(["other"]) == ["other"]
    finally:
        await other.aclose()


async def test_f37_coordinator_down_fails_closed_with_typed_error(
    redis_server: RedisServer,
) -> None:
    """F37: Redis unreachable: no grant, no lease; after the bounded wait a typed error."""
    coord = RedisCoordinator(
        redis_server.url, ACCOUNT, requests=10, per=1, concurrent=2, unavailable_after=0.5
    )
    try:
        assert await coord.grant() == 1
        assert await coord.try_acquire(["a"]) == ["a"]
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(CoordinatorUnavailableError, match="nothing was sent"):
            await coord.grant()
        with pytest.raises(CoordinatorUnavailableError):
            await coord.try_acquire(["b"])
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        await coord.aclose()


async def test_f37_waiters_resume_when_redis_returns_without_breach(
    redis_server: RedisServer,
) -> None:
    """F37: a waiter continues when Redis comes back within the bounded wait; the restarted
    Redis forgot the window, so no grant comes until a full window after the outage."""
    per, requests = 0.6, 5
    coord = RedisCoordinator(
        redis_server.url, ACCOUNT, requests=requests, per=per, concurrent=2, unavailable_after=5
    )
    try:
        granted_at = []
        for _ in range(requests):
            await coord.grant()
            granted_at.append(time.monotonic())
        redis_server.stop()
        waiter = asyncio.create_task(coord.grant())
        await asyncio.sleep(0.3)
        assert not waiter.done()
        redis_server.start()
        await asyncio.wait_for(waiter, 5)
        granted_at.append(time.monotonic())
        assert most_in_window(granted_at, per) <= requests
    finally:
        await coord.aclose()


def test_redis_keys_hold_no_api_key() -> None:
    assert "CANARY" not in ACCOUNT
    assert account_key("apixo", "https://api.example", "nb-CANARY-7f3a9c2e51d84b06") == ACCOUNT
    assert account_key("apixo", "https://api.example", "another-key") != ACCOUNT


async def test_f35_live_process_renews_its_leases(redis_server: RedisServer) -> None:
    """F35 (leases): a live process keeps its slot past the lease expiry by renewing it; once it
    stops (closed or killed) the slot comes back after one expiry."""
    live = RedisCoordinator(
        redis_server.url, ACCOUNT, requests=100, per=1, concurrent=1, lease_ttl=0.3
    )
    other = RedisCoordinator(redis_server.url, ACCOUNT, requests=100, per=1, concurrent=1)
    try:
        assert await live.try_acquire(["mine"]) == ["mine"]
        await asyncio.sleep(0.8)
        assert await other.try_acquire(["theirs"]) == []
        await live.aclose()
        await asyncio.sleep(0.5)
        assert await other.try_acquire(["theirs"]) == ["theirs"]
    finally:
        await other.aclose()
