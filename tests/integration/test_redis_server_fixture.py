"""The ``redis_server`` fixture: a real server the coordinator tests can kill and bring back."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.redis_server import RedisServer


async def test_redis_server_stops_and_restarts_on_the_same_port(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping()
        await client.set("k", "v")
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        redis_server.start()
        assert await client.ping()
        # No persistence: a restarted coordinator has forgotten everything.
        assert await client.get("k") is None
    finally:
        await client.aclose()
