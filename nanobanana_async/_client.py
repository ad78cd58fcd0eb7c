"""Client: the public entry point. It owns one connection to the shared scheduler and hands
submits to the submit pipeline; the runner resolves every task (does I/O)."""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

import aiohttp

from . import _telemetry
from ._client_results import ClientResults
from ._clock import Clock
from ._config import Limits, RetryPolicy, Timeouts
from ._errors import NotSupportedError
from ._lifetime import Lifetime
from ._models import (
    AspectRatio,
    Balance,
    ImageRequest,
    ImageResult,
    ModelName,
    OptionValue,
    OutputFormat,
    Resolution,
)
from ._settings import check_parts, resolve
from ._stats import ClientStatistics
from ._task import Task
from ._transport import Transport, endpoint
from .events import Event, EventStream, _Emitter
from .providers import validate

if TYPE_CHECKING:
    from .otel import Telemetry
    from .webhooks import CallbackReceiver

__all__ = ("Client", "ClientStatistics")


class Client(ClientResults):
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
            defaults to ``NANOBANANA_BASE_URL``, then the documented one. Refused for
            ``local``, which starts its own simulator (and ignores ``NANOBANANA_BASE_URL``),
            and when it holds a user name or password (``https://user:pw@host``): the key
            goes in a header, and a URL is stored in journals and shown in messages.
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
        on_event: called on the event loop with each :mod:`nanobanana_async.events` value as
            it happens (submits, checks, retries, 429s, ends …); an exception from it is
            logged once at WARNING and never reaches the client. See also :meth:`events`.
        telemetry: OpenTelemetry spans and metrics of this client's tasks (the ``[otel]``
            extra): a :class:`nanobanana_async.otel.Telemetry` reports to its providers;
            False to none; None (the default) to the global ones when the application has set
            an SDK provider by the time the client is made, else to none, at no cost.
        clock: monotonic clock for the scheduler (tests use ``testing.FakeClock``).
        wall_clock: unix time for timestamps and HTTP-date Retry-After.
        random: returns floats in [0, 1) for backoff jitter.

    Raises:
        ConfigurationError: unknown provider, missing key, a base URL that is not http(s) or
            holds a password, an argument of the wrong type (``limits={...}`` for
            ``Limits(...)``, a number for ``api_key``), or an ``on_event`` that is not
            callable or is an ``async def`` (never awaited).
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
        on_event: Callable[[Event], object] | None = None,
        telemetry: Telemetry | Literal[False] | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._settings = resolve(
            provider,
            api_key=api_key,
            base_url=base_url,
            limits=limits,
            session=session,
            retry=retry,
            timeouts=timeouts,
            transport=transport,
            coordinator=coordinator,
            clock=clock,
            wall_clock=wall_clock,
            random=random,
        )
        check_parts(on_event=on_event, callbacks=callbacks, journal=journal)
        key = self._settings.key
        self._events = _Emitter(on_event, secrets=(key,) if key else (), name=repr(self))
        self._telemetry = _telemetry.attach(telemetry, self._events, self._settings)
        self._life = Lifetime(
            self._settings,
            journal=journal,
            callbacks=callbacks,
            name=repr(self),
            events=self._events,
        )

    def __repr__(self) -> str:
        return f"Client(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def provider(self) -> str:
        """The provider name."""
        return self._settings.provider

    @property
    def base_url(self) -> str:
        """The base URL requests go to (the simulator's once ``local`` has sent a request)."""
        return endpoint(self._settings.transport, self._settings.base_url)

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        try:
            await self._life.started()
        except BaseException:
            # No __aexit__ runs when entering fails (a journal of another URL, in use by
            # another process): the client was already bound to this loop and was left open.
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop tracking this client's tasks and release its connections.

        Tasks still pending fail with ``ClientClosedError`` carrying their ids; they keep
        running at the provider and can be resumed. Those whose caller had just been cancelled
        (so the error reaches no one) are named in one WARNING line, or, when the journal
        holds them, counted in one INFO line naming it. Submits still under way
        are stopped: their callers get ``SubmitOutcomeUnknownError`` when the create was
        already sent, else ``ClientClosedError``. Every connection is released even when this
        runs in a cancelled task (``async with`` after Ctrl-C). Safe to call more than once.

        Called from another event loop than the one the client runs on: once that loop has
        ended (its ``asyncio.run`` returned), the close releases the HTTP sessions and the
        journal without awaiting anything of the ended loop, leaves its tasks as that loop
        left them, and says so at DEBUG; while that loop still runs, it raises.

        Raises:
            ConfigurationError: the client runs on another event loop that has not ended.
        """
        await self._life.aclose()

    def events(self, maxsize: int = 1000) -> EventStream:
        """A stream of this client's events from now on: ``async for event in client.events():``.

        The buffer holds ``maxsize`` events; when it is full the oldest is dropped and
        ``stream.dropped`` counts it, so a slow consumer never holds up the client. The stream
        ends when the client closes or ``stream.close()`` is called. Several may be open.

        Raises:
            ConfigurationError: ``maxsize`` is not an int of at least 1, or the client runs
                on another event loop (then no event would come).
        """
        self._life.check_loop()
        return self._events.stream(maxsize)

    # ----------------------------------------------------------------- tasks

    async def generate(
        self,
        prompt: str,
        *,
        model: ModelName | str = "nano-banana-2",
        resolution: Resolution | str | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        image_urls: str | Iterable[str] = (),
        output_format: OutputFormat | str | None = None,
        google_search: bool | None = None,
        timeout: float | None = None,
        num_images: int | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
        provider_options: Mapping[str, OptionValue] | None = None,
    ) -> ImageResult:
        """Generate one image (or ``num_images``) and wait for it.

        Args are those of :class:`ImageRequest`. A ``callback_url`` here is used instead of the
        client's ``callbacks=`` receiver for this request.

        Cancelling it (or a ``wait_for`` around it) stops only this wait: an accepted task runs
        on and is paid, and stays tracked until it ends or the client closes. Its id is logged
        once at WARNING (logger ``nanobanana_async``) with the ``resume`` call that gets it,
        also when the create is accepted after the cancel; to hold the id in code, ``submit``
        first and keep ``task.id``, or give the client a ``journal=`` (which records it: the
        line is then at INFO and names the journal).

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
            num_images=num_images,
            watermark=watermark,
            callback_url=callback_url,
            provider_options=provider_options,
        )
        submitter = self._life.ready() or await self._life.started()
        started = submitter.start_generate(request)
        if started is None:
            return await submitter.generate(request)
        # Awaited here, not in a coroutine of the submitter's: a pending call keeps one
        # object less, which every full collection walks (issue 22, item 4).
        task, waiter, lease = started
        del started  # the tuple would be one more object kept while it waits
        try:
            await waiter
            # Woken to send the task's due status check: sent from this task, whose answer
            # resolves the task here (Task._take_check). One waiter at a time is kept, and
            # no generator: a pending call keeps as few objects as before.
            while (check := task._taken_check()) is not None:
                await check.run_here()
                if task.done():
                    break
                waiter = task._rewait()
                await waiter
        except asyncio.CancelledError:
            submitter.generate_cancelled(task, waiter, lease, request)
            raise
        return await task  # ended: returns at once

    async def balance(self) -> Balance:
        """The account's balance, from the provider's balance endpoint (crun, apixo, local).

        Raises:
            NotSupportedError: the provider documents no balance endpoint (xingchao,
                nanobananaapi); nothing is sent.
            APIError: the provider refused the call (e.g. AuthenticationError).
            TransportError: no usable answer.
        """
        driver = self._settings.driver
        if driver.build_balance() is None:
            raise NotSupportedError(
                f"{driver.name} documents no balance endpoint", provider=driver.name
            )
        return await (await self._life.started()).balance()

    def validate(self, request: ImageRequest) -> None:
        """Check ``request`` against this provider's capability table, sending nothing.

        Raises:
            InvalidRequestError: listing every problem, each naming its field.
        """
        validate(self._settings.driver, request)

    async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task:
        """Submit a task and return as soon as the provider accepted it.

        Waits first for a free concurrent-task slot (back-pressure: callers beyond
        ``limits.concurrent_tasks`` wait, they are not failed). Once the submit has been sent,
        cancelling the caller no longer abandons it: an accepted task is still tracked.

        With a journal, the request is looked up by ``key`` (default: a hash of the provider
        and the request, so identical requests share one task; batch runs pass a line key).
        A key with a task id re-attaches to that task (or returns its recorded end) instead of
        paying again; a key with an intent but no task id raises SubmitOutcomeUnknownError.
        Submits of one key at once share one create: every caller gets the same Task.

        Raises:
            InvalidRequestError: before any request, for input the provider would refuse.
            SubmitOutcomeUnknownError: the submit may have been accepted; never retried here.
            APIError: the provider refused the submit.
            ClientClosedError: the client closed before the submit was sent.
        """
        if not isinstance(request, ImageRequest):
            raise TypeError(
                f"submit() takes an ImageRequest, got {type(request).__name__}: "
                "submit(ImageRequest(prompt=...)), or generate(prompt) to wait for the image"
            )
        submitter = self._life.ready() or await self._life.started()
        return await submitter.submit(request, key)
