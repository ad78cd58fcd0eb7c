"""The process's memory of learned latency models, with bare floats, and a run on the fake
clock that must neither read nor fill it."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import nanobanana_async as nb
from nanobanana_async._scheduler._latency import Learned
from nanobanana_async._scheduler._memory import MEMORY, LatencyMemory
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.fakeapi import FakeApixo

A = ("apixo", "http://127.0.0.1:8000/api/v1", "nano-banana-2")
B = ("apixo", "http://127.0.0.1:8000/api/v1", "nano-banana-pro")
C = ("crun", "https://api.crun.ai", "nano-banana-2")


def _learned(median: float, samples: int = 5) -> Learned:
    return Learned(mean=math.log(median), var=0.04, samples=samples)


def test_recall_returns_what_was_remembered_per_key() -> None:
    """A model is recalled under its own key only, the latest remembered value winning."""
    memory = LatencyMemory()
    memory.remember(A, _learned(10.0))
    memory.remember(A, _learned(12.0))
    assert memory.recall(A) == _learned(12.0)
    assert memory.recall(B) is None


def test_capacity_evicts_the_least_recently_used_key() -> None:
    """Over capacity the key neither remembered nor recalled for longest goes first."""
    memory = LatencyMemory(capacity=2)
    memory.remember(A, _learned(10.0))
    memory.remember(B, _learned(11.0))
    assert memory.recall(A) is not None  # A is now the most recently used
    memory.remember(C, _learned(12.0))
    assert len(memory) == 2
    assert memory.recall(B) is None
    assert memory.recall(A) == _learned(10.0)
    assert memory.recall(C) == _learned(12.0)


def test_forget_drops_every_key_under_an_origin_only() -> None:
    """A new server at an origin forgets its paths' models; a longer port or another host
    keeps theirs."""
    memory = LatencyMemory()
    other_port = ("apixo", "http://127.0.0.1:80001/api/v1", "nano-banana-2")
    memory.remember(A, _learned(10.0))
    memory.remember(B, _learned(11.0))
    memory.remember(("xingchao", "http://127.0.0.1:8000", "m"), _learned(12.0))
    memory.remember(other_port, _learned(13.0))
    memory.remember(C, _learned(14.0))
    memory.forget("http://127.0.0.1:8000/")
    assert memory.recall(A) is None
    assert memory.recall(B) is None
    assert memory.recall(("xingchao", "http://127.0.0.1:8000", "m")) is None
    assert memory.recall(other_port) == _learned(13.0)
    assert memory.recall(C) == _learned(14.0)


async def test_fake_clock_run_neither_reads_nor_fills_the_memory(clock: FakeClock) -> None:
    """A fake clock's seconds are not a server's: its first task probes from the provider's
    advice despite a remembered model, and what it learns is not remembered."""
    key = ("apixo", "https://api.apixo.ai/api/v1", "nano-banana-2")
    remembered = _learned(30.0, samples=50)
    MEMORY.remember(key, remembered)
    server = FakeApixo(clock)
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, random=lambda: 0.5
    )
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(4)]
        await clock.run_until(lambda: all(job.done() for job in jobs))
    assert all(job.result().urls for job in jobs)
    # The advice's 10 s first check, probed at a sixteenth; the remembered model would say
    # 30 s * e^-0.1 = 27 s.
    first_check = min(t for t, kind in server.log if kind == "status")
    assert first_check == 1000.0 + 10.0 / 16
    assert MEMORY.recall(key) is remembered
    assert len(MEMORY) == 1


def test_a_carried_model_never_sets_how_long_a_slot_of_unknown_fate_is_held() -> None:
    """A task whose create may or may not have reached the provider keeps its slot until its
    horizon. An earlier run's latencies may be stale (creates fail ambiguously most when the
    provider is overloaded, and slow): the horizon stays the conservative default until this
    run has seen tasks of its own finish, while the carried model plans checks at once."""
    from nanobanana_async._scheduler._ledger import DEFAULT_HORIZON
    from nanobanana_async._scheduler._plan import Planner
    from nanobanana_async._scheduler._runner import Scheduler

    scheduler = Scheduler(FakeClock())
    scheduler.plan = Planner(lambda group: _learned(10.0, samples=50))

    conn: Any = SimpleNamespace(timeouts=SimpleNamespace(task=3600.0))  # what horizon() reads
    model = scheduler.plan.model(A, 1.0, 1.0)
    assert scheduler.plan.learned_model(A) is model  # it plans checks at once
    assert scheduler.horizon(conn, A, 0.0) == DEFAULT_HORIZON
    for _ in range(3):
        model.observe(9.0, 11.0)
    assert scheduler.horizon(conn, A, 0.0) < 60.0
