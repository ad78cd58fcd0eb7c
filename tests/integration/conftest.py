"""Shared pieces of the integration suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

import nanobanana_async as nb
from nanobanana_async._clock import DEFAULT_CLOCK
from nanobanana_async._scheduler import _redis
from tests.redis_server import RedisServer

PREFIX = "nanobanana:test"
"""The account's keys in the test's Redis (each test has a Redis of its own)."""

Make = Callable[[nb.Limits], _redis.RedisLedger]


@pytest.fixture
async def ledgers(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Makes ledgers of one account on the test's Redis, each as another process would (its
    own connection), told the given limits; closes them after the test."""
    made: list[_redis.RedisLedger] = []

    def make(limits: nb.Limits) -> _redis.RedisLedger:
        ledger = _redis.RedisLedger(
            limits,
            DEFAULT_CLOCK,
            redis=_redis.connect(redis_server.url),
            prefix=PREFIX,
            max_wait=5.0,
        )
        made.append(ledger)
        return ledger

    try:
        yield make
    finally:
        for ledger in made:
            await ledger.aclose()
