"""Client: the public entry point; submits tasks and hands them to the shared scheduler
(does I/O through its transport)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import random as _random
import socket
import time
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

import aiohttp
import attrs

from ._backoff import delay
from ._clock import DEFAULT_CLOCK, Clock
from ._config import DEFAULT_TASK_TIMEOUT, Limits, RetryPolicy, Timeouts
from ._download import Downloader
from ._errors import (
    APIError,
    BadResponseError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    GenerationFailedError,
    InvalidRequestError,
    NanoBananaError,
    NotSupportedError,
    ProviderRefusedError,
    ProviderUnavailableError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from ._journal import Intent as _Intent
from ._journal import Journal, JournalEntry, request_key
from ._models import Balance, ImageRequest, ImageResult, TaskRef, is_http_url
from ._redact import Secret
from ._scheduler import _redis
from ._scheduler._ledger import Lease, Ledger
from ._scheduler._plan import Entry
from ._scheduler._runner import Account, Connection, Scheduler, Tracked
from ._task import Task
from ._transport import AiohttpTransport, Transport
from .providers import DRIVERS, PROVIDERS, ProviderDriver, validate
from .providers._local import LocalDriver
from .webhooks import CallbackReceiver
from .webhooks._receiver import Registration

if TYPE_CHECKING:
    from .testing import Simulator

_log = logging.getLogger("nanobanana_async")

LOCAL_TASK_TIMEOUT: Final = 120.0

BulkItem = ImageRequest | str | tuple[str, ImageRequest]


@attrs.frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of the account this client uses (shared with same-key clients).

    Attributes:
        pending: tasks submitted and not yet finished.
        in_flight: tasks that may be running on the provider (creates sent, not seen ended).
        peak_in_flight: the most ``in_flight`` ever.
        waiting: callers waiting for a slot.
        requests_in_window: requests sent in the last ``limits.per`` seconds.
        requests_sent: requests sent since the account was first used.
        rate_limited: 429 answers received.
        retries: retries made (submits and status checks).
        retry_tokens: what is left of the retry budget.
        mean_checks_per_task: status checks per tracked task.
        limits: the configured limits (the ceiling).
        effective_limits: the limits in force now: lower than ``limits`` after the account
            answered 429 to something the configured limits allowed, climbing back after a
            quiet period.
    """

    pending: int
    in_flight: int
    peak_in_flight: int
    waiting: int
    requests_in_window: int
    requests_sent: int
    rate_limited: int
    retries: int
    retry_tokens: int
    mean_checks_per_task: float
    limits: Limits
    effective_limits: Limits


class Client:
    """An asyncio client for Nano Banana image generation on one provider.

    Use it as ``async with Client("apixo") as client:``. Every client on an event loop shares
    one polling scheduler; clients with the same provider and key share one account budget.
    A client is bound to the event loop it first runs on: use from another loop raises
    ``ConfigurationError`` (create one client per ``asyncio.run``). A client dropped without
    ``aclose()`` emits a ``ResourceWarning``.

    Args:
        provider: ``xingchao``, ``crun``, ``nanobananaapi``, ``apixo``, or ``local`` (a
            built-in simulator on 127.0.0.1 that needs no key).
        api_key: defaults to the ``NANOBANANA_API_KEY`` environment variable.
        base_url: replaces the provider's documented base URL (scheme, host and path prefix);
            defaults to ``NANOBANANA_BASE_URL``, then the documented one.
        limits: the account's budget; default 10,000 requests per 60 s, 1,000 tasks at once.
        session: a caller-owned ``aiohttp.ClientSession``, never closed by the client.
        retry: retry policy; see :class:`RetryPolicy`.
        timeouts: request and task timeouts; see :class:`Timeouts`.
        transport: replaces HTTP entirely (tests use ``testing.ScriptedTransport``).
        callbacks: a started or mounted :class:`CallbackReceiver`; every submit to a provider
            that offers callbacks then carries its own callback URL, and the first status
            check moves late (polling stays as the safety net). xingchao keeps polling.
        journal: an SQLite file recording each submit's intent, task id and end state, so a
            rerun re-attaches to tasks instead of paying for them again (see ``submit``).
        coordinator: a Redis URL (``redis://host:6379/0``; default ``NANOBANANA_COORDINATOR``)
            through which every client of this provider and key, in any process on any host,
            shares the request window, the task slots, the pause after a 429 and the learned
            limits. Needs ``pip install 'nanobanana-async[redis]'``. When Redis cannot be
            reached nothing is sent; callers get ``CoordinatorUnavailableError`` after
            ``Timeouts.coordinator`` seconds.
        clock: monotonic clock for the scheduler (tests use ``testing.FakeClock``).
        wall_clock: unix time for timestamps and HTTP-date Retry-After.
        random: returns floats in [0, 1) for backoff jitter.

    Raises:
        ConfigurationError: unknown provider, missing key, or a base URL that is not http(s).
    """

    def __init__(
        self,
        provider: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        limits: Limits | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        transport: Transport | None = None,
        callbacks: CallbackReceiver | None = None,
        journal: str | Path | None = None,
        coordinator: str | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if provider not in PROVIDERS:
            raise ConfigurationError(
                f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
            )
        self._provider = provider
        self._driver: ProviderDriver = LocalDriver() if provider == "local" else DRIVERS[provider]
        key = api_key if api_key is not None else os.environ.get("NANOBANANA_API_KEY")
        url = base_url if base_url is not None else os.environ.get("NANOBANANA_BASE_URL")
        if provider == "local":
            key, url = None, None  # the simulator provides both when it starts
        elif not key and transport is None:
            raise ConfigurationError(
                f"no API key for {provider}: pass api_key= or set NANOBANANA_API_KEY"
            )
        if url is not None and not is_http_url(url):
            raise ConfigurationError("base_url must be an absolute http(s) URL")
        self._coordinator = coordinator or os.environ.get("NANOBANANA_COORDINATOR") or None
        if self._coordinator is not None:
            _redis.connect(self._coordinator)  # a missing extra or bad URL fails here
        self._key = Secret(key) if key else None
        self._base_url = (url or self._driver.default_base_url).rstrip("/")
        self._limits = limits or Limits()
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._session = session
        self._transport = transport
        self._callbacks = callbacks
        self._journal = (
            Journal(
                journal,
                wall_clock=wall_clock,
                provider=provider,
                # local's URL is new in every process: only its name identifies it.
                base_url=None if provider == "local" else self._base_url,
            )
            if journal is not None
            else None
        )
        self._journal_writes: set[asyncio.Task[None]] = set()
        self._journal_leases: dict[str, Lease] = {}
        self._downloader = Downloader()
        self._clock = clock or DEFAULT_CLOCK
        self._wall_clock = wall_clock
        self._random = random
        self._conn: Connection | None = None
        self._scheduler: Scheduler | None = None
        self._simulator: Simulator | None = None
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Like aiohttp's "Unclosed client session": a client that ran on a loop and was
        # dropped without aclose() leaks connections and stops tracking its tasks.
        if getattr(self, "_loop", None) is not None and not getattr(self, "_closed", True):
            _warn(
                f"unclosed {self!r}: use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            # Its sessions, locks and scheduler belong to the first loop: on another loop
            # they would hang or fail with "Event loop is closed".
            raise ConfigurationError(
                f"{self!r} is bound to the event loop it started on; create one Client per "
                "event loop (for example inside each asyncio.run)"
            )

    def __repr__(self) -> str:
        return f"Client(provider={self._provider!r}, base_url={self._base_url!r})"

    @property
    def provider(self) -> str:
        """The provider name."""
        return self._provider

    @property
    def base_url(self) -> str:
        """The base URL requests go to (the simulator's once ``local`` has started)."""
        return self._base_url

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _ensure_started(self) -> Connection:
        if self._closed:
            raise ClientClosedError("the client is closed")
        self._bind_loop()
        if self._conn is not None:
            return self._conn
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._conn is None:
                if self._provider == "local":
                    await self._start_local()
                conn = self._connect()
                if self._journal is not None:
                    await self._hold_journal_slots(conn, self._journal)
        return self._connected()

    async def _hold_journal_slots(self, conn: Connection, journal: Journal) -> None:
        # A rerun right after a kill: tasks the journal says may still run on the provider
        # (accepted, or of unknown outcome) hold slots until their horizon, so this process
        # does not fill the account on top of them.
        assert self._scheduler is not None
        now, wall = self._clock.now(), self._wall_clock()
        for entry in await journal.entries():
            if entry.state not in ("intent", "submitted", "unknown"):
                continue
            model = entry.model or entry.request.model
            spec = self._driver.model_spec(model)
            group = (self._driver.name, spec.wire_id if spec is not None else model)
            submitted = now - max(0.0, wall - entry.updated_at)
            if self._scheduler.horizon(conn, group, submitted) <= now:
                continue
            lease = conn.account.ledger.slots.take(conn, self._lease_id(entry.key))
            self._scheduler.hold_to_horizon(conn, lease, group, submitted)
            if entry.state == "submitted":
                self._journal_leases[entry.key] = lease

    def _connected(self) -> Connection:
        # A separate method: mypy cannot see _connect() set the attribute inside the lock.
        assert self._conn is not None
        return self._conn

    async def _start_local(self) -> None:
        from .testing import Latency, Simulator

        simulator = Simulator("apixo", latency=Latency(median=1.5, sigma=0.3))
        await simulator.start()
        self._simulator = simulator
        self._key = Secret(simulator.api_key)
        self._base_url = simulator.base_url

    def _connect(self) -> Connection:
        transport = self._transport or AiohttpTransport(
            base_url=self._base_url,
            scheme=self._driver.auth_scheme,
            key=self._key,
            session=self._session,
            connect_timeout=self._timeouts.connect,
            wall_clock=self._wall_clock,
        )
        self._transport = transport
        scheduler = Scheduler.for_clock(self._clock)
        scheduler.attach()
        make_ledger: Callable[[], Ledger] | None = None
        if self._coordinator is not None:
            url, key = self._coordinator, self._key
            prefix = _redis.account_prefix(
                self._driver.name, self._base_url, key.reveal() if key is not None else None
            )

            def make_ledger() -> Ledger:
                return _redis.RedisLedger(
                    self._limits,
                    self._clock,
                    redis=_redis.connect(url),
                    prefix=prefix,
                    max_wait=self._timeouts.coordinator,
                )

        account = scheduler.account(
            (self._driver.name, self._base_url, self._key, self._coordinator),
            self._limits,
            self._retry,
            make_ledger,
        )
        self._scheduler = scheduler
        self._conn = Connection(
            driver=self._driver,
            transport=transport,
            account=account,
            policy=self._retry,
            timeouts=self._timeouts,
            wall_clock=self._wall_clock,
            random=self._random,
        )
        return self._conn

    async def aclose(self) -> None:
        """Stop tracking this client's tasks and release its connections.

        Tasks still pending fail with ``ClientClosedError`` carrying their ids; they keep
        running at the provider and can be resumed. Safe to call more than once.
        """
        if self._closed:
            return
        if self._loop is not None:
            self._bind_loop()
        self._closed = True
        if self._conn is not None and self._scheduler is not None:
            self._scheduler.close_connection(self._conn)
            await self._scheduler.detach()
            await self._conn.transport.aclose()
        if self._journal_writes:
            await asyncio.gather(*self._journal_writes, return_exceptions=True)
        if self._journal is not None:
            await self._journal.aclose()
        await self._downloader.aclose()
        if self._simulator is not None:
            await self._simulator.aclose()

    # ----------------------------------------------------------------- tasks

    async def generate(
        self,
        prompt: str,
        *,
        model: str = "nano-banana-2",
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        image_urls: str | Iterable[str] = (),
        output_format: str | None = None,
        google_search: bool | None = None,
        timeout: float | None = None,
    ) -> ImageResult:
        """Generate one image and wait for it.

        Args are those of :class:`ImageRequest`.

        Returns:
            the finished task's result; ``urls`` is never empty.

        Raises:
            InvalidRequestError: before any request, for input the provider would refuse.
            SubmitOutcomeUnknownError: the submit may have been accepted; not retried.
            APIError: the provider refused the submit (auth, credits, rate limit …).
            TaskError: the task failed or timed out (``task_id`` is set for ``resume``).
        """
        request = ImageRequest(
            prompt=prompt,
            model=model,
            resolution=resolution,
            aspect_ratio=aspect_ratio,
            image_urls=image_urls,
            output_format=output_format,
            google_search=google_search,
            timeout=timeout,
        )
        task = await self.submit(request)
        return await task

    async def balance(self) -> Balance:
        """The account's balance, from the provider's balance endpoint (crun, apixo, local).

        Raises:
            NotSupportedError: the provider documents no balance endpoint (xingchao,
                nanobananaapi); nothing is sent.
            APIError: the provider refused the call (e.g. AuthenticationError).
            TransportError: no usable answer.
        """
        http = self._driver.build_balance()
        if http is None:
            raise NotSupportedError(
                f"{self._driver.name} documents no balance endpoint", provider=self._driver.name
            )
        conn = await self._ensure_started()
        await conn.account.ledger.acquire_request()
        conn.account.ledger.note_send()
        response = await conn.transport.send(http, timeout=conn.timeouts.request)
        return Balance(self._driver.name, self._driver.parse_balance(response))

    def validate(self, request: ImageRequest) -> None:
        """Check ``request`` against this provider's capability table, sending nothing.

        Raises:
            InvalidRequestError: listing every problem, each naming its field.
        """
        validate(self._driver, request)

    async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task:
        """Submit a task and return as soon as the provider accepted it.

        Waits first for a free concurrent-task slot (back-pressure: callers beyond
        ``limits.concurrent_tasks`` wait, they are not failed). Once the submit has been sent,
        cancelling the caller no longer abandons it: an accepted task is still tracked.

        With a journal, the request is looked up by ``key`` (default: a hash of the provider
        and the request, so identical requests share one task; batch runs pass a line key).
        A key with a task id re-attaches to that task (or returns its recorded end) instead of
        paying again; a key with an intent but no task id raises SubmitOutcomeUnknownError.

        Raises:
            InvalidRequestError: before any request, for input the provider would refuse.
            SubmitOutcomeUnknownError: the submit may have been accepted; never retried here.
            APIError: the provider refused the submit.
            ClientClosedError: the client closed before the submit was sent.
        """
        if not isinstance(request, ImageRequest):
            raise TypeError("submit() takes an ImageRequest")
        journal_key: str | None = None
        if self._journal is not None:
            journal_key = key or request_key(self._driver.name, request)
            known = await self._journal.get(journal_key)
            if known is not None:
                task = await self._reattach(known)
                task.key = key
                return task
        callback: Registration | None = None
        sent = request
        if (
            self._callbacks is not None
            and self._driver.supports_callback
            and request.callback_url is None
        ):
            callback = self._callbacks._register(self._driver, self._clock.now())
            sent = attrs.evolve(request, callback_url=callback.url)
        try:
            validate(self._driver, sent)
            conn = await self._ensure_started()
            lease_id = self._lease_id(journal_key) if journal_key is not None else None
            lease = await conn.account.ledger.slots.acquire(conn, lease_id)
        except BaseException:
            if callback is not None:
                callback.discard()
            raise
        task = Task(request, key)
        inner = asyncio.ensure_future(
            self._submit_and_track(conn, task, sent, lease, callback, journal_key)
        )
        inner.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        return await asyncio.shield(inner)

    async def _submit_and_track(
        self,
        conn: Connection,
        task: Task,
        request: ImageRequest,
        lease: Lease,
        callback: Registration | None,
        journal_key: str | None,
    ) -> Task:
        intent = (
            _Intent(self._journal, journal_key, self._driver.name, request)
            if self._journal is not None and journal_key is not None
            else None
        )
        submitted = self._clock.now()
        try:
            ref = await self._send_submit(conn, request, lease, intent)
        except (ConnectError, APIError, ClientClosedError):
            # Nothing was created (nothing sent, or refused before acceptance): the slot is
            # free again and a rerun may submit this request again.
            conn.account.ledger.slots.release(lease)
            if intent is not None:
                await intent.clear()
            if callback is not None:
                callback.discard()
            raise
        except BaseException as exc:
            # The create may have reached the provider: the task may run, so its slot stays
            # held until the task's horizon.
            self._hold_to_horizon(conn, lease, request.model, submitted)
            if intent is not None and isinstance(exc, SubmitOutcomeUnknownError):
                await intent.unknown(str(exc))
            if callback is not None:
                callback.discard()
            raise
        task._accept(ref)
        _log.info(
            "%s accepted task %s (model %s) in %.0f ms",
            ref.provider,
            ref.task_id,
            ref.model,
            (self._clock.now() - submitted) * 1000,
        )
        if intent is not None:
            # Durable before the caller hears of the task: a crash from here on re-attaches.
            await intent.submitted(ref)
            self._journal_on_end(task, intent.key)
        entry = self._track(
            conn, task, ref, timeout=request.timeout, lease=lease, late=callback is not None
        )
        if callback is not None:
            scheduler = self._scheduler
            assert scheduler is not None
            callback.bind(ref.task_id, lambda: scheduler.hint(entry))
            clock = self._clock
            task._future.add_done_callback(lambda _: callback.finished(clock.now()))
        return task

    def _lease_id(self, journal_key: str) -> str:
        # Stable across restarts of this journal, so a shared ledger re-attaches the lease.
        assert self._journal is not None
        where = f"{socket.gethostname()}\0{self._journal.path.resolve()}\0{journal_key}"
        return hashlib.sha256(where.encode()).hexdigest()[:32]

    def _hold_to_horizon(
        self, conn: Connection, lease: Lease, model: str, submitted: float
    ) -> None:
        assert self._scheduler is not None
        spec = self._driver.model_spec(model)
        group = (self._driver.name, spec.wire_id if spec is not None else model)
        self._scheduler.hold_to_horizon(conn, lease, group, submitted)

    def _track(
        self,
        conn: Connection,
        task: Task,
        ref: TaskRef,
        *,
        timeout: float | None,
        lease: Lease | None,
        late: bool = False,
    ) -> Entry[Tracked]:
        assert self._scheduler is not None
        default = LOCAL_TASK_TIMEOUT if self._provider == "local" else DEFAULT_TASK_TIMEOUT
        conn.account.tracked += 1
        return self._scheduler.track(
            Tracked(
                ref=ref,
                task=task,
                conn=conn,
                lease=lease,
                submitted_wall=self._wall_clock(),
            ),
            timeout=timeout or self._timeouts.task or default,
            late=late,
        )

    async def _reattach(self, known: JournalEntry) -> Task:
        if known.task_id is None or known.model is None:
            raise SubmitOutcomeUnknownError(
                f"the journal holds an earlier submit of this request (key {known.key[:16]}…) "
                "with no task id: it may have been accepted, so it is not submitted again; "
                "check with the provider, then remove it from the journal to retry",
                provider=known.provider,
                request=known.request,
            )
        ref = TaskRef(self._driver.name, known.task_id, known.model)
        if known.state in ("succeeded", "failed"):
            task = Task(known.request)
            task._accept(ref)
            now = dt.datetime.fromtimestamp(self._wall_clock(), tz=dt.UTC)
            if known.state == "succeeded":
                task._resolve(
                    ImageResult(
                        task_id=ref.task_id,
                        provider=ref.provider,
                        model=ref.model,
                        urls=known.urls,
                        request=known.request,
                        submitted_at=now,
                        completed_at=now,
                    ),
                    None,
                )
            else:
                task._resolve(
                    None,
                    GenerationFailedError(
                        known.error or "failed (recorded in the journal)",
                        task_id=ref.task_id,
                        provider=ref.provider,
                        model=ref.model,
                    ),
                )
            return task
        task = self._resume(
            known.task_id,
            model=known.model,
            request=known.request,
            lease=self._journal_leases.pop(known.key, None),
        )
        self._journal_on_end(task, known.key)
        return task

    def _journal_on_end(self, task: Task, key: str) -> None:
        journal = self._journal
        assert journal is not None

        def record(future: asyncio.Future[ImageResult]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is None:
                write = journal.record_end(key, "succeeded", urls=future.result().urls)
            elif isinstance(error, GenerationFailedError):
                write = journal.record_end(key, "failed", error=str(error))
            else:
                return  # timed out, closed, unreadable: the task id stays, resumable
            pending = asyncio.ensure_future(write)
            self._journal_writes.add(pending)
            pending.add_done_callback(self._journal_writes.discard)

        task._future.add_done_callback(record)

    async def download(self, result: ImageResult, dest: str | Path) -> list[Path]:
        """Save a result's images: ``dest`` for one image, ``dest-1``, ``dest-2`` … for more.

        Streams with a 64 MiB cap per image, writes through a temporary file and a rename (no
        half files), keeps files already present, checks the content type, retries transient
        failures, and runs at most 8 downloads at once per client. The API key is never sent
        to image hosts.

        Returns:
            the paths written (or kept).

        Raises:
            BadResponseError: an image could not be fetched (for example an expired URL);
                ``task_id`` names the task.
            ClientClosedError: the client was closed.
        """
        if self._closed:
            raise ClientClosedError("the client is closed", task_id=result.task_id)
        self._bind_loop()
        return await self._downloader.download(result, Path(dest))

    async def _send_submit(
        self,
        conn: Connection,
        request: ImageRequest,
        lease: Lease,
        intent: _Intent | None = None,
    ) -> TaskRef:
        account, policy, driver = conn.account, conn.policy, conn.driver
        ledger = account.ledger
        http = driver.build_submit(request)
        for attempt in range(policy.attempts):
            last = attempt + 1 >= policy.attempts
            if ledger.admit_first:
                await ledger.slots.admit(lease)
                await ledger.acquire_request()
            else:
                await ledger.acquire_request()
                if not ledger.slots.try_admit(lease) and not await ledger.slots.admit(lease):
                    # More creates were out than the (effective) cap: it waited for a task to
                    # end, so its turn in the window has passed; take a fresh one.
                    await ledger.acquire_request()
            if self._closed:
                raise ClientClosedError("the client closed before this submit was sent")
            if intent is not None:
                # The intent is written right before each send, never before a wait: a kill
                # while waiting leaves no intent, so the rerun submits instead of reporting
                # an unknown outcome.
                await intent.write()
            ledger.note_send()
            try:
                response = await conn.transport.send(http, timeout=conn.timeouts.request)
            except ConnectError:
                # Nothing reached the provider, so a retry cannot create a second task.
                if last or not account.budget.try_spend():
                    raise
                ledger.slots.refused(lease)
                if intent is not None:
                    await intent.clear()
                await self._backoff(attempt)
                continue
            except TransportError as exc:
                raise SubmitOutcomeUnknownError(
                    f"submit to {driver.name} may have been accepted ({exc}); "
                    "not retried, to avoid paying twice",
                    provider=driver.name,
                    request=request,
                ) from exc
            try:
                ref = driver.parse_submit(response, request)
            except RateLimitError as exc:
                account.rate_limited += 1
                wait = exc.retry_after
                if wait is not None and wait > policy.max_retry_after:
                    raise
                if last or not account.budget.try_spend():
                    raise
                # Refused, so not created: clear the intent before the wait.
                if intent is not None:
                    await intent.clear()
                cap_reached = ledger.rate_limited(retry_after=wait, creating=True)
                ledger.slots.refused(lease)
                if cap_reached:
                    # The account's task cap: wait for a task to end, not for the window.
                    continue
                wait = wait if wait is not None else delay(attempt, policy, self._random)
                # A 429 cools down the shared account; the next acquire_request() waits it out.
                ledger.pause(wait)
                continue
            except ProviderRefusedError as exc:
                # The driver names this answer as "not created" (from its docs): retry only
                # what may be accepted later; the rest raise as the refusal they are.
                if not exc.retryable or last or not account.budget.try_spend():
                    raise
                ledger.slots.refused(lease)
                if intent is not None:
                    await intent.clear()
                await self._backoff(attempt)
                continue
            except ProviderUnavailableError as exc:
                raise SubmitOutcomeUnknownError(
                    f"submit to {driver.name} failed on the provider's side ({exc}); it may "
                    "have been accepted, so it is not retried",
                    provider=driver.name,
                    request=request,
                ) from exc
            except BadResponseError as exc:
                raise SubmitOutcomeUnknownError(
                    f"submit to {driver.name} got an unreadable answer ({exc}); it may have "
                    "been accepted, so it is not retried",
                    provider=driver.name,
                    request=request,
                ) from exc
            account.budget.refund()
            return ref
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _backoff(self, attempt: int) -> None:
        wait = delay(attempt, self._retry, self._random)
        await self._clock.sleep_until(self._clock.now() + wait)

    def resume(self, task_id: str, *, model: str, timeout: float | None = None) -> Task:
        """Track a task submitted earlier (by another process, or before a crash).

        Must be called inside ``async with client`` (the client must be started). The task
        takes a concurrent-task slot when one is free.

        Args:
            task_id: the provider's task id.
            model: the model it was submitted with (canonical name or provider id).
            timeout: seconds to keep checking; None uses the client's default.

        Raises:
            InvalidRequestError: empty task id or a model the provider does not offer.
        """
        errors = []
        if not str(task_id).strip():
            errors.append("task id must be a non-empty string @ $.task_id")
        spec = self._driver.model_spec(model)
        if spec is None:
            errors.append(f"model {model!r} is not offered by {self._driver.name} @ $.model")
        if timeout is not None and timeout <= 0:
            errors.append("timeout must be a positive number of seconds @ $.timeout")
        if errors:
            raise InvalidRequestError(errors)
        assert spec is not None
        return self._resume(task_id, model=spec.wire_id, request=None, timeout=timeout)

    def _resume(
        self,
        task_id: str,
        *,
        model: str,
        request: ImageRequest | None,
        timeout: float | None = None,
        lease: Lease | None = None,
    ) -> Task:
        if self._closed:
            raise ClientClosedError("the client is closed")
        self._bind_loop()
        conn = self._conn
        if conn is None:
            if self._provider == "local":
                raise ConfigurationError("start the local client (async with) before resume()")
            conn = self._connect()
        task = Task(request)
        ref = TaskRef(self._driver.name, task_id, model)
        task._accept(ref)
        # The task runs on the provider whether or not a slot is free, so it takes one even
        # over the cap: new submits then wait until the account really has room.
        if lease is None:
            lease = conn.account.ledger.slots.take(conn)
        self._track(conn, task, ref, timeout=timeout, lease=lease)
        return task

    async def as_completed(
        self, requests: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> AsyncIterator[Task]:
        """Submit many requests with back-pressure and yield each task once it has ended.

        Requests are pulled from the iterable only as concurrent-task slots free up, so a
        million-line generator never means a million coroutines. Every yielded task is done:
        ``await task`` returns its result or raises its error. A request refused before
        acceptance yields a task with ``id`` None whose await raises that error.
        Items are requests, prompts (strings, default settings), or ``(key, request)`` pairs
        whose key names the task in the journal and is given back as ``task.key``.
        """
        conn = await self._ensure_started()
        window = conn.account.ledger.configured.concurrent_tasks
        source = _aiter(requests)
        running: set[asyncio.Task[Task]] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and len(running) < window:
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    running.add(asyncio.ensure_future(self._run_one(item)))
                if not running:
                    return
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    yield finished.result()
        finally:
            for pending in running:
                pending.cancel()

    async def _run_one(self, item: BulkItem) -> Task:
        key, request = item if isinstance(item, tuple) else (None, item)
        try:
            if isinstance(request, str):
                request = ImageRequest(prompt=request)
            task = await self.submit(request, key=key)
        except NanoBananaError as exc:
            failed = Task(request if isinstance(request, ImageRequest) else None, key)
            failed._resolve(None, exc)
            return failed
        with contextlib.suppress(NanoBananaError):
            await task  # the caller reads the error from the yielded task
        return task

    def statistics(self) -> ClientStatistics:
        """A snapshot of the account's counters (zeros before the first request)."""
        conn = self._conn
        if conn is None:
            return ClientStatistics(
                pending=0,
                in_flight=0,
                peak_in_flight=0,
                waiting=0,
                requests_in_window=0,
                requests_sent=0,
                rate_limited=0,
                retries=0,
                retry_tokens=self._retry.budget,
                mean_checks_per_task=0.0,
                limits=self._limits,
                effective_limits=self._limits,
            )
        account: Account = conn.account
        ledger = account.ledger
        return ClientStatistics(
            pending=len(account.entries),
            in_flight=ledger.slots.sent,
            peak_in_flight=ledger.slots.peak,
            waiting=ledger.slots.waiting,
            requests_in_window=ledger.requests_in_window(),
            requests_sent=ledger.requests,
            rate_limited=account.rate_limited,
            retries=account.budget.retries,
            retry_tokens=account.budget.tokens,
            mean_checks_per_task=account.checks / account.tracked if account.tracked else 0.0,
            limits=ledger.configured,
            effective_limits=ledger.effective,
        )


async def _aiter(
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
) -> AsyncIterator[BulkItem]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
