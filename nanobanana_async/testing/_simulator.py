"""A loopback simulator of one provider's HTTP API, with limits, accounting and faults (does I/O).

It runs an aiohttp.web server on 127.0.0.1 and speaks the provider's wire protocol strictly
(``_wire``): wrong keys get the provider's 401, invalid bodies its validation error, traffic
over the configured limits a 429 with Retry-After. Server-side statistics say what a client
really did: requests by kind, 429s, the most requests seen in any window, the most tasks
running at once, duplicate creates, status checks per task and detection lag. The books
behind them (request windows, tasks, fault draws) are kept by ``_sim_book``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import math
import random
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, Self

import aiohttp
from aiohttp import web

from .._scheduler._memory import MEMORY
from . import _png
from ._sim_book import _MARKER_REFUSED, Book, task_state, task_view
from ._sim_config import Faults, Latency, Outage, ServerLimits, SimulatorStats, _Task
from ._wire import PROTOCOLS, Kind, RejectError, WireProtocol

_CALLBACK_DELAYS: Final = (1.0, 2.0, 4.0)  # apixo retries up to 3 times, growing delays

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """A provider's API on 127.0.0.1, for tests, examples and benchmarks.

    Use ``async with Simulator("apixo") as sim:`` then pass ``sim.base_url`` and ``sim.api_key``
    to ``Client``. Prompts containing ``[[fail]]`` fail, ``[[policy]]`` fail on content policy,
    ``[[stuck]]`` never finish, and ``[[refused]]`` are refused on content at the create where
    the provider documents how (xingchao: ``status: "failed"`` with the task's id; apixo: HTTP
    403, "forbidden/content policy").

    Args:
        provider: ``xingchao``, ``crun``, ``nanobananaapi`` or ``apixo``.
        api_key: the key the server accepts; a random one by default.
        host: the address to listen on; loopback only.
        port: 0 picks a free port.
        latency: task durations.
        limits: the account's limits; unlimited by default.
        faults: fault probabilities; none by default.
        seed: seeds every random draw (latency, ids, faults).
        callback_retry_scale: multiplies the callback retry delays (1, 2, 4 s).
        record_timeline: keep every arrival time and task span in ``stats`` (for plots).
        credits: the account's balance; None (the default) never runs out. Balance endpoints
            report it (1000 when unlimited); at less than ``create_cost`` a create gets the
            provider's own insufficient-credits answer (402) and creates nothing.
        create_cost: what each accepted create takes from ``credits``; default 1.
        outages: scheduled outages (maintenance refusals or refused connections), timed from
            the start; ``stats.refused`` counts the maintenance refusals.
    """

    def __init__(
        self,
        provider: str,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: Latency | None = None,
        limits: ServerLimits | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        callback_retry_scale: float = 1.0,
        record_timeline: bool = False,
        credits: float | None = None,
        create_cost: float = 1.0,
        outages: Sequence[Outage] = (),
    ) -> None:
        if provider not in PROTOCOLS:
            raise ValueError(f"unknown provider {provider!r}; one of {sorted(PROTOCOLS)}")
        self.provider = provider
        self.protocol: WireProtocol = PROTOCOLS[provider]()
        self.api_key = api_key or f"sim-{secrets.token_hex(12)}"
        self.latency = latency or Latency()
        self.limits = limits or ServerLimits()
        self.faults = faults or Faults()
        self.stats = SimulatorStats()
        self.credits = credits
        self.create_cost = create_cost
        self.outages = tuple(outages)
        self.started_at: float | None = None
        """The loop time outages are timed from; set by ``start``."""
        self._epoch: float | None = None  # a Simulators group times all of its members alike
        self._site: web.TCPSite | None = None
        self._listen_port = port
        self._refusals: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host = host
        self._rng = random.Random(seed)
        self._callback_retry_scale = callback_retry_scale
        self._book = Book(self._rng, record_timeline=record_timeline)
        self._runner: web.AppRunner | None = None
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self.base_url = ""
        self.origin = ""

    def __repr__(self) -> str:
        return f"Simulator({self.provider!r}, base_url={self.base_url!r})"

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening; ``base_url`` is set when this returns."""
        app = web.Application(client_max_size=1024 * 1024)
        prefix = self.protocol.prefix
        for route in self.protocol.create_routes:
            app.router.add_post(prefix + route, self._wrap("create", route))
        app.router.add_get(prefix + self.protocol.status_route, self._wrap("status", ""))
        if self.protocol.balance_route:
            app.router.add_get(prefix + self.protocol.balance_route, self._wrap("balance", ""))
        app.router.add_get("/files/{task_id}.png", self._image)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._listen()
        self.origin = f"http://{self._host}:{self._listen_port}"
        self.base_url = self.origin + prefix
        # A new server listens here now: latencies a client learned from an earlier one on
        # the same port (one test's, one benchmark run's) must not carry over to this one.
        MEMORY.forget(self.origin)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.started_at = loop.time() if self._epoch is None else self._epoch
        windows = _merged(o for o in self.outages if o.refuse_connections)
        if windows:
            self._refusals = loop.create_task(self._refuse_connections(windows))

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._host, self._listen_port)
        await site.start()
        server = site._server
        assert server is not None
        # Port 0 picked a free port: listening again after an outage must reuse it.
        self._listen_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._site = site

    async def _refuse_connections(self, windows: list[tuple[float, float]]) -> None:
        assert self.started_at is not None
        for start, end in windows:
            await asyncio.sleep(max(0.0, self.started_at + start - self._now()))
            if self._site is not None:
                await self._site.stop()
                self._site = None
            server = self._runner.server if self._runner is not None else None
            # Stopping the listener leaves accepted connections open; a client would keep
            # using its pooled ones. Idle ones (waiting for a next request, aiohttp's own
            # keep-alive test) are closed now, busy ones once they have answered.
            for handler in server.connections if server is not None else ():
                waiter = handler._waiter  # aiohttp's own idle test (_process_keepalive)
                if waiter is not None and not waiter.done():
                    handler.force_close()
                else:
                    handler.close()
            await asyncio.sleep(max(0.0, self.started_at + end - self._now()))
            await self._listen()

    def in_maintenance(self, kind: str = "create") -> bool:
        """Whether a maintenance ``Outage`` refuses a request of ``kind`` now (callable from
        any thread, e.g. a sync test beside :meth:`start_in_thread`)."""
        if self.started_at is None or self._loop is None:
            return False
        # The loop's own clock (a plain clock read, safe from another thread): the one
        # ``started_at`` was taken from.
        elapsed = self._loop.time() - self.started_at
        return any(outage.covers(elapsed, kind) for outage in self.outages)

    async def aclose(self) -> None:
        """Stop the server and any callback deliveries still pending."""
        if self._refusals is not None:
            self._refusals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refusals
            self._refusals = None
        for task in list(self._callback_tasks):
            task.cancel()
        for task in list(self._callback_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start_in_thread(self) -> Self:
        """Run the simulator on its own event loop in a daemon thread (for sync tests)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="nanobanana-simulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a simulator started with :meth:`start_in_thread`."""
        if self._thread is None or self._thread_loop is None:
            return
        self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def created_prompts(self) -> collections.Counter[str]:
        """How many tasks this account created for each prompt (refused creates excluded)."""
        return collections.Counter(
            task.accepted.prompt for task in self._book.tasks.values() if not task.refused
        )

    # ----------------------------------------------------------------- HTTP

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _json(
        self, status: int, body: object, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    def _error(
        self, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        status, body = self.protocol.error(code, message)
        return self._json(status, body, headers)

    def _wrap(self, kind: Kind, route: str) -> Handler:
        return functools.partial(self._api, kind, route)

    async def _api(self, kind: Kind, route: str, request: web.Request) -> web.StreamResponse:
        now = self._now()
        self._book.count(kind, now, self.limits.per, self.stats)
        if not self.protocol.authorized(request.headers, self.api_key):
            self.stats.unauthorized += 1
            return self._error(401, "Invalid or missing API key")
        if self.outages and self.in_maintenance(kind):
            # Before the request window: a refusal is not an accepted request.
            self.stats.refused += 1
            status, body = self.protocol.maintenance()
            return self._json(status, body)
        if not self._book.admit(now, self.limits):
            return self._too_many(now)
        # Read the whole request first, as a real server does before it stalls or fails.
        raw = await request.read()
        fault = self._book.draw(kind, self.faults, self.stats)
        if fault == "reset":
            return self._abort(request)
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
        if fault == "server_error":
            status = self._rng.choice((500, 502, 503))
            return self._error(status, "Internal server error")
        if fault == "body_429":
            status, body = self.protocol.body_429()
            self.stats.rate_limited += 1
            return self._json(status, body, {"retry-after": "1"})
        if kind == "create":
            response = self._create(route, request, raw, self._now())
            if fault == "reset_after_create" and response.status == 200:
                return self._abort(request)
        elif kind == "status":
            response = self._status(request, now)
        else:
            status, body = self.protocol.balance(1000.0 if self.credits is None else self.credits)
            response = self._json(status, body)
        if fault == "non_json":
            return web.Response(
                status=200,
                text="<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        if fault == "truncated":
            return await self._truncate(request, response)
        return response

    def _too_many(self, now: float) -> web.Response:
        self.stats.rate_limited += 1
        wait = self._book.retry_after(now, self.limits.per)
        headers = {
            "retry-after": str(math.ceil(wait)),
            "retry-after-ms": str(math.ceil(wait * 1000)),
        }
        status, body = self.protocol.error(429, "Rate limit exceeded")
        return self._json(status, body, headers)

    def _abort(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    async def _truncate(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        body = response.body if isinstance(response.body, bytes) else b"{}"
        stream = web.StreamResponse(status=response.status)
        stream.content_type = "application/json"
        stream.content_length = len(body) + 64
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.abort()
        return stream

    def _create(self, route: str, request: web.Request, raw: bytes, now: float) -> web.Response:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.stats.rejected += 1
            return self._error(400, "Body is not valid JSON")
        try:
            accepted = self.protocol.validate(route, request.match_info, body)
        except RejectError as exc:
            self.stats.rejected += 1
            return self._error(exc.code, exc.message)
        origin = str(request.url.origin())
        if self.protocol.refuses_at_create and _MARKER_REFUSED in accepted.prompt:
            self.stats.rejected += 1
            task = self._book.new_task(
                accepted, body, now, origin, self.latency, self.stats, refused=True
            )
            status, answer = self.protocol.created(task_view(task, "policy"))
            return self._json(status, answer)
        refusal = self.protocol.content_refusal
        if refusal is not None and _MARKER_REFUSED in accepted.prompt:
            self.stats.rejected += 1
            return self._error(refusal, "Content policy violation")
        if (
            self.limits.concurrent_tasks is not None
            and self._book.active(now) >= self.limits.concurrent_tasks
        ):
            return self._too_many(now)
        if self.credits is not None:
            if self.credits < self.create_cost:
                self.stats.rejected += 1
                return self._error(402, "Insufficient credits")
            self.credits -= self.create_cost
        self._book.record_fingerprint(route, request.match_info.get("model", ""), body, self.stats)
        task = self._book.new_task(accepted, body, now, origin, self.latency, self.stats)
        self.stats.creates += 1
        self.stats.checks[task.task_id] = 0
        self.stats.max_concurrent = max(self.stats.max_concurrent, self._book.active(now))
        if accepted.callback_url is not None and task.outcome != "queued":
            delivery = asyncio.get_running_loop().create_task(self._deliver(task))
            self._callback_tasks.add(delivery)
            delivery.add_done_callback(self._callback_tasks.discard)
        status, answer = self.protocol.created(task_view(task, "queued"))
        return self._json(status, answer)

    def _status(self, request: web.Request, now: float) -> web.Response:
        task_id = self.protocol.status_task_id(request.match_info, request.query)
        task = self._book.tasks.get(task_id)
        if (
            task is None
            or request.match_info.get("model", task.accepted.model) != task.accepted.model
        ):
            return self._error(404, "Task not found")
        task.checks += 1
        self.stats.checks[task_id] = task.checks
        state = task_state(task, now)
        done = state in ("success", "failed", "policy")
        if done and not task.seen_done:
            task.seen_done = True
            self.stats.lags.append(now - task.finish)
        if (
            not done
            and self.faults.unknown_state
            and "status" in self.faults.kinds
            and self._rng.random() < self.faults.unknown_state
        ):
            self.stats.faults["unknown_state"] += 1
            state = "unknown"
        status, body = self.protocol.status(task_view(task, state))
        return self._json(status, body)

    async def _image(self, request: web.Request) -> web.Response:
        self.stats.requests["image"] += 1
        task = self._book.tasks.get(request.match_info["task_id"])
        if task is None or self.faults.expire_images or task_state(task, self._now()) != "success":
            return web.Response(status=404, text="Not found")
        png = _png.render(task.accepted.prompt, task.accepted.aspect_ratio)
        return web.Response(body=png, content_type="image/png")

    # ----------------------------------------------------------------- callbacks

    async def _deliver(self, task: _Task) -> None:
        url = task.accepted.callback_url
        assert url is not None
        await asyncio.sleep(max(0.0, task.finish - self._now()))
        if self.faults.callback_drop and self._rng.random() < self.faults.callback_drop:
            self.stats.callbacks_dropped += 1
            return
        body = self.protocol.callback(task_view(task, task_state(task, self._now())))
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for delay in (0.0, *_CALLBACK_DELAYS):
            await asyncio.sleep(delay * self._callback_retry_scale)
            try:
                async with self._session.post(
                    url, json=body, timeout=aiohttp.ClientTimeout(total=30)
                ) as resp:
                    if resp.status == 200:
                        self.stats.callbacks_sent += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
        self.stats.callbacks_failed += 1


def _merged(outages: Iterable[Outage]) -> list[tuple[float, float]]:
    """The (start, end) windows of ``outages``, sorted, overlapping ones joined."""
    windows: list[tuple[float, float]] = []
    for outage in sorted(outages, key=lambda o: o.start):
        if windows and outage.start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], outage.end))
        else:
            windows.append((outage.start, outage.end))
    return windows
