"""Router: several Clients (providers, keys) behind the Client's surface, with failover that never
pays twice, a circuit breaker per account and opt-in hedging (does I/O through the clients).

What each failure means is decided in ``_routing`` and ``_breaker`` (pure); ``_dispatch`` picks
and sends, ``_follow`` follows hedges and resubmits; this module is the public surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import random as _random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

import attrs

from . import _telemetry
from ._breaker import Breaker, CircuitPolicy
from ._bulk import BulkItem, as_completed
from ._client import Client
from ._dispatch import Account, Dispatcher, account_name, shared_circuit
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    InvalidRequestError,
)
from ._follow import Follower
from ._models import (
    AspectRatio,
    ImageRequest,
    ImageResult,
    ModelName,
    OptionValue,
    OutputFormat,
    Resolution,
)
from ._routing import (
    STRATEGIES,
    AccountStatistics,
    Attempt,
    Hedge,
    RouterStatistics,
    Strategy,
    Weights,
    combine,
    describe,
)
from ._scheduler._submit import log_orphaned
from ._task import Task
from .events import Event, EventStream, _check_callback, _Emitter

if TYPE_CHECKING:
    from .otel import Telemetry

__all__ = ("Router",)


class Router:
    """Several :class:`Client` objects (any mix of providers and keys) behind one client's
    surface: ``generate``, ``submit``, ``as_completed``, ``resume``, ``statistics``, ``aclose``.

    Use it as ``async with Router([client_a, client_b]) as router:``. Entering it starts every
    client. The router closes the clients only with ``owns_clients=True``; by default they are
    the caller's to close (closing the router ends the tasks it follows for hedging or
    resubmits with ``ClientClosedError``; the clients keep tracking theirs).

    A request goes only to accounts whose provider accepts it. A submit moves to the next
    account only on an answer that proves no task was created there (no connection, a 429,
    the key or credits refused, a documented maintenance refusal), so a prompt is never paid
    twice; while another account is ready to take it, the client does not retry such an
    answer itself (the last account left does, as a lone client would). Each account tried is
    on ``task.attempts`` (and on the error's ``attempts``). Each account has a circuit breaker
    counting provider faults: after 5 in a row, or half of 20 or more creates in 60 s, it
    takes no creates for a jittered 30 s (doubling to 5 min; see :class:`CircuitPolicy`),
    then lets one through; when every eligible account is open,
    callers wait for the first to half-open, within their request's timeout. An account whose
    key (401) or credits (402) were refused is set aside for the run, with one WARNING. For
    clients with a ``coordinator=``, the circuit is shared through Redis: every process keeps
    off an account another one saw fail, and one probe goes among them all.

    Args:
        clients: the accounts, in priority order (ties follow it). All must use one clock.
        strategy: ``"soonest"`` (default): the account expected to finish the task first, from
            its free slots, its request window and the model's learned latency there.
            ``"priority"``: the given order, the next account only when the earlier ones are
            saturated or their circuit is open. ``"weighted"``: shares by ``weights``.
        weights: one positive weight per client for ``"weighted"`` (default: equal).
        owns_clients: close the clients when the router closes. Default False.
        on_unknown: ``"raise"`` (default): a submit of unknown outcome (it may have been
            accepted) stays with its account and raises ``SubmitOutcomeUnknownError`` naming
            it. ``"failover"`` sends it to the next account too, which may pay twice.
        resubmit_failed: a task that failed after acceptance (never for a content refusal) is
            submitted again on another account, and paid again. Default False.
        hedge: see :class:`Hedge`; default None (off).
        circuit: the breakers' thresholds and cooldowns, one :class:`CircuitPolicy` for every
            account (default: the numbers above).
        on_event: called on the event loop with every event of the router (``account_chosen``,
            ``failover``, ``circuit``, ``hedge``) and of its clients, each naming its
            ``account``; an exception from it is logged once and never reaches the router.
            See also :meth:`events`.
        random: floats in [0, 1) for the breakers' jitter.
        telemetry: a :class:`nanobanana_async.otel.Telemetry` for the clients that report to
            none of their own (each client's ``telemetry=``), their spans and labels naming
            the router's account; default None: each client reports as it was told. A task
            tried on several accounts has a span on each.

    Raises:
        ConfigurationError: no clients, a client given twice, clients on different clocks, an
            unknown strategy or ``on_unknown``, bad weights, a ``hedge`` that is not a
            :class:`Hedge`, a ``circuit`` that is not a :class:`CircuitPolicy`, or an
            ``on_event`` that is not callable or is an ``async def``.
    """

    def __init__(
        self,
        clients: Iterable[Client],
        *,
        strategy: Strategy = "soonest",
        weights: Sequence[float] | None = None,
        owns_clients: bool = False,
        on_unknown: Literal["raise", "failover"] = "raise",
        resubmit_failed: bool = False,
        hedge: Hedge | None = None,
        circuit: CircuitPolicy | None = None,
        on_event: Callable[[Event], object] | None = None,
        random: Callable[[], float] = _random.random,
        telemetry: Telemetry | Literal[False] | None = None,
    ) -> None:
        given = list(clients)
        if not given or not all(isinstance(c, Client) for c in given):
            raise ConfigurationError("a Router takes one or more Client objects")
        if len({id(c) for c in given}) != len(given):
            raise ConfigurationError("a client is given to the Router twice")
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        if on_unknown not in ("raise", "failover"):
            raise ConfigurationError("on_unknown must be 'raise' or 'failover'")
        weights = [1.0] * len(given) if weights is None else list(weights)
        if len(weights) != len(given) or not all(_positive_number(w) for w in weights):
            raise ConfigurationError("weights: one positive number per client")
        if hedge is not None and not isinstance(hedge, Hedge):
            # Hedge(...) is a policy object; a bare number was taken and failed mid-run.
            raise ConfigurationError(
                f"hedge must be a nanobanana_async.Hedge or None, got {type(hedge).__name__}"
            )
        circuit = CircuitPolicy() if circuit is None else circuit
        if not isinstance(circuit, CircuitPolicy):
            raise ConfigurationError("circuit must be a CircuitPolicy")
        if len({id(c._settings.clock) for c in given}) != 1:
            raise ConfigurationError("the clients of a Router must share one clock")
        if on_event is not None:
            _check_callback(on_event, "on_event")
        # Checked before any client is touched (their events are attached to the router below).
        # None: each client reports as it was told (no global telemetry is looked up here).
        chosen = _telemetry.choose(telemetry) if telemetry is not None else None
        accounts: list[Account] = []
        for client in given:
            name = account_name(client)
            taken = sum(1 for a in accounts if a.name.split("#")[0] == name)
            name = f"{name}#{taken + 1}" if taken else name
            accounts.append(
                Account(client, name, Breaker(random, circuit), shared=shared_circuit(client))
            )
        self._accounts = accounts
        keys = tuple(a.client._settings.key for a in accounts)
        self._events = _Emitter(
            on_event, secrets=tuple(k for k in keys if k is not None), name="Router"
        )
        # Each client's events name its account and reach the router's listeners too.
        self._detach: list[Callable[[], None]] = []
        for account in accounts:
            account.client._events.account = account.name
            self._detach.append(account.client._events.attach(self._events))
        self._dispatch = Dispatcher(
            accounts,
            strategy=strategy,
            weights=Weights(weights),
            on_unknown=on_unknown,
            events=self._events,
        )
        self._follower = Follower(self._dispatch, hedge=hedge, resubmit=resubmit_failed)
        self._follows = hedge is not None or resubmit_failed
        self._owns = owns_clients
        self._closed = False
        for account in accounts if chosen is not None else ():
            client = account.client
            if client._telemetry is None:
                client._telemetry = _telemetry.attach(
                    chosen, client._events, client._settings, account.name
                )

    def __repr__(self) -> str:
        return f"Router(accounts={[a.name for a in self._accounts]!r})"

    @property
    def accounts(self) -> tuple[str, ...]:
        """The accounts as ``provider:fingerprint`` (8 hex digits of the key's SHA-256)."""
        return tuple(a.name for a in self._accounts)

    def events(self, maxsize: int = 1000) -> EventStream:
        """A stream of the router's and its clients' events from now on (see
        :meth:`Client.events`); each names its ``account``. It ends when the router closes.

        Raises:
            ConfigurationError: ``maxsize`` is not an int of at least 1, or a client runs on
                another event loop (then no event would come).
        """
        for account in self._accounts:
            account.client._life.check_loop()
        return self._events.stream(maxsize)

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("the router is closed")
        try:
            for account in self._accounts:
                await account.client.__aenter__()
        except BaseException:
            # No __aexit__ follows a failed entry: the clients it owns are closed here.
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following hedges and resubmits, and close the clients if the router owns them.

        Router tasks still pending fail with ``ClientClosedError`` carrying their ids; submits
        still waiting for a circuit fail with it at once, and send nothing. Safe to call more
        than once.

        From another event loop, as ``Client.aclose``: once the clients' loop has ended, the
        router stops and closes the clients it owns without awaiting anything of that loop;
        while it still runs, it raises, and nothing is closed.

        Raises:
            ConfigurationError: a client runs on another event loop that has not ended.
        """
        if self._closed:
            return
        # Checked before anything is closed: the router stays usable from its own loop.
        for account in self._accounts:
            account.client._life.check_closable()
        self._closed = True
        self._dispatch.close()
        if any(account.client._life.loop_ended for account in self._accounts):
            # Its follower's tasks and circuit waits ended with that loop (asyncio.run
            # cancelled them); only what needs no loop of its own is released.
            for detach in self._detach:
                detach()
            for account in self._accounts if self._owns else ():
                await account.client.aclose()
            return
        async with contextlib.AsyncExitStack() as stack:
            # Last of all: the streams see the clients' final events, then end.
            stack.callback(self._stop_events)
            if self._owns:
                for account in self._accounts:
                    stack.push_async_callback(account.client.aclose)
            stack.push_async_callback(self._dispatch.aclose)
            await self._follower.aclose()

    def _stop_events(self) -> None:
        for detach in self._detach:
            detach()
        self._events.close()

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
        """Generate one image on the account the strategy picks, and wait for it.

        Args, returns and raises as ``Client.generate``; errors carry ``attempts``.
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
        task = await self.submit(request)
        try:
            result = await task
        except asyncio.CancelledError:
            # As Client.generate: the accepted task runs on and is paid; its id goes to the log.
            log_orphaned(task, "generate() was cancelled after")
            raise
        return attrs.evolve(result, attempts=task.attempts)

    async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task:
        """Submit on the account the strategy picks, failing over as the class describes.

        With journals, a request one account's journal already holds (by ``key``, or by its
        default key there) goes back to that account only: a rerun re-attaches, never pays
        again elsewhere.

        Returns:
            the accepted task; ``task.attempts`` lists each account tried and why.

        Raises:
            InvalidRequestError: no account's provider accepts the request (each one's
                reasons listed), before any request is sent.
            SubmitOutcomeUnknownError: the create may have been accepted; the message names
                the account, and it was not sent elsewhere (unless ``on_unknown="failover"``).
            ProviderUnavailableError: every eligible account's circuit stayed open past the
                request's timeout.
            APIError, ConnectError: the last account's refusal, when every account refused.
        """
        if not isinstance(request, ImageRequest):
            raise TypeError(
                f"submit() takes an ImageRequest, got {type(request).__name__}: "
                "submit(ImageRequest(prompt=...)), or generate(prompt) to wait for the image"
            )
        if self._closed:
            raise ClientClosedError("the router is closed")
        eligible = self._dispatch.eligible(request)
        held = await self._dispatch.holder(request, key, eligible)
        if held is not None:
            # An account's journal holds this request: only that account may re-attach to it.
            eligible = [held]
        attempts: list[Attempt] = []
        tried: set[int] = set()
        task, index = await self._dispatch.route(
            request, key, eligible, tried, attempts, held=held is not None
        )
        task.attempts = tuple(attempts)
        if self._follows and len(eligible) > 1:
            return self._follower.follow(task, index, request, key, eligible, tried, attempts)
        self._dispatch.watch(task, index)
        return task

    def validate(self, request: ImageRequest) -> None:
        """Check that some account's provider accepts ``request``, sending nothing.

        Raises:
            InvalidRequestError: none does; each account's reasons, prefixed with its name.
        """
        self._dispatch.eligible(request)

    async def download(self, result: ImageResult, dest: str | Path) -> list[Path]:
        """Save a result's images, as ``Client.download``, through a client of the result's
        provider (the first one given; image hosts never get a key)."""
        same = [a.client for a in self._accounts if a.client.provider == result.provider]
        return await (same or [self._accounts[0].client])[0].download(result, dest)

    def resume(
        self, task_id: str, *, model: str, timeout: float | None = None, account: str | None = None
    ) -> Task:
        """Track a task submitted earlier, on ``account`` (a name from :attr:`accounts`, or a
        provider name that only one account has; optional with one account).

        Raises:
            InvalidRequestError: no such account, or none named with several; or as
                ``Client.resume``.
        """
        names = [a.name for a in self._accounts]
        if account is None and len(self._accounts) == 1:
            found = self._accounts
        else:
            found = [a for a in self._accounts if account in (a.name, a.client.provider)]
        if len(found) != 1:
            raise InvalidRequestError(
                [f"account must name one of {', '.join(names)} (got {account!r}) @ $.account"]
            )
        return found[0].client.resume(task_id, model=model, timeout=timeout)

    async def as_completed(
        self, requests: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> AsyncIterator[Task]:
        """As ``Client.as_completed``, with the accounts' task caps added up as the window."""
        window = sum(a.client.statistics().limits.concurrent_tasks for a in self._accounts)
        async for task in as_completed(lambda r, k: self.submit(r, key=k), requests, window):
            yield task

    def statistics(self) -> RouterStatistics:
        """The accounts' counters added up, each account's own, and the router's."""
        accounts = tuple(
            AccountStatistics(
                account=a.name,
                circuit=a.breaker.state.value,
                set_aside=describe(a.set_aside) if a.set_aside is not None else None,
                accepted=a.accepted,
                failovers=a.failovers,
                client=a.client.statistics(),
            )
            for a in self._accounts
        )
        dispatch, follower = self._dispatch, self._follower
        return combine(
            accounts,
            failovers=dispatch.failovers,
            resubmits=follower.resubmits,
            hedges=follower.hedges,
            hedges_won=follower.hedges_won,
            hedge_losers_ended=follower.losers_ended,
        )


def _positive_number(value: object) -> bool:
    # Weights come from the caller's data at run time: "1" is refused, not a TypeError.
    return isinstance(value, int | float) and value > 0
