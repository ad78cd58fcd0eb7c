"""Objects kept per pending task (issue 22, item 4): every full collection walks each of them
again, so at 100,000 tasks pending their number is the garbage collector's share of the CPU."""

from __future__ import annotations

import asyncio
import gc

import nanobanana_async as nb
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    json_response,
)

_N = 400
# What the library keeps for a task submitted and polled: the Task handle, its future, its
# TaskRef and last TaskStatus, the runner's entry (plan and tracking in one), the slot lease
# and the entry's one heap row. Raise it only with a reason: it was 9 before the deadline heap
# was folded into the plan's and the runner's payload into the plan entry.
_LIBRARY_OBJECTS_PER_TASK = 7
# A pending generate(): those, its request, the caller's asyncio task and coroutine (which
# awaits the waiter the task's end wakes itself) and that waiter. Measured 14.0; 15.0 when the
# coroutine awaited one of the submitter's, which awaited the waiter.
_GENERATE_OBJECTS_PER_TASK = 14.5


def _tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_a_pending_task_keeps_at_most_seven_gc_tracked_objects(clock: FakeClock) -> None:
    """A submitted task whose checks see it running keeps at most seven GC-tracked objects in
    the library, checked and planned again (counted once all are pending, after a check)."""
    created = iter(range(10**9))

    def answer(request: HttpRequest) -> HttpResponse:
        if request.kind == "submit":
            data = {"taskId": f"t{next(created)}"}
        else:  # an answer names the task it is about
            data = {"taskId": request.params["taskId"], "state": "generating"}
        return json_response({"code": 200, "message": "success", "data": data})

    transport = ScriptedTransport(answer)
    limits = nb.Limits(requests=10**6, per=1.0, concurrent_tasks=10**6)
    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, limits=limits
    ) as c:
        requests = [nb.ImageRequest(prompt=f"p{i}") for i in range(_N)]
        warm = asyncio.ensure_future(c.submit(nb.ImageRequest(prompt="warm")))
        await clock.run_until(warm.done, step=0.01)
        await clock.advance(11.0)  # apixo's first check comes 10 s after the submit
        transport.requests.clear()
        tasks: list[nb.Task] = []
        before = _tracked_objects()
        submits = asyncio.gather(*(c.submit(r) for r in requests))
        await clock.run_until(submits.done, step=0.01)
        tasks.extend(submits.result())
        del submits
        await clock.advance(11.0)
        assert transport.count("status") >= _N  # each was checked and planned again
        transport.requests.clear()  # the fake transport's log is not the library's
        per_task = (_tracked_objects() - before) / _N
        assert all(not task.done() for task in tasks)
        assert c.statistics().in_flight == _N + 1
        assert per_task <= _LIBRARY_OBJECTS_PER_TASK, per_task


async def test_a_pending_generate_keeps_at_most_fourteen_gc_tracked_objects(
    clock: FakeClock,
) -> None:
    """A generate() call waiting for its accepted task keeps at most ~14 GC-tracked objects,
    its caller's asyncio task and coroutine and its request included: the create's finished
    task is not kept (19 when it was), nor a coroutine of the submitter's (15)."""
    created = iter(range(10**9))

    def answer(request: HttpRequest) -> HttpResponse:
        return json_response(
            {"code": 200, "message": "success", "data": {"taskId": f"t{next(created)}"}}
        )

    transport = ScriptedTransport(answer)  # only creates: the first check is 10 s later
    limits = nb.Limits(requests=10**6, per=1.0, concurrent_tasks=10**6)
    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, limits=limits
    ) as c:
        warm = asyncio.ensure_future(c.generate("warm"))
        await clock.advance(1.0)
        before = _tracked_objects()
        callers = [asyncio.ensure_future(c.generate(f"p{i}")) for i in range(_N)]
        await clock.advance(1.0)
        assert transport.count("submit") == _N + 1
        transport.requests.clear()  # the fake transport's log is not the library's
        per_task = (_tracked_objects() - before - 1) / _N  # less the list of callers
        assert all(not caller.done() for caller in callers)
        assert per_task <= _GENERATE_OBJECTS_PER_TASK, per_task
        for caller in [*callers, warm]:
            caller.cancel()
        await asyncio.gather(*callers, warm, return_exceptions=True)
