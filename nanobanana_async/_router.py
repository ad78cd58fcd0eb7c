"""Router: several Clients (providers, keys) behind the Client's surface, with failover that never
pays twice, a circuit breaker per account and opt-in hedging (does I/O through the clients).

What each failure means is decided in ``_routing`` and ``_breaker`` (pure); this module waits,
sends through the clients and keeps the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import random as _random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Self

import attrs

from ._breaker import Breaker, Circuit
from ._bulk import BulkItem, as_completed
from ._client import Client
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    ContentPolicyError,
    GenerationFailedError,
    InvalidRequestError,
    NanoBananaError,
    ProviderUnavailableError,
    SubmitOutcomeUnknownError,
)
from ._models import (
    AspectRatio,
    ImageRequest,
    ImageResult,
    ModelName,
    OptionValue,
    OutputFormat,
    Resolution,
)
from ._redact import key_fingerprint
from ._routing import (
    STRATEGIES,
    AccountStatistics,
    Attempt,
    Hedge,
    Outlook,
    RouterStatistics,
    Strategy,
    Weights,
    combine,
    describe,
    failover_reason,
    is_fault,
    rank,
    sets_aside,
)
from ._task import Task

__all__ = ("Router",)

_log = logging.getLogger("nanobanana_async")


@attrs.define(eq=False)
class _Account:
    client: Client
    name: str
    breaker: Breaker
    set_aside: NanoBananaError | None = None
    accepted: int = 0
    failovers: int = 0
    routing: int = 0  # submits handed to the client and not yet answered


def _account_name(client: Client) -> str:
    # provider:fingerprint: stable across runs, and never the key itself.
    key = client._settings.key
    return f"{client.provider}:{key_fingerprint(key.reveal() if key is not None else None)}"


class Router:
    """Several :class:`Client` objects (any mix of providers and keys) behind one client's
    surface: ``generate``, ``submit``, ``as_completed``, ``resume``, ``statistics``, ``aclose``.

    Use it as ``async with Router([client_a, client_b]) as router:``. Entering it starts every
    client. The router closes the clients only with ``owns_clients=True``; by default they are
    the caller's to close (closing the router ends the tasks it follows for hedging or
    resubmits with ``ClientClosedError``; the clients keep tracking theirs).

    A request goes only to accounts whose provider accepts it. A submit moves to the next
    account only on an answer that proves no task was created there (no connection, a 429
    after the client's own retries, the key or credits refused, a documented maintenance
    refusal), so a prompt is never paid twice; each account tried is on ``task.attempts`` (and
    on the error's ``attempts``). Each account has a circuit breaker counting provider faults:
    after 5 in a row, or half of 20 or more creates in 60 s, it takes no creates for a jittered
    30 s (doubling to 5 min), then lets one through; when every eligible account is open,
    callers wait for the first to half-open, within their request's timeout. An account whose
    key (401) or credits (402) were refused is set aside for the run, with one WARNING.

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
        random: floats in [0, 1) for the breakers' jitter.

    Raises:
        ConfigurationError: no clients, a client given twice, clients on different clocks, an
            unknown strategy or ``on_unknown``, or bad weights.
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
        random: Callable[[], float] = _random.random,
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
        if len(weights) != len(given) or not all(w > 0 for w in weights):
            raise ConfigurationError("weights: one positive number per client")
        clocks = {id(c._settings.clock) for c in given}
        if len(clocks) != 1:
            raise ConfigurationError("the clients of a Router must share one clock")
        self._clock = given[0]._settings.clock
        self._accounts: list[_Account] = []
        for client in given:
            name = _account_name(client)
            taken = sum(1 for a in self._accounts if a.name.split("#")[0] == name)
            name = f"{name}#{taken + 1}" if taken else name
            self._accounts.append(_Account(client, name, Breaker(random)))
        self._strategy = strategy
        self._weights = Weights(weights)
        self._owns = owns_clients
        self._on_unknown = on_unknown
        self._resubmit = resubmit_failed
        self._hedge = hedge
        self._closed = False
        self._changed: asyncio.Event | None = None
        self._jobs: set[asyncio.Future[None]] = set()
        self._outers: set[Task] = set()
        self._accepted = self._failovers = self._resubmits = 0
        self._hedges = self._hedges_won = self._losers_ended = 0

    def __repr__(self) -> str:
        return f"Router(accounts={[a.name for a in self._accounts]!r})"

    @property
    def accounts(self) -> tuple[str, ...]:
        """The accounts as ``provider:fingerprint`` (8 hex digits of the key's SHA-256)."""
        return tuple(a.name for a in self._accounts)

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("the router is closed")
        for account in self._accounts:
            await account.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following hedges and resubmits, and close the clients if the router owns them.

        Router tasks still pending fail with ``ClientClosedError`` carrying their ids. Safe to
        call more than once.
        """
        if self._closed:
            return
        self._closed = True
        async with contextlib.AsyncExitStack() as stack:
            if self._owns:
                for account in self._accounts:
                    stack.push_async_callback(account.client.aclose)
            jobs = [job for job in self._jobs if not job.done()]
            for job in jobs:
                job.cancel()
            if jobs:
                await asyncio.wait(jobs)
            for outer in list(self._outers):
                ref = outer.ref
                outer._resolve(
                    None,
                    ClientClosedError(
                        "the router closed while this task was pending",
                        task_id=ref.task_id if ref else None,
                        model=ref.model if ref else None,
                    ),
                )

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
        return await task

    async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task:
        """Submit on the account the strategy picks, failing over as the class describes.

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
            raise TypeError("submit() takes an ImageRequest")
        if self._closed:
            raise ClientClosedError("the router is closed")
        eligible = self._eligible(request)
        attempts: list[Attempt] = []
        tried: set[int] = set()
        task, index = await self._route(request, key, eligible, tried, attempts)
        task.attempts = tuple(attempts)
        if len(eligible) > 1 and (self._hedge is not None or self._resubmit):
            return self._follow(task, index, request, key, eligible, tried, attempts)
        self._watch(task, self._accounts[index])
        return task

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
        return combine(
            accounts,
            failovers=self._failovers,
            resubmits=self._resubmits,
            hedges=self._hedges,
            hedges_won=self._hedges_won,
            hedge_losers_ended=self._losers_ended,
        )

    # ----------------------------------------------------------------- routing

    def _eligible(self, request: ImageRequest) -> list[int]:
        eligible: list[int] = []
        problems: list[str] = []
        for index, account in enumerate(self._accounts):
            try:
                account.client.validate(request)
            except InvalidRequestError as exc:
                problems.extend(f"{account.name}: {line}" for line in exc.errors)
            else:
                eligible.append(index)
        if not eligible:
            raise InvalidRequestError(problems)
        return eligible

    async def _route(
        self,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
        *,
        hedge: bool = False,
    ) -> tuple[Task, int]:
        # A hedge never waits for a circuit: the first task is running meanwhile.
        timeout = request.timeout or self._accounts[eligible[0]].client._settings.task_timeout
        deadline = -math.inf if hedge else self._clock.now() + timeout
        last: NanoBananaError | None = None
        while True:
            index, probe = await self._choose(request, eligible, tried, deadline, last, attempts)
            account = self._accounts[index]
            account.routing += 1
            try:
                task = await account.client.submit(request, key=key)
            except NanoBananaError as exc:
                self._record(account, exc, probe=probe)
                reason = failover_reason(exc, on_unknown=self._on_unknown)
                if reason is None:
                    raise self._final(exc, account, attempts)  # noqa: B904 (it chains itself)
                account.failovers += 1
                self._failovers += 1
                attempts.append(Attempt(account=account.name, outcome=f"{reason}: {exc}"))
                tried.add(index)
                last = exc
                continue
            except BaseException:
                if probe:
                    account.breaker.released()
                    self._notify()
                raise
            finally:
                account.routing -= 1
            if probe:
                # An accepted probe closes the circuit; other creates count when their task
                # ends, so that tasks failing to generate can open it.
                account.breaker.succeeded(self._clock.now())
                self._notify()
            account.accepted += 1
            self._accepted += 0 if hedge else 1
            tried.add(index)
            outcome = "accepted (hedge)" if hedge else "accepted"
            attempts.append(Attempt(account=account.name, outcome=outcome))
            return task, index

    async def _choose(
        self,
        request: ImageRequest,
        eligible: Sequence[int],
        tried: set[int],
        deadline: float,
        last: NanoBananaError | None,
        attempts: list[Attempt],
    ) -> tuple[int, bool]:
        # The account to send to, and whether this create is its circuit's half-open probe.
        while True:
            candidates = [i for i in eligible if i not in tried and not self._aside(i)]
            if not candidates:
                error = last or copy.copy(self._accounts[eligible[0]].set_aside)
                assert error is not None, "an eligible account is untried or set aside"
                error.attempts = tuple(attempts)
                raise error
            now = self._clock.now()
            ready = [i for i in candidates if self._accounts[i].breaker.ready_at(now) <= now]
            outlooks = {i: self._outlook(self._accounts[i], request) for i in ready}
            for index in rank(self._strategy, ready, outlooks, self._weights):
                breaker = self._accounts[index].breaker
                if breaker.allow(now):
                    return index, breaker.state is Circuit.HALF_OPEN
            times = [self._accounts[i].breaker.ready_at(now) for i in candidates]
            probing = math.inf in times
            earliest = min(times)
            if now >= deadline or (earliest > deadline and not probing):
                names = ", ".join(self._accounts[i].name for i in candidates)
                error = ProviderUnavailableError(
                    f"the circuit of every eligible account is open ({names}) past the "
                    "request's timeout",
                    provider=",".join(
                        sorted({self._accounts[i].client.provider for i in candidates})
                    ),
                    status=503,
                    code="circuit_open",
                )
                error.attempts = tuple(attempts)
                raise error
            await self._breakers_change(min(earliest, deadline))

    def _aside(self, index: int) -> bool:
        return self._accounts[index].set_aside is not None

    def _outlook(self, account: _Account, request: ImageRequest) -> Outlook:
        # Read through the client's statistics and its scheduler's learned latency: the router
        # keeps no second copy of an account's state.
        client = account.client
        stats = client.statistics()
        latency = client._settings.driver.first_poll
        request_wait = 0.0
        submitter = client._life.submitter
        if submitter is not None:
            ledger = submitter.conn.account.ledger
            request_wait = max(0.0, ledger.next_request_free() - self._clock.now())
            model = submitter.scheduler.plan.learned_model(submitter.conn.group(request.model))
            if model is not None:
                latency = model.median
        return Outlook(
            busy=max(stats.in_flight + stats.waiting, stats.pending + account.routing),
            cap=stats.effective_limits.concurrent_tasks,
            request_wait=request_wait,
            latency=latency,
        )

    def _record(self, account: _Account, error: NanoBananaError, *, probe: bool) -> None:
        now = self._clock.now()
        if is_fault(error):
            account.breaker.failed(now)
        elif probe:
            account.breaker.released()
        if sets_aside(error) and account.set_aside is None:
            account.set_aside = error
            _log.warning(
                "%s refused (%s): account %s is set aside for the rest of the run",
                account.client.provider,
                type(error).__name__,
                account.name,
            )
        self._notify()

    def _final(
        self, error: NanoBananaError, account: _Account, attempts: list[Attempt]
    ) -> Exception:
        attempts.append(Attempt(account=account.name, outcome=describe(error)))
        if isinstance(error, SubmitOutcomeUnknownError):
            named = SubmitOutcomeUnknownError(
                f"{error} (account {account.name}; not sent to another account, so as not to "
                "pay twice)",
                provider=error.provider,
                request=error.request,
            )
            named.__cause__ = error
            error = named
        error.attempts = tuple(attempts)
        return error

    def _notify(self) -> None:
        # Wakes callers waiting for a circuit to half-open (a probe ended, a state moved).
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _breakers_change(self, until: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        sleeper = asyncio.ensure_future(self._clock.sleep_until(until))
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    def _watch(self, task: Task, account: _Account) -> None:
        # A task that failed to generate is a provider fault on its account. Runs before the
        # task's awaiters resume (done callbacks come first), so its error carries the attempts.
        def ended(future: asyncio.Future[ImageResult]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if isinstance(error, NanoBananaError) and not error.attempts:
                error.attempts = task.attempts
            if error is None:
                account.breaker.succeeded(self._clock.now())
            elif isinstance(error, GenerationFailedError) and is_fault(error):
                account.breaker.failed(self._clock.now())
            else:
                return
            self._notify()

        task._future.add_done_callback(ended)

    # ----------------------------------------------------------------- hedges, resubmits

    def _follow(
        self,
        first: Task,
        index: int,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
    ) -> Task:
        outer = Task(request, key, self._clock)
        ref = first.ref
        assert ref is not None, "an accepted task has its ref"
        outer._accept(ref)
        outer.attempts = tuple(attempts)
        self._outers.add(outer)
        job = asyncio.ensure_future(
            self._race(outer, first, index, request, key, eligible, tried, attempts)
        )
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return outer

    def _hedge_at(self, index: int, request: ImageRequest) -> float:
        # When a task just accepted on ``index`` gets a hedge: never before the account learned
        # the model's latency (its quantiles mean nothing before).
        submitter = self._accounts[index].client._life.submitter
        if self._hedge is None or submitter is None:
            return math.inf
        model = submitter.scheduler.plan.learned_model(submitter.conn.group(request.model))
        if model is None:
            return math.inf
        return self._clock.now() + model.quantile(self._hedge.z)

    async def _hedge_now(
        self,
        outer: Task,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
        run: Callable[[Task, int, bool], None],
    ) -> None:
        assert self._hedge is not None
        if outer.done() or not self._hedge.allows(self._hedges, self._accepted):
            return
        try:
            task, where = await self._route(request, key, eligible, tried, attempts, hedge=True)
        except NanoBananaError as exc:
            # No other account takes it now: the first task goes on alone.
            _log.debug("no hedge for task %s: %s", outer.id, exc)
            return
        self._hedges += 1
        run(task, where, True)

    async def _race(
        self,
        outer: Task,
        first: Task,
        index: int,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
    ) -> None:
        # Follows the task (and its hedge or resubmit) to the end; resolves ``outer`` once.
        running: dict[asyncio.Future[ImageResult], tuple[Task, int, bool]] = {}

        def run(task: Task, at: int, hedged: bool) -> None:
            running[task._future] = (task, at, hedged)
            self._watch(task, self._accounts[at])

        run(first, index, False)
        hedge_at = self._hedge_at(index, request)
        try:
            while running:
                alarm = None
                if hedge_at < math.inf and not outer.done():
                    alarm = asyncio.ensure_future(self._clock.sleep_until(hedge_at))
                waits: set[asyncio.Future[Any]] = set(running)
                if alarm is not None:
                    waits.add(alarm)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if alarm is not None:
                    alarm.cancel()
                if alarm is not None and alarm in done:
                    hedge_at = math.inf
                    await self._hedge_now(outer, request, key, eligible, tried, attempts, run)
                for future in [f for f in running if f.done()]:
                    task, at, hedged = running.pop(future)
                    error = (
                        ClientClosedError("cancelled") if future.cancelled() else future.exception()
                    )
                    if outer.done():
                        self._losers_ended += 1
                        continue
                    if error is None:
                        outer._accept(task.ref or outer.ref)  # type: ignore[arg-type]
                        self._hedges_won += hedged
                        outer.attempts = tuple(attempts)
                        outer._resolve(future.result(), None)
                        continue
                    attempts.append(
                        Attempt(account=self._accounts[at].name, outcome=describe(error))
                    )
                    if running:
                        continue  # the other task may still win
                    if (
                        self._resubmit
                        and isinstance(error, GenerationFailedError)
                        and not isinstance(error, ContentPolicyError)
                        and any(i not in tried and not self._aside(i) for i in eligible)
                    ):
                        try:
                            again, where = await self._route(
                                request, key, eligible, tried, attempts
                            )
                        except NanoBananaError as exc:
                            error = exc
                        else:
                            self._resubmits += 1
                            outer._accept(again.ref)  # type: ignore[arg-type]
                            outer.attempts = tuple(attempts)
                            run(again, where, False)
                            hedge_at = self._hedge_at(where, request)
                            continue
                    if isinstance(error, NanoBananaError):
                        error.attempts = tuple(attempts)
                    outer._resolve(None, error)
        finally:
            self._outers.discard(outer)
