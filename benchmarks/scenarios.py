"""Benchmark scenarios: throughput against the bound, memory per pending task, CPU per task."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import heapq
import json
import logging
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import attrs

import nanobanana_async as nb
from nanobanana_async._limits import Gcra, pacing
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    Latency,
    ScriptedTransport,
    ServerLimits,
    Simulator,
    json_response,
)

from .baseline import Baseline, aiohttp_sender

DOC_LATENCY = 17.5  # the providers' docs: Nano Banana takes ~15-20 s
DOC_FIRST_WAIT = 10.0  # apixo: wait ~10 s, then poll every 3 s
DOC_INTERVAL = 3.0


@attrs.frozen
class Regime:
    """Limits and latency of one throughput scenario."""

    name: str
    requests: int
    per: float
    concurrent: int
    mean_latency: float
    sigma: float
    tasks: int

    @property
    def median(self) -> float:
        """Lognormal median for the configured mean."""
        return self.mean_latency / math.exp(self.sigma**2 / 2)

    def bound(self, *, callbacks: bool = False) -> float:
        """Tasks per second no client can beat: min(C / T, (R / W) / 2), or R / W with callbacks."""
        rate = self.requests / self.per
        return min(self.concurrent / self.mean_latency, rate if callbacks else rate / 2)


SCENARIO_1 = Regime("1 concurrency-bound", 1000, 6.0, 100, 1.75, 0.5, 1200)
SCENARIO_1B = Regime("1b rate-bound", 1000, 6.0, 400, 1.75, 0.5, 1200)
SCENARIO_2 = Regime("2 callbacks", 1000, 6.0, 100, 1.75, 0.5, 1200)
FULL = Regime("5 full scale", 10_000, 60.0, 1000, 17.5, 0.5, 30_000)


async def _sample(into: list[tuple[float, int]], read: Any, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        into.append((loop.time(), read()))
        await asyncio.sleep(0.1)


def clairvoyant_wall(durations: Sequence[float], requests: int, per: float, cap: int) -> float:
    """Seconds a client that knows every task's duration needs for all of them.

    It sends one submit and one status check at the exact finish, under the same limits:
    at most ``requests`` in any window of ``per`` seconds (counted as the server counts, with
    no safety margin) and ``cap`` tasks held from submit to check. It is greedy, tasks in
    creation order: whenever a request may be sent, the next submit goes if a slot is free,
    else the earliest finished task's check (which frees one). Checking first instead is up
    to 2% slower on scenario 1b and never faster on these regimes. Network time counts as
    zero.
    """
    sent: collections.deque[float] = collections.deque(maxlen=requests)

    def token(now: float) -> float:
        # The next request may go once the one `requests` back has left the window.
        return max(now, sent[0] + per) if len(sent) == requests else now

    return _greedy(durations, cap, token, sent.append)


def paced_clairvoyant_wall(durations: Sequence[float], limits: nb.Limits, cap: int) -> float:
    """As :func:`clairvoyant_wall`, but sending at the client's own even pace (GCRA with its
    safety margin and small burst) instead of spending whole windows at once: the best an
    evenly paced client can do. On a rate-bound run a window's burst at the start and after
    lulls is worth up to a window of requests, which pacing gives up for safety."""
    gcra = Gcra(*pacing(limits))

    def token(now: float) -> float:
        return max(now, gcra.next_free())

    return _greedy(durations, cap, token, gcra.reserve)


def _greedy(
    durations: Sequence[float],
    cap: int,
    token: Callable[[float], float],
    send: Callable[[float], object],
) -> float:
    running: list[float] = []  # finish times of submitted, unchecked tasks
    now = 0.0
    submitted = checked = 0
    n = len(durations)
    while checked < n:
        free = token(now)
        check_at = max(running[0], free) if running else math.inf
        submit_at = free if submitted < n and len(running) < cap else math.inf
        if check_at < submit_at:
            heapq.heappop(running)
            now = check_at
            checked += 1
        else:
            now = submit_at
            heapq.heappush(running, now + durations[submitted])
            submitted += 1
        send(now)
    return now


def _steady_ratio(done_at: list[float], bound: float) -> float:
    """Throughput over the middle 80% of completions (no start-up, no tail), over the bound."""
    times = sorted(done_at)
    if len(times) < 10:
        return math.nan
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    return (len(times) * 0.8) / max(hi - lo, 1e-9) / bound


@attrs.define
class _Run:
    outcomes: list[object]
    start: float
    wall: float
    done_at: list[float]
    samples: list[tuple[float, int]]

    def timeline(self, sim: Simulator) -> dict[str, Any]:
        return {"start": self.start, "arrivals": sim.stats.arrivals, "in_flight": self.samples}


async def _timed_run(
    one: Callable[[int], Awaitable[object]], n: int, in_flight: Callable[[], int]
) -> _Run:
    """Run ``one(i)`` for every i at once, noting completion times and sampling in-flight."""
    loop = asyncio.get_running_loop()
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(_sample(samples, in_flight, stop))
    done_at: list[float] = []

    async def timed(i: int) -> object:
        outcome = await one(i)
        done_at.append(loop.time())
        return outcome

    start = loop.time()
    outcomes = await asyncio.gather(*(timed(i) for i in range(n)), return_exceptions=True)
    wall = loop.time() - start
    stop.set()
    await sampler
    return _Run(list(outcomes), start, wall, done_at, samples)


def _summary(
    who: str,
    regime: Regime,
    sim: Simulator,
    wall: float,
    ok: int,
    max_in_flight: int,
    done_at: list[float],
    *,
    callbacks: bool = False,
) -> dict[str, Any]:
    lags = sorted(sim.stats.lags) or [math.nan]
    bound = regime.bound(callbacks=callbacks)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    # The same drawn latencies, in creation order (the simulator draws one per create).
    durations = [finish - created for created, finish in sim.stats.spans]
    ideal = clairvoyant_wall(durations, regime.requests, regime.per, regime.concurrent)
    limits = nb.Limits(requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent)
    paced = paced_clairvoyant_wall(durations, limits, regime.concurrent)
    return {
        "scenario": regime.name,
        "client": who,
        "tasks": regime.tasks,
        "succeeded": ok,
        "wall_s": round(wall, 2),
        "throughput_per_s": round(ok / wall, 2),
        "bound_per_s": round(bound, 2),
        "ratio_to_bound": round(ok / wall / bound, 3),
        "clairvoyant_wall_s": round(ideal, 2),
        "ratio_to_clairvoyant": round(ideal / wall * ok / regime.tasks, 3),
        "paced_clairvoyant_wall_s": round(paced, 2),
        "ratio_to_paced_clairvoyant": round(paced / wall * ok / regime.tasks, 3),
        "steady_ratio": round(_steady_ratio(done_at, bound), 3),
        "requests_per_task": round(sim.stats.total_requests / max(ok, 1), 2),
        "checks_per_task": round(sim.stats.checks_per_task(), 2),
        "server_429s": sim.stats.rate_limited,
        "max_requests_in_window": sim.stats.max_window,
        "request_limit": regime.requests,
        "max_concurrent_server": sim.stats.max_concurrent,
        "max_in_flight_client": max_in_flight,
        "concurrent_cap": regime.concurrent,
        "lag_p50_over_T": round(statistics.median(lags) / regime.mean_latency, 3),
        "lag_p99_over_T": round(p99 / regime.mean_latency, 3),
    }


def _simulator(regime: Regime, seed: int) -> Simulator:
    return Simulator(
        "apixo",
        latency=Latency(median=regime.median, sigma=regime.sigma),
        limits=ServerLimits(
            requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent
        ),
        seed=seed,
        record_timeline=True,
    )


async def run_ours(
    regime: Regime, seed: int = 1, *, callbacks: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our client (with a callback receiver if asked); the summary row and the timelines."""
    limits = nb.Limits(requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent)
    receiver = nb.CallbackReceiver() if callbacks else None
    if receiver is not None:
        await receiver.start()
    async with (
        _simulator(regime, seed) as sim,
        nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, limits=limits, callbacks=receiver
        ) as client,
    ):
        run = await _timed_run(
            lambda i: client.generate(f"prompt {i}"),
            regime.tasks,
            lambda: client.statistics().in_flight,
        )
        peak = client.statistics().peak_in_flight
    if receiver is not None:
        await receiver.aclose()
    ok = sum(isinstance(o, nb.ImageResult) for o in run.outcomes)
    who = "nanobanana-async + callbacks" if callbacks else "nanobanana-async"
    row = _summary(who, regime, sim, run.wall, ok, peak, run.done_at, callbacks=callbacks)
    return row, run.timeline(sim)


async def run_baseline(regime: Regime, seed: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hand-written client, docs' timing scaled to the regime's latency."""
    scale = regime.mean_latency / DOC_LATENCY
    async with (
        _simulator(regime, seed) as sim,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        baseline = Baseline(
            aiohttp_sender(session, sim.base_url, sim.api_key),
            concurrent=regime.concurrent,
            first_wait=DOC_FIRST_WAIT * scale,
            interval=DOC_INTERVAL * scale,
        )
        run = await _timed_run(
            lambda i: baseline.generate(f"prompt {i}"), regime.tasks, lambda: baseline.in_flight
        )
    ok = sum(isinstance(o, list) for o in run.outcomes)
    row = _summary("hand-written", regime, sim, run.wall, ok, baseline.max_in_flight, run.done_at)
    return row, run.timeline(sim)


# ---------------------------------------------------------------------- memory (scenario 3)


def _holding_server(request: HttpRequest) -> HttpResponse:
    """Accepts every task and keeps it running forever."""
    if request.kind == "submit":
        return json_response({"code": 200, "message": "success", "data": {"taskId": "t"}})
    return json_response(
        {"code": 200, "message": "success", "data": {"taskId": "t", "state": "processing"}}
    )


async def _settle_until(predicate: Any) -> None:
    # The fake clock is frozen, so nothing would ever set an event: spin the loop instead.
    while not predicate():  # noqa: ASYNC110
        await asyncio.sleep(0)


async def memory_case(case: str, n: int) -> dict[str, Any]:
    """Bytes per pending call for one case, measured with tracemalloc (run in a fresh process)."""
    import tracemalloc

    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    rss_before = _rss()
    live = 0
    # Each case's pending calls: ours return results, the consumer nothing, the baseline URLs.
    jobs: (
        list[asyncio.Task[nb.ImageResult]]
        | list[asyncio.Task[None]]
        | list[asyncio.Task[list[str]]]
    )
    if case in ("ours-gather", "ours-as-completed"):
        clock = FakeClock()  # frozen: nothing polls, every task stays pending
        client = nb.Client(
            "apixo", api_key="k", transport=ScriptedTransport(_holding_server), clock=clock
        )
        await client.__aenter__()
        if case == "ours-gather":
            jobs = [asyncio.ensure_future(client.generate(f"p{i}")) for i in range(n)]
            await _settle_until(lambda: _slots_held(client) >= 1000)
            await asyncio.sleep(0)
            live = n
        else:
            prompts = (f"p{i}" for i in range(n))
            consumer = asyncio.ensure_future(_drain(client.as_completed(prompts)))
            await _settle_until(lambda: _slots_held(client) >= 1000)
            jobs = [consumer]
            live = _slots_held(client)
    else:

        async def send(method: str, path: str, body: Any, params: Any) -> Any:
            return 200, {}, {"code": 200, "data": {"taskId": "t", "state": "processing"}}

        baseline = Baseline(send, concurrent=1000, first_wait=3600.0, interval=3600.0)
        jobs = [asyncio.ensure_future(baseline.generate(f"p{i}")) for i in range(n)]
        await _settle_until(lambda: baseline.in_flight >= 1000)
        live = n
    snapshot = tracemalloc.take_snapshot()
    used = sum(s.size_diff for s in snapshot.compare_to(base, "filename"))
    rss_after = _rss()
    tracemalloc.stop()
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    return {
        "case": case,
        "requests": n,
        "live_calls": live,
        "traced_mb": round(used / 2**20, 1),
        "bytes_per_pending_call": round(used / n),
        "rss_delta_mb": round((rss_after - rss_before) / 2**20, 1),
    }


def _slots_held(client: nb.Client) -> int:
    # The clock is frozen, so granted callers wait for their turn in the window and none is
    # sent (statistics().in_flight counts sent creates): count the slots granted instead.
    submitter = client._life.submitter
    return submitter.conn.account.ledger.slots.held if submitter is not None else 0


async def _drain(tasks: Any) -> None:
    async for _ in tasks:
        pass


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


# ---------------------------------------------------------------------- overhead (scenario 4)


def _apixo_done(task_id: str) -> HttpResponse:
    """An apixo status answer: the task succeeded (an answer names the task it is about)."""
    return json_response(
        {
            "code": 200,
            "message": "success",
            "data": {
                "taskId": task_id,
                "state": "success",
                "costTime": 1,
                "resultJson": json.dumps({"resultUrls": ["https://i/x.png"]}),
            },
        }
    )


def _answering_done(ids: list[str]) -> ScriptedTransport:
    # Built once per task before the run: the fake server's JSON encoding is not our cost.
    answers = {task_id: _apixo_done(task_id) for task_id in ids}
    return ScriptedTransport(lambda request: answers[str(request.params["taskId"])])


_APIXO_DONE = _apixo_done("t")  # every task of the overhead runs is created as "t"


async def overhead(n: int) -> dict[str, Any]:
    """CPU microseconds per task for submit, one status check and resolve, in process."""

    # Answers are built once: the fake server's own JSON encoding is not our overhead.
    created = json_response({"code": 200, "message": "success", "data": {"taskId": "t"}})

    def instant(request: HttpRequest) -> HttpResponse:
        return created if request.kind == "submit" else _APIXO_DONE

    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n)
    transport = ScriptedTransport(instant)
    async with nb.Client("apixo", api_key="k", transport=transport, limits=limits) as client:
        with _GcTimer() as collecting:
            cpu = time.process_time()
            wall = time.perf_counter()
            results = await asyncio.gather(*(client.generate(f"p{i}") for i in range(n)))
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
    assert len(results) == n
    statuses = transport.count("status")
    plain = await _plain_overhead(n, created)
    return {
        "tasks": n,
        "cpu_us_per_task": round(cpu / n * 1e6, 1),
        "gc_us_per_task": round(collecting.seconds / n * 1e6, 1),
        "objects_per_pending_task": await pending_objects(min(n, 2000)),
        "status_checks_per_task": round(statuses / n, 2),
        "wall_s": round(wall, 2),
        "plain_cpu_us_per_task": round(plain / n * 1e6, 1),
        "ratio_to_plain": round(cpu / plain, 2),
    }


async def pending_objects(n: int) -> float:
    """GC-tracked objects per task while ``n`` ``generate()`` calls wait for their task
    (submitted, none checked yet): what every full collection walks again, the coroutine each
    caller runs in included (a ``gather`` makes a task of it in any program)."""
    answers = iter(range(10**9))

    def created(request: HttpRequest) -> HttpResponse:
        # Only creates: apixo's first check is 10 s after the submit, past the count.
        return json_response(
            {"code": 200, "message": "success", "data": {"taskId": f"t{next(answers)}"}}
        )

    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n + 1)
    transport = ScriptedTransport(created)
    # Cancelling the callers logs each accepted task's id at WARNING (right for a user, who
    # would lose it otherwise), and the close names them again: here, thousands of lines.
    with _silenced("nanobanana_async"):
        async with nb.Client("apixo", api_key="k", transport=transport, limits=limits) as client:
            warm = asyncio.ensure_future(client.generate("warm"))
            await asyncio.sleep(0.05)
            gc.collect()
            before = len(gc.get_objects())
            waiting = [asyncio.ensure_future(client.generate(f"p{i}")) for i in range(n)]
            for _ in range(3000):  # the creates are answered at once: a few loop turns each
                await asyncio.sleep(0.01)
                if transport.count("submit") == n + 1:
                    break
            await asyncio.sleep(0.01)  # the last answers are read and their tasks tracked
            transport.requests.clear()  # the fake transport's log is not the client's
            gc.collect()
            objects = (len(gc.get_objects()) - before - 1) / n  # less the list of waiters
            for job in [*waiting, warm]:
                job.cancel()
            await asyncio.gather(*waiting, warm, return_exceptions=True)
    return round(objects, 1)


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    """The logger ``name`` says nothing inside the block."""
    logger = logging.getLogger(name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


class _GcTimer:
    """Wall seconds the garbage collector ran inside the block (the process is otherwise idle,
    so this is CPU): the share of the overhead that comes from objects kept per pending task."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> _GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def _plain_overhead(n: int, created: HttpResponse) -> float:
    """CPU seconds the hand-written loop spends on the same canned answers: a coroutine per
    prompt, its own JSON decoding, one check; the floor of doing the job at all."""

    async def send(
        method: str, path: str, body: Any, params: Any
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        answer = created if method == "POST" else _APIXO_DONE
        return answer.status, dict(answer.headers), json.loads(answer.body)

    baseline = Baseline(send, concurrent=n, first_wait=0.0, interval=0.0)
    cpu = time.process_time()
    results = await asyncio.gather(*(baseline.generate(f"p{i}") for i in range(n)))
    cpu = time.process_time() - cpu
    assert len(results) == n
    return cpu


async def responsiveness(n: int) -> dict[str, Any]:
    """The longest event-loop iteration while ``n`` status checks come due at the same instant.

    ``n`` tasks are resumed at once (so their first checks fall together), the fake clock
    jumps past them, and a heartbeat that yields on every iteration measures how long the
    loop was busy between its turns: what any other coroutine of the application would wait.
    """
    clock = FakeClock()
    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n)
    transport = _answering_done([f"t{i}" for i in range(n)])
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0)
            gaps.append(time.perf_counter() - before)

    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, limits=limits
    ) as client:
        ended = asyncio.ensure_future(
            asyncio.gather(*(client.resume(f"t{i}", model="nano-banana-2") for i in range(n)))
        )
        beat = asyncio.ensure_future(heartbeat())
        wall = time.perf_counter()
        await clock.advance(11.0)  # apixo's first check is 10 s after the submit
        while not ended.done():
            await clock.advance(0.01)
        assert len(ended.result()) == n
        wall = time.perf_counter() - wall
        stop.set()
        await beat
    gaps.sort()
    return {
        "checks_due_at_once": n,
        "max_loop_iteration_ms": round(gaps[-1] * 1000, 1),
        "p99_loop_iteration_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 2),
        "loop_iterations": len(gaps),
        "wall_s": round(wall, 2),
        "max_loop_iteration_closing_ms": round(await _closing_gap(n) * 1000, 1),
    }


async def _closing_gap(n: int) -> float:
    """The longest loop iteration while a client with ``n`` tasks pending closes."""
    clock = FakeClock()
    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n)
    transport = _answering_done([f"t{i}" for i in range(n)])
    client = nb.Client("apixo", api_key="k", transport=transport, clock=clock, limits=limits)
    await client.__aenter__()
    # Nothing is checked before apixo's 10 s and the clock stays put: all n stay pending.
    resumed = asyncio.gather(
        *(client.resume(f"t{i}", model="nano-banana-2") for i in range(n)),
        return_exceptions=True,
    )
    gaps: list[float] = []
    closed = False

    async def heartbeat() -> None:
        while not closed:
            before = time.perf_counter()
            await asyncio.sleep(0)
            gaps.append(time.perf_counter() - before)

    beat = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0)
    await client.aclose()
    closed = True
    await beat
    await resumed
    return max(gaps)


# ---------------------------------------------------------------------- CPU against plain aiohttp


# Scenario 1's shape five times faster: T = 0.35 s, 1,000 requests per 1.2 s, 100 at once.
CPU_REGIME = Regime("cpu", 1000, 1.2, 100, 0.35, 0.5, 1200)


async def _client_cpu(who: str, sim: Simulator, regime: Regime) -> tuple[float, int]:
    """This thread's CPU seconds for the whole run, and the tasks that succeeded.

    ``who``: ``ours``, ``plain`` (the hand-written loop) or a ``plain+...`` variant of it
    that adds only what this project requires (``benchmarks.loops.VARIANTS``).
    """
    if who.startswith("plain+"):
        from .loops import run_musts  # loops imports this module

        return await run_musts(who, sim, regime)
    if who == "ours":
        limits = nb.Limits(
            requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent
        )
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, limits=limits
        ) as client:
            cpu = time.thread_time()
            outcomes = await asyncio.gather(
                *(client.generate(f"prompt {i}") for i in range(regime.tasks)),
                return_exceptions=True,
            )
            cpu = time.thread_time() - cpu
        return cpu, sum(isinstance(o, nb.ImageResult) for o in outcomes)
    scale = regime.mean_latency / DOC_LATENCY
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        baseline = Baseline(
            aiohttp_sender(session, sim.base_url, sim.api_key),
            concurrent=regime.concurrent,
            first_wait=DOC_FIRST_WAIT * scale,
            interval=DOC_INTERVAL * scale,
        )
        cpu = time.thread_time()
        answers = await asyncio.gather(
            *(baseline.generate(f"prompt {i}") for i in range(regime.tasks)),
            return_exceptions=True,
        )
        cpu = time.thread_time() - cpu
    return cpu, sum(isinstance(a, list) for a in answers)


def cpu_against_plain(regime: Regime = CPU_REGIME) -> list[dict[str, Any]]:
    """Client-side CPU per request and per task: ours against the hand-written aiohttp loop.

    The simulator runs in its own thread, so the client's thread CPU time (``thread_time``)
    excludes the server's. Both run under the regime's limits; the baseline polls on the docs'
    timing scaled to the latency and sleeps on 429s, as in the throughput scenarios.
    """
    rows = []
    costs: list[dict[str, float]] = []  # each client's CPU figures, for the ratios
    for who in ("ours", "plain-aiohttp"):
        sim = _simulator(regime, seed=4).start_in_thread()
        try:
            cpu, ok = asyncio.run(_client_cpu(who, sim, regime))
        finally:
            sim.stop_thread()
        requests = sim.stats.total_requests
        cost = {
            "cpu_us_per_request": round(cpu / max(requests, 1) * 1e6, 1),
            "cpu_us_per_task": round(cpu / max(ok, 1) * 1e6, 1),
        }
        costs.append(cost)
        rows.append(
            {
                "client": who,
                "tasks": regime.tasks,
                "succeeded": ok,
                "requests": requests,
                "requests_per_task": round(requests / max(ok, 1), 2),
                "server_429s": sim.stats.rate_limited,
                **cost,
            }
        )
    ours, plain = costs
    for key in ("cpu_us_per_request", "cpu_us_per_task"):
        rows[0][f"{key}_vs_plain"] = round(ours[key] / plain[key], 2)
    return rows
