"""Against the loopback simulator (real time, under a second): the id a cancelled generate
logs is enough to get the task back with ``client.resume``."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import Latency, Simulator

ACCEPTED = re.compile(r"accepted task (\S+) \(model (\S+)\)")


async def test_f18_the_id_a_timed_out_generate_logs_resumes_its_task(
    canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``wait_for(client.generate(...), 0.5)`` times out on a 30 s task: one WARNING names the
    task, and ``client.resume`` with what it names tracks the same task."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    async with (
        Simulator("apixo", api_key=canary, latency=Latency(median=30.0, sigma=0.01)) as sim,
        nb.Client("apixo", api_key=canary, base_url=sim.base_url) as client,
    ):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.generate("a fox at dawn"), 0.5)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1
        found = ACCEPTED.search(lines[0])
        assert found is not None
        task_id, model = found.groups()
        assert f"client.resume({task_id!r}, model={model!r})" in lines[0]
        task = client.resume(task_id, model=model)
        status = await client._poll(task_id, model=model)
        assert status.state in (nb.TaskState.QUEUED, nb.TaskState.RUNNING)
        assert task.id == task_id
        assert canary not in lines[0]
        assert "a fox at dawn" not in lines[0]
    # Closing with both pending (the orphan and its resumed twin) names nobody again.
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
