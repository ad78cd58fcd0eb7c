"""NANOBANANA_LOG turns on per-request logging: task id, status, latency, never the key."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import pytest

import nanobanana_async as nb
from nanobanana_async._log import configure_logging_from_env
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.fakeapi import FakeApixo


@pytest.fixture
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger("nanobanana_async")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.mark.usefixtures("restore_logger")
async def test_nanobanana_log_debug_logs_each_request(
    clock: FakeClock, canary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging_from_env({"NANOBANANA_LOG": "debug"})
    configure_logging_from_env({"NANOBANANA_LOG": "DEBUG"})  # idempotent: one handler
    transport = ScriptedTransport(FakeApixo(clock))
    client = nb.Client("apixo", api_key=canary, transport=transport, clock=clock)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
        job.result()
    err = capsys.readouterr().err
    assert re.search(r"INFO nanobanana_async: apixo accepted task t0 .* in \d+ ms", err)
    checks = re.findall(
        r"DEBUG nanobanana_async: apixo task t0: status check HTTP 200 in \d+ ms", err
    )
    assert len(checks) == transport.count("status") >= 1
    assert canary not in err


@pytest.mark.usefixtures("restore_logger")
def test_without_nanobanana_log_nothing_changes() -> None:
    logger = logging.getLogger("nanobanana_async")
    before = (logger.level, list(logger.handlers))
    configure_logging_from_env({})
    configure_logging_from_env({"NANOBANANA_LOG": "loud"})
    assert (logger.level, list(logger.handlers)) == before
