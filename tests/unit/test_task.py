"""Task, the handle a caller awaits: its state, one resolution, and waiters that come and go."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from typing import Any

import pytest

import nanobanana_async as nb
from nanobanana_async._task import Task
from nanobanana_async.testing import FakeClock, settle

REQUEST = nb.ImageRequest(prompt="a cat")
REF = nb.TaskRef("apixo", "t1", "nano-banana-2")
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def result(urls: tuple[str, ...] = ("https://img.test/t1.png",)) -> nb.ImageResult:
    return nb.ImageResult(
        task_id="t1",
        provider="apixo",
        model="nano-banana-2",
        urls=urls,
        request=REQUEST,
        submitted_at=WHEN,
        completed_at=WHEN,
    )


async def test_a_new_task_is_queued_without_an_id() -> None:
    """Before the provider accepts it: no id, no ref, QUEUED, not done; request and key kept."""
    task = Task(REQUEST, key="row-7")
    assert (task.id, task.ref, task.status) == (None, None, None)
    assert task.state is nb.TaskState.QUEUED
    assert not task.done()
    assert (task.request, task.key) == (REQUEST, "row-7")
    assert repr(task) == "<Task id=None state=queued>"


async def test_accept_and_observe_show_the_id_and_the_last_state() -> None:
    """Once accepted the id and ref are known; each check's status becomes the state."""
    task = Task(REQUEST)
    task._accept(REF)
    running = nb.TaskStatus(state=nb.TaskState.RUNNING, raw_state="processing")
    task._observe(running)
    assert (task.id, task.ref, task.status) == ("t1", REF, running)
    assert task.state is nb.TaskState.RUNNING
    assert repr(task) == "<Task id='t1' state=running>"


async def test_resolves_once_with_a_result() -> None:
    """The first resolution wins; a later one (a late or conflicting answer) changes nothing."""
    task = Task(REQUEST)
    task._accept(REF)
    first = result()
    assert task._resolve(first, None) is True
    assert task._resolve(None, nb.ClientClosedError("closed")) is False
    assert task._resolve(result(("https://other/x.png",)), None) is False
    assert task.done()
    assert task.state is nb.TaskState.SUCCEEDED
    assert await task is first
    assert await task.result(timeout=5) is first


async def test_an_error_is_raised_to_every_waiter() -> None:
    """A failed task raises its error to each await, and reads FAILED."""
    task = Task(REQUEST)
    error = nb.GenerationFailedError(
        "it broke", task_id="t1", provider="apixo", model="nano-banana-2", code="X"
    )
    task._resolve(None, error)
    assert task.state is nb.TaskState.FAILED
    for _ in range(2):
        with pytest.raises(nb.GenerationFailedError) as info:
            await task
        assert info.value is error


async def test_a_failure_nobody_awaits_is_not_reported_to_the_loop() -> None:
    """A failed task that is never awaited does not log 'exception was never retrieved'."""
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    try:
        task = Task(REQUEST)
        task._resolve(None, nb.ClientClosedError("closed"))
        await settle()
        del task
        gc.collect()
        await settle()
    finally:
        loop.set_exception_handler(None)
    assert contexts == []


async def test_cancelling_a_waiter_leaves_the_task_tracked() -> None:
    """A cancelled await detaches that waiter only; the task goes on and resolves for others."""
    task = Task(REQUEST)
    waiter = asyncio.ensure_future(task.result())
    await settle()
    waiter.cancel()
    await settle()
    assert waiter.cancelled()
    assert not task.done()
    done = result()
    task._resolve(done, None)
    assert await task is done


async def test_waiters_coming_and_leaving_in_any_order_all_get_the_result() -> None:
    """The first waiter leaving while a second waits, and a third coming after: those still
    waiting are all resolved, and the one that left stays cancelled."""
    task = Task(REQUEST)
    first = asyncio.ensure_future(task.result())
    await settle()
    second = asyncio.ensure_future(task.result())
    await settle()
    first.cancel()
    await settle()
    third = asyncio.ensure_future(task.result())
    await settle()
    done = result()
    task._resolve(done, None)
    assert await second is done
    assert await third is done
    assert first.cancelled()
    lone = Task(REQUEST)
    leaving = asyncio.ensure_future(lone.result())
    await settle()
    leaving.cancel()
    await settle()
    assert lone._waiters is None  # nothing kept of a caller that left
    staying = asyncio.ensure_future(lone.result())
    await settle()
    lone._resolve(done, None)
    assert await staying is done


async def test_callers_that_give_up_leave_nothing_behind() -> None:
    """A web handler that waits on a long task and gives up (its request cancelled), a
    thousand times over: the task keeps no trace of those callers, only of those still
    waiting, so memory does not grow with every abandoned wait."""
    task = Task(REQUEST)
    staying = asyncio.ensure_future(task.result())
    for _ in range(10):
        leaving = [asyncio.ensure_future(task.result()) for _ in range(100)]
        await settle()
        for caller in leaving:
            caller.cancel()
        await settle()
    # The one caller left is kept bare again, as a task's only caller is (not a 1-list).
    assert isinstance(task._waiters, asyncio.Future)
    done = result()
    task._resolve(done, None)
    assert await staying is done


async def test_a_waiter_timeout_raises_with_the_id_and_keeps_the_task() -> None:
    """result(timeout=) running out raises TaskTimeoutError naming the task; it stays pending."""
    task = Task(REQUEST)
    task._accept(REF)
    with pytest.raises(nb.TaskTimeoutError) as info:
        await task.result(timeout=0)
    assert (info.value.task_id, info.value.provider, info.value.model) == (
        "t1",
        "apixo",
        "nano-banana-2",
    )
    assert isinstance(info.value, TimeoutError)
    assert not task.done()
    done = result()
    task._resolve(done, None)
    assert await task.result(timeout=0) is done


async def test_a_waiter_timeout_runs_on_the_clients_clock() -> None:
    """result(timeout=) waits on the injected clock: a fake clock decides when it runs out, so
    scenario tests never wait in real time."""
    clock = FakeClock(100.0)
    task = Task(REQUEST, clock=clock)
    task._accept(REF)
    waiter = asyncio.ensure_future(task.result(timeout=30))
    await clock.advance(29.0)
    assert not waiter.done()
    await clock.advance(1.0)
    await settle()
    assert waiter.done()
    with pytest.raises(nb.TaskTimeoutError):
        await waiter
    early = asyncio.ensure_future(task.result(timeout=30))
    await clock.advance(5.0)
    done = result()
    task._resolve(done, None)
    assert await early is done


@pytest.mark.parametrize("timeout", [-1, float("nan"), "5", True])
async def test_result_with_a_bad_timeout_is_refused_at_once(timeout: object) -> None:
    """result(timeout=-1) is InvalidRequestError naming the timeout, not a TaskTimeoutError
    'not finished within -1 s' (nor a bare TypeError for "5"); the task is untouched."""
    task = Task(REQUEST)
    task._accept(REF)
    with pytest.raises(nb.InvalidRequestError, match=r"timeout must be a number of seconds"):
        await task.result(timeout=timeout)  # type: ignore[arg-type]
    assert not task.done()
