"""A fake monotonic clock and a scripted transport, for tests that need no sockets and no real
time (touches the event loop only)."""

from __future__ import annotations

import asyncio
import heapq
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sized

from .._http import HttpRequest, HttpResponse

Script = Callable[[HttpRequest], "HttpResponse | BaseException | Awaitable[HttpResponse]"]


class _FakeTimer:
    """A callback armed on a :class:`FakeClock`; run by :meth:`FakeClock.advance`."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def done(self) -> bool:
        return self.cancelled


class FakeClock:
    """A monotonic clock that moves only when a test calls :meth:`advance`.

    Its sleepers and its timers (:meth:`call_at`, what the scheduler's runner is driven by)
    wake in one deadline order.

    Args:
        start: the initial reading, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _FakeTimer]] = []
        self._seq = 0

    def now(self) -> float:
        """The current fake time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` reaches ``deadline`` (yield once if it already has)."""
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (deadline, self._seq, future))
        await future

    def call_at(
        self, deadline: float, callback: Callable[[], object]
    ) -> asyncio.Handle | _FakeTimer:
        """Call ``callback`` once :meth:`advance` reaches ``deadline`` (on the next iteration
        of the loop if it already has). Returns a handle whose ``cancel()`` drops the call."""
        if deadline <= self._now:
            return asyncio.get_running_loop().call_soon(callback)
        timer = _FakeTimer(callback)
        self._seq += 1
        heapq.heappush(self._sleepers, (deadline, self._seq, timer))
        return timer

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers and running timers in deadline order and letting
        each run."""
        target = self._now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiting = heapq.heappop(self._sleepers)
            if waiting.done():
                continue  # cancelled
            self._now = max(self._now, deadline)
            if isinstance(waiting, _FakeTimer):
                asyncio.get_running_loop().call_soon(waiting.callback)
            else:
                waiting.set_result(None)
            await settle()
        self._now = target
        await settle()

    async def run_until(
        self, predicate: Callable[[], bool], *, step: float = 0.1, limit: float = 3600.0
    ) -> None:
        """Advance in ``step`` increments until ``predicate()`` holds (at most ``limit`` s)."""
        spent = 0.0
        while not predicate():
            if spent >= limit:
                raise TimeoutError(f"condition not met within {limit} fake seconds")
            await self.advance(step)
            spent += step


async def settle(rounds: int = 30) -> None:
    """Let ready callbacks and the tasks they wake run (a bounded number of loop turns).

    Stops early, on asyncio's own loop, once nothing is ready to run, no timer is due and the
    loop has no worker threads.
    """
    loop = asyncio.get_running_loop()
    # asyncio's queues of callbacks due now and of timers; uvloop keeps its own out of reach, so
    # there every round is taken. Stopping at quiet is what makes FakeClock tests cheap: a test
    # that advances through thousands of wakes would otherwise spin 30 idle turns for each.
    ready: Sized | None = getattr(loop, "_ready", None)
    timers: list[asyncio.TimerHandle] | None = getattr(loop, "_scheduled", None)
    for _ in range(rounds):
        await asyncio.sleep(0)
        if ready is None or timers is None or ready:
            continue
        if (not timers or timers[0].when() > loop.time()) and not _has_threads(loop):
            return


def _has_threads(loop: asyncio.AbstractEventLoop) -> bool:
    # Work handed to a thread (the journal's sqlite, a download's writes) reports back through
    # the loop's self-pipe at a real moment its queues cannot show: while the loop has worker
    # threads (anyio's carry their loop; asyncio's sit in its default executor), every round is
    # taken, each polling for that report, as settle always did.
    if getattr(loop, "_default_executor", None) is not None:
        return True
    return any(getattr(thread, "loop", None) is loop for thread in threading.enumerate())


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """An HttpResponse with a JSON body."""
    return HttpResponse(status=status, headers=dict(headers or {}), body=json.dumps(body).encode())


class ScriptedTransport:
    """A Transport whose answers come from a function of the request, recording every request.

    The script returns an HttpResponse, an awaitable of one, or an exception to raise (such as
    ``ConnectError`` or ``RequestTimeoutError``).
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self.requests: list[HttpRequest] = []
        self.closed = False

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Record ``request`` and answer from the script."""
        self.requests.append(request)
        answer = self._script(request)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, HttpResponse):
            return answer
        return await answer

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def count(self, kind: str) -> int:
        """How many requests of ``kind`` (``submit``, ``status``) were sent."""
        return sum(1 for r in self.requests if r.kind == kind)
