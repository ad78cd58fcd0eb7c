"""CPU and event-loop turns per request, on asyncio and on uvloop, of two versions of the client
side by side with the plain aiohttp loop: ``python -m benchmarks.loops``.

Every measurement runs in a fresh subprocess (the simulator in a thread of it, so only the
client thread's CPU counts), interleaved: run 1 of every (version, loop), then run 2, ... The
other version is the package as committed at ``--base`` (default ``main``), exported with
``git archive`` to a temporary folder and put first on the subprocess's path; this folder's
benchmark code drives both. Loop turns are the client thread's ``epoll_wait``/``epoll_pwait``
calls (one per iteration of either loop), counted by ``perf stat`` on the kernel's syscall
tracepoints for that thread alone (no slowdown; "-" where perf or its tracepoints are missing).

``--clients`` also runs the plain loop with only what this project requires added (``plain+all``
and one requirement at a time: the floor no design keeping them can go under, see
benchmarks/README "What the requirements cost"); ``--profile`` profiles the clients instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs

ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("asyncio", "uvloop")


def _child(args: argparse.Namespace) -> None:
    """One measurement in this process: print a JSON row."""
    from . import scenarios

    regime = scenarios.CPU_REGIME
    if args.regime == "large":
        # The budget far above what the run needs: nothing waits on the limits.
        regime = attrs.evolve(regime, name="large", requests=1_000_000)
    regime = attrs.evolve(regime, tasks=args.tasks)
    tracer = None
    if shutil.which("perf") is not None:
        tracer = subprocess.Popen(  # noqa: S603  perf on this thread, fixed arguments
            [  # noqa: S607  perf from PATH, found by shutil.which above
                "perf",
                "stat",
                "-x,",
                "-e",
                "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait",
                "-t",
                str(threading.get_native_id()),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # attached before the run starts
    sim = scenarios._simulator(regime, seed=4).start_in_thread()
    try:
        factory = None
        if args.loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        profiler = None
        if args.profile_to:
            import cProfile

            # A few tasks first, on a simulator of their own: imports and first-use set-up
            # (attrs compiling its methods, lazy imports) stay out of the profile.
            warm = scenarios._simulator(regime, seed=5).start_in_thread()
            try:
                with asyncio.Runner(loop_factory=factory) as runner:
                    runner.run(scenarios._client_cpu(args.who, warm, attrs.evolve(regime, tasks=5)))
            finally:
                warm.stop_thread()

            # This thread only (the simulator's is not profiled), on its CPU clock.
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
        with asyncio.Runner(loop_factory=factory) as runner:
            cpu, ok = runner.run(scenarios._client_cpu(args.who, sim, regime))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_to)
    finally:
        sim.stop_thread()
    turns = None
    if tracer is not None:
        tracer.send_signal(signal.SIGINT)
        counts = re.findall(r"^(\d+),", tracer.communicate()[1], re.M)
        turns = sum(int(count) for count in counts) if counts else None
    requests = sim.stats.total_requests
    print(
        json.dumps(
            {
                "requests": requests,
                "server_429s": sim.stats.rate_limited,
                "tasks": ok,
                "cpu_us_per_request": cpu / max(requests, 1) * 1e6,
                "cpu_us_per_task": cpu / max(ok, 1) * 1e6,
                "turns": turns,
            }
        )
    )


# ------------------------------------------------------- the plain loop plus only what is required

#: What each "plain+..." client adds to the plain loop (``benchmarks.baseline``), one must each:
#: ``shield``: the create runs to its end in a task of its own and hands its id over, so a
#: cancelled caller never loses a paid task id; ``mask``: every answer is scanned for the key
#: (``Secret.redact_bytes``); ``parse``: the request is built and every answer validated and
#: read into typed results by the apixo driver; ``pace``: a GCRA turn before every send (the
#: client's pace at its limits, woken on the 1/256 s grid, never early, and a send log that
#: never holds more than the window's budget); ``sched``: one shared timer checks the tasks
#: (a task per check, due times rounded up to the same grid), no coroutine per prompt
#: sleeping; the slot is released when the task ends, not when its caller leaves.
MUSTS = ("shield", "mask", "parse", "pace", "sched")
VARIANTS = (
    "plain+shield",
    "plain+mask+parse",
    "plain+pace",
    "plain+sched",
    "plain+all",
)
_GRID = 256.0  # wakes per second the paced sends are rounded up to (as the library's grid)


def musts_of(who: str) -> frozenset[str]:
    """The musts a ``plain+...`` client name asks for (``plain+all``: every one)."""
    parts = who.split("+")
    if parts[0] != "plain" or len(parts) < 2:
        raise ValueError(f"not a plain+must client: {who!r}")
    asked = frozenset(MUSTS) if parts[1:] == ["all"] else frozenset(parts[1:])
    unknown = asked - set(MUSTS)
    if unknown:
        raise ValueError(f"unknown musts {sorted(unknown)} in {who!r}; known: {MUSTS}")
    return asked


class PlainWithMusts:
    """The plain loop (a coroutine per prompt: POST, sleep, poll) with only ``musts`` added,
    each written as lean as it goes. Its answers: a list of URLs per prompt."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        key: str,
        regime: Any,
        musts: frozenset[str],
        *,
        first_wait: float,
        interval: float,
    ) -> None:
        from nanobanana_async import ImageRequest, Limits, TaskState
        from nanobanana_async._limits import Gcra, budget, pacing
        from nanobanana_async._redact import Secret
        from nanobanana_async.providers._apixo import ApixoDriver
        from nanobanana_async.testing import HttpResponse

        self._loop = asyncio.get_running_loop()
        self._session = session
        self._base_url = base_url
        self._create_url = base_url + "/generateTask/nano-banana-2"
        self._status_url = base_url + "/statusTask/nano-banana-2"
        self._headers = {"Authorization": f"Bearer {key}"}
        self._secret = Secret(key) if "mask" in musts else None
        self._driver = ApixoDriver() if "parse" in musts else None
        self._image_request = ImageRequest
        self._http_response = HttpResponse
        self._succeeded, self._failed = TaskState.SUCCEEDED, TaskState.FAILED
        limits = Limits(
            requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent
        )
        self._gcra = Gcra(*pacing(limits)) if "pace" in musts else None
        self._per, self._budget = limits.per, budget(limits)
        self._sent: collections.deque[float] = collections.deque()  # send times in a window
        self._shield = "shield" in musts
        self._sched = "sched" in musts
        self._semaphore = asyncio.Semaphore(regime.concurrent)
        self._first_wait = first_wait
        self._interval = interval
        self._tasks: set[asyncio.Task[None]] = set()  # creates and checks under way
        self.kept: list[Any] = []  # paid ids whose caller had left (shield)
        self.rate_limited = 0
        # sched: (due, sequence, ref, the caller's future) and the one timer
        self._due: list[tuple[float, int, Any, asyncio.Future[list[str]]]] = []
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def _send(
        self, method: str, url: str, body: Any, params: Mapping[str, str] | None
    ) -> tuple[int, Any, bytes]:
        while True:
            if self._gcra is not None:
                await self._paced()
            async with self._session.request(
                method, url, json=body, params=params, headers=self._headers
            ) as resp:
                status, headers, data = resp.status, resp.headers, await resp.read()
            if self._secret is not None:
                data = self._secret.redact_bytes(data)
            if status != 429:
                return status, headers, data
            self.rate_limited += 1
            await asyncio.sleep(float(headers.get("Retry-After", "1")))

    async def _paced(self) -> None:
        # The GCRA turn, then the send log's room: the clock decides, not the timer (uvloop's
        # whole-millisecond timers fire early), and a stall's bunched turns wait for room.
        # time.monotonic, not loop.time: uvloop's is the iteration's start, so a send late in
        # a long iteration would be logged early and leave the log early (429s measured).
        clock, per, sent = time.monotonic, self._per, self._sent
        turn = self._gcra.reserve(clock())  # type: ignore[union-attr]
        while (now := clock()) < turn:  # noqa: ASYNC110  a clock, not an event, is awaited
            # Never under 1 ms ahead: uvloop fires those at once, and the loop would spin.
            await asyncio.sleep(max(math.ceil(turn * _GRID) / _GRID - now, 0.001))
        while True:
            while sent and sent[0] <= now - per:
                sent.popleft()
            if len(sent) < self._budget:
                break
            await asyncio.sleep(max(math.ceil((sent[0] + per) * _GRID) / _GRID - now, 0.001))
            now = clock()
        sent.append(now)

    def _response(self, status: int, headers: Any, data: bytes) -> Any:
        return self._http_response(status=status, headers=headers, body=data, received_at=0.0)

    async def _create(self, prompt: str) -> Any:
        driver = self._driver
        if driver is None:
            _, _, data = await self._send(
                "POST",
                self._create_url,
                {
                    "input": {
                        "mode": "text-to-image",
                        "prompt": prompt,
                        "aspect_ratio": "1:1",
                        "resolution": "1k",
                    }
                },
                None,
            )
            return json.loads(data)["data"]["taskId"]
        request = self._image_request(prompt=prompt, aspect_ratio="1:1", resolution="1K")
        built = driver.build_submit(request)
        answer = await self._send("POST", self._base_url + built.path, built.json, None)
        return driver.parse_submit(self._response(*answer), request)

    async def _status(self, ref: Any) -> list[str] | None:
        """The URLs once the task succeeded, None while it runs."""
        driver = self._driver
        if driver is None:
            _, _, data = await self._send("GET", self._status_url, None, {"taskId": ref})
            answer = json.loads(data)["data"]
            state = answer["state"]
            if state == "success":
                return list(json.loads(answer["resultJson"])["resultUrls"])
            if state == "failed":
                raise RuntimeError(answer.get("failMsg") or "failed")
            return None
        built = driver.build_status(ref)
        answer = await self._send("GET", self._base_url + built.path, None, built.params)
        status = driver.parse_status(self._response(*answer), ref)
        if status.state is self._succeeded:
            return list(status.urls)
        if status.state is self._failed:
            raise RuntimeError(status.error_message or "failed")
        return None

    async def _create_into(self, prompt: str, waiter: asyncio.Future[Any]) -> None:
        # The paid create's own task: it runs to its end whatever its caller does.
        try:
            ref = await self._create(prompt)
        except BaseException as exc:  # handed to the caller, not swallowed
            if not waiter.done():
                waiter.set_exception(exc)
        else:
            if waiter.done():
                self.kept.append(ref)  # the caller left: the paid id is kept
            else:
                waiter.set_result(ref)
        finally:
            self._tasks.discard(asyncio.current_task())

    async def generate(self, prompt: str) -> list[str]:
        """One image's URLs, by the plain loop with the musts asked for."""
        if self._sched:
            await self._semaphore.acquire()
            try:
                ref = await self._created(prompt)
            except BaseException:
                self._semaphore.release()
                raise
            done: asyncio.Future[list[str]] = self._loop.create_future()
            self._track(ref, done, self._loop.time() + self._first_wait)
            return await done
        async with self._semaphore:
            ref = await self._created(prompt)
            await asyncio.sleep(self._first_wait)
            while True:
                urls = await self._status(ref)
                if urls is not None:
                    return urls
                await asyncio.sleep(self._interval)

    async def _created(self, prompt: str) -> Any:
        if not self._shield:
            return await self._create(prompt)
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._tasks.add(self._loop.create_task(self._create_into(prompt, waiter)))
        return await waiter

    async def drain(self) -> None:
        """Wait for the creates and checks under way (a left caller's create too)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # sched: one heap of due checks, one timer, a task per check
    def _track(self, ref: Any, done: asyncio.Future[list[str]], due: float) -> None:
        # Up to the grid, so checks due within a step share one wake (never early).
        due = math.ceil(due * _GRID) / _GRID
        self._sequence += 1
        heapq.heappush(self._due, (due, self._sequence, ref, done))
        if due < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            self._timer = self._loop.call_at(due, self._wake)

    def _wake(self) -> None:
        self._timer, self._timer_at = None, math.inf
        # Within a millisecond is due: uvloop fires timers up to 1 ms early, and re-arming
        # for the same instant would spin the loop (7 turns per request measured).
        now = self._loop.time() + 0.001
        due = self._due
        while due and due[0][0] <= now:
            _, _, ref, done = heapq.heappop(due)
            self._tasks.add(self._loop.create_task(self._check(ref, done)))
        if due:
            self._timer_at = due[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._wake)

    async def _check(self, ref: Any, done: asyncio.Future[list[str]]) -> None:
        try:
            urls = await self._status(ref)
        except Exception as exc:  # the task's end, handed to its caller
            self._semaphore.release()
            if not done.done():
                done.set_exception(exc)
        else:
            if urls is None:
                self._track(ref, done, self._loop.time() + self._interval)
            else:
                self._semaphore.release()
                if not done.done():
                    done.set_result(urls)
        finally:
            self._tasks.discard(asyncio.current_task())


async def run_musts(who: str, sim: Any, regime: Any) -> tuple[float, int]:
    """``who``'s client thread CPU seconds over the regime's tasks, and the tasks that
    succeeded (``scenarios._client_cpu``'s contract)."""
    from .scenarios import DOC_FIRST_WAIT, DOC_INTERVAL, DOC_LATENCY

    scale = regime.mean_latency / DOC_LATENCY
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        client = PlainWithMusts(
            session,
            sim.base_url,
            sim.api_key,
            regime,
            musts_of(who),
            first_wait=DOC_FIRST_WAIT * scale,
            interval=DOC_INTERVAL * scale,
        )
        cpu = time.thread_time()
        outcomes = await asyncio.gather(
            *(client.generate(f"prompt {i}") for i in range(regime.tasks)),
            return_exceptions=True,
        )
        cpu = time.thread_time() - cpu
    return cpu, sum(isinstance(o, list) for o in outcomes)


def _where(file: str, name: str) -> tuple[str, str]:
    """(part, function) of a profile row: which code pays, by module."""
    for mark, part in (
        ("nanobanana_async/", "library"),
        ("benchmarks/", "benchmark client"),
        ("aiohttp/", "aiohttp"),
        ("multidict/", "aiohttp"),
        ("yarl/", "aiohttp"),
        ("asyncio/", "asyncio"),
        ("uvloop/", "asyncio"),
        ("attr/", "attrs"),
        ("json/", "json"),
    ):
        at = file.find(mark)
        if at >= 0:
            return part, f"{file[at:]}:{name}"
    if file == "~":
        return ("asyncio" if "_asyncio" in name or "uvloop" in name else "builtins"), name
    return "other", f"{Path(file).name}:{name}"


Profile = dict[tuple[str, str], tuple[float, float]]  # (part, function): (µs, calls) / request
# pstats' raw table: (file, line, name) -> (primitive calls, calls, self s, cumulative s, callers)
_Where = tuple[str, int, str]
_Timing = tuple[int, int, float, float]
_RawStats = dict[_Where, tuple[int, int, float, float, dict[_Where, _Timing]]]


def _profile(
    args: argparse.Namespace, clients: list[str], loop: str, folder: Path
) -> dict[str, Profile]:
    """Each client's profile: self time (µs) and calls per request, by function."""
    import pstats

    profiles = {}
    for client in clients:
        out = folder / f"{client}.prof"
        row = _run(
            ROOT,
            "ours" if client == "this" else client,
            loop,
            args.regime,
            args.tasks,
            profile_to=out,
        )
        # Stats.stats is set by load_stats but typeshed leaves it out; it is read as the
        # documented marshal layout below.
        stats: _RawStats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
        requests = row["requests"]
        per: Profile = {}
        for (file, _line, name), (_cc, calls, tt, _ct, _callers) in stats.items():
            key = _where(file, name)
            us, n = per.get(key, (0.0, 0.0))
            per[key] = (us + tt / requests * 1e6, n + calls / requests)
        profiles[client] = per
    return profiles


def _print_profiles(profiles: dict[str, Profile]) -> None:
    names = list(profiles)
    print(
        "\nprofiled self time, µs per request (cProfile on the client thread's CPU clock, "
        "which inflates every call: compare columns, not with the timed figures), "
        "and Python + C calls per request"
    )
    parts = sorted({part for per in profiles.values() for part, _ in per})
    print("| part | " + " | ".join(f"{n} µs | {n} calls" for n in names) + " |")
    print("|" + "---|" * (2 * len(names) + 1))
    for part in [*parts, "total"]:
        cells = []
        for per in profiles.values():
            rows = [v for (p, _), v in per.items() if part in (p, "total")]
            cells += [f"{sum(us for us, _ in rows):.1f}", f"{sum(n for _, n in rows):.1f}"]
        print(f"| {part} | " + " | ".join(cells) + " |")
    if len(names) < 2:
        return
    mine, theirs = profiles[names[0]], profiles[names[1]]
    zero = (0.0, 0.0)
    keys = sorted(
        set(mine) | set(theirs),
        key=lambda k: mine.get(k, zero)[0] - theirs.get(k, zero)[0],
        reverse=True,
    )
    print(f"\ntop functions, {names[0]} minus {names[1]}, µs (calls) per request")
    print(f"| part | function | {names[0]} | {names[1]} | difference |")
    print("|---|---|---|---|---|")
    for key in keys[:30]:
        (a, an), (b, bn) = mine.get(key, zero), theirs.get(key, zero)
        print(f"| {key[0]} | `{key[1]}` | {a:.1f} ({an:.2f}) | {b:.1f} ({bn:.2f}) | {a - b:+.1f} |")


def _export(rev: str, into: Path) -> Path:
    """The package as committed at ``rev``, in ``into``."""
    archive = subprocess.run(  # noqa: S603  git, fixed arguments
        ["git", "-C", str(ROOT), "archive", rev, "nanobanana_async"],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # noqa: S603, S607
    return into


def _run(
    version: Path, who: str, loop: str, regime: str, tasks: int, profile_to: Path | None = None
) -> dict[str, Any]:
    # Run from elsewhere: ``-m`` puts the working folder first on the path, before the version.
    env = dict(os.environ, PYTHONPATH=f"{version}{os.pathsep}{ROOT}")
    command = [sys.executable, "-m", "benchmarks.loops", "--child", "--who", who, "--loop", loop]
    command += ["--regime", regime, "--tasks", str(tasks)]
    if profile_to is not None:
        command += ["--profile-to", str(profile_to)]
    done = subprocess.run(  # noqa: S603  our own interpreter and module
        command, check=True, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.2f} ({low:.2f}-{high:.2f})"


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loops", description=__doc__)
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1200)
    parser.add_argument("--regime", choices=("cpu", "large"), default="cpu")
    parser.add_argument(
        "--clients",
        default="this,base",
        help="comma-separated, beside the plain loop (always run): this (the package here), "
        "base (at --base), or a plain loop with only the required work added: "
        + ", ".join(VARIANTS)
        + " (any plain+MUST+... of "
        + ", ".join(MUSTS)
        + "); default this,base",
    )
    parser.add_argument("--loops", default=",".join(LOOPS), help="default asyncio,uvloop")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: one cProfile'd run of each of --clients on the first of "
        "--loops, self time per request by part and the top differences of the first two",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    parser.add_argument("--who", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    loops = [loop.strip() for loop in args.loops.split(",") if loop.strip()]
    if not set(loops) <= set(LOOPS):
        parser.error(f"--loops: one or more of {', '.join(LOOPS)}")
    for client in clients:
        if client not in ("this", "base", "plain"):
            musts_of(client)  # a bad name fails here, before any run
    if args.profile:
        with tempfile.TemporaryDirectory() as folder:
            _print_profiles(_profile(args, clients, loops[0], Path(folder)))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        # (row name, package version, client): every one runs after the plain loop, per run.
        who: list[tuple[str, Path, str]] = []
        for client in clients:
            if client == "base":
                who.append((args.base, _export(args.base, Path(folder)), "ours"))
            elif client == "this":
                who.append(("this", ROOT, "ours"))
            elif client == "plain":
                continue  # always run, first
            else:
                who.append((client, ROOT, client))
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run in range(args.runs):
            for loop in loops:
                plain = _run(ROOT, "plain", loop, args.regime, args.tasks)
                rows.setdefault(("plain aiohttp", loop), []).append(plain)
                for name, path, client in who:
                    row = _run(path, client, loop, args.regime, args.tasks)
                    for unit in ("request", "task"):
                        mine, theirs = row[f"cpu_us_per_{unit}"], plain[f"cpu_us_per_{unit}"]
                        row[f"vs_plain_{unit}"] = mine / theirs
                    rows.setdefault((name, loop), []).append(row)
                print(f"run {run + 1}/{args.runs} {loop} done", file=sys.stderr)
    print(f"\n{args.regime}, {args.tasks} tasks, {args.runs} interleaved runs: median (range)")
    print(
        "| client | loop | requests/task | 429s | CPU µs/request | CPU µs/task "
        "| ×plain per request | ×plain per task | loop turns/request |"
    )
    print("|" + "---|" * 9)
    for (name, loop), measured in rows.items():
        per_task = [r["requests"] / max(r["tasks"], 1) for r in measured]
        cells = [
            name,
            loop,
            _spread(per_task),
            _spread([float(r.get("server_429s", 0)) for r in measured]).replace(".00", ""),
            _spread([r["cpu_us_per_request"] for r in measured]),
            _spread([r["cpu_us_per_task"] for r in measured]),
            _spread([r.get("vs_plain_request", 1.0) for r in measured]),
            _spread([r.get("vs_plain_task", 1.0) for r in measured]),
            _spread([r["turns"] / r["requests"] for r in measured if r["turns"] is not None]),
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
