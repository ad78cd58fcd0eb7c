"""A Router's dispatcher: which eligible account a create goes to, moving on only after an
answer that proves nothing was created, and each account's circuit breaker (I/O through the
clients; the decisions are ``_routing``'s and ``_breaker``'s)."""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Final, Literal

import attrs

from ._breaker import Breaker, Circuit
from ._client import Client
from ._errors import (
    ClientClosedError,
    GenerationFailedError,
    InvalidRequestError,
    NanoBananaError,
    ProviderUnavailableError,
    SubmitOutcomeUnknownError,
)
from ._models import ImageRequest, ImageResult
from ._redact import key_fingerprint
from ._routing import (
    Attempt,
    Outlook,
    Weights,
    describe,
    failover_reason,
    is_fault,
    rank,
    sets_aside,
)
from ._scheduler._latency import LatencyModel
from ._scheduler._redis_store import account_prefix, connect
from ._shared_circuit import SharedCircuit
from ._task import Task
from .events import AccountChosen, CircuitChanged, FailedOver, HedgeSent, _Emitter

_CIRCUIT_STATES: Final[dict[Circuit, Literal["open", "half_open", "closed"]]] = {
    Circuit.OPEN: "open",
    Circuit.HALF_OPEN: "half_open",
    Circuit.CLOSED: "closed",
}

_log = logging.getLogger("nanobanana_async")
# The log record attribute (``extra=``) of the WARNING that an account is set aside: its
# name. A handler drops or routes that line by it, not by its wording.
SET_ASIDE: Final = "nanobanana_set_aside"


@attrs.define(eq=False)
class Account:
    """One client in a router, with its circuit and counters."""

    client: Client
    name: str
    breaker: Breaker
    set_aside: NanoBananaError | None = None
    accepted: int = 0
    failovers: int = 0
    routing: int = 0  # submits handed to the client and not yet answered
    shared: SharedCircuit | None = None  # the circuit as every process sees it (coordinator)


def shared_circuit(client: Client) -> SharedCircuit | None:
    """The account's circuit shared through the client's coordinator, None without one."""
    settings = client._settings
    if settings.coordinator is None:
        return None
    key = settings.key.reveal() if settings.key is not None else None
    prefix = account_prefix(settings.driver.name, settings.base_url, key)
    return SharedCircuit(connect(settings.coordinator), prefix, settings.clock)


def account_name(client: Client) -> str:
    """``provider:fingerprint``: stable across runs, and never the key itself."""
    key = client._settings.key
    return f"{client.provider}:{key_fingerprint(key.reveal() if key is not None else None)}"


class Dispatcher:
    """Sends one request to one account after another, as the strategy ranks them.

    Args:
        accounts: in the order the caller gave them.
        on_unknown: ``"raise"`` or ``"failover"`` (see ``Router``).
    """

    def __init__(
        self,
        accounts: list[Account],
        *,
        strategy: str,
        weights: Weights,
        on_unknown: str,
        events: _Emitter | None = None,
    ) -> None:
        self.accounts = accounts
        self.events = events if events is not None else _Emitter()
        # Each circuit's state as the last ``circuit`` event told it.
        self._told = [Circuit.CLOSED] * len(accounts)
        self.clock = accounts[0].client._settings.clock
        self._strategy = strategy
        self._weights = weights
        self._on_unknown = on_unknown
        self._changed: asyncio.Event | None = None
        self._sharing: set[asyncio.Future[None]] = set()
        self._closed = False
        self._unshared = False  # the shared circuits' connections are closed
        self.accepted = 0  # creates accepted, hedges not included
        self.failovers = 0

    def eligible(self, request: ImageRequest) -> list[int]:
        """The accounts whose provider accepts ``request``.

        Raises:
            InvalidRequestError: none does; each account's reasons, prefixed with its name.
        """
        eligible: list[int] = []
        problems: list[str] = []
        for index, account in enumerate(self.accounts):
            try:
                account.client.validate(request)
            except InvalidRequestError as exc:
                problems.extend(f"{account.name}: {line}" for line in exc.errors)
            else:
                eligible.append(index)
        if not eligible:
            raise InvalidRequestError(problems)
        return eligible

    async def holder(
        self, request: ImageRequest, key: str | None, eligible: Sequence[int]
    ) -> int | None:
        """The account whose journal already holds this request (its key, or its default key
        there), None when none does: a rerun goes back to it and pays nowhere else."""
        for index in eligible:
            if await self.accounts[index].client._journal_holds(request, key):
                return index
        return None

    def open_to(self, eligible: Sequence[int], tried: set[int]) -> bool:
        """Whether an eligible account is neither tried nor set aside."""
        return any(i not in tried and self.accounts[i].set_aside is None for i in eligible)

    async def route(
        self,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
        *,
        hedge: bool = False,
        wanted: Callable[[], bool] | None = None,
        held: bool = False,
    ) -> tuple[Task, int]:
        """Submit ``request`` on the best untried account, moving on after refusals; returns
        the accepted task and its account. ``tried`` and ``attempts`` grow as it goes.
        ``wanted``: asked right before each create is sent (see ``Client._routed_submit``).
        ``held``: the one eligible account's journal holds the request (see ``holder``).

        Raises:
            the error that ended it, with ``attempts`` (see ``Router.submit``).
        """
        # A hedge never waits for a circuit: the first task is running meanwhile.
        timeout = request.timeout or self.accounts[eligible[0]].client._settings.task_timeout
        deadline = -math.inf if hedge else self.clock.now() + timeout
        last: NanoBananaError | None = None
        left: Account | None = None  # the account the last refusal moved the request off
        while True:
            try:
                if held:
                    # Its journal answers (the task to re-attach, or an earlier submit of
                    # unknown outcome); no create is sent, so the circuit, which guards
                    # creates, is neither waited for nor spent as a probe.
                    index, probe = eligible[0], False
                else:
                    index, probe = await self._choose(
                        request, eligible, tried, deadline, last, attempts
                    )
            except NanoBananaError:
                if left is not None and self.events.active:
                    self._failed_over(left, None, last, key)
                raise
            account = self.accounts[index]
            if self.events.active:
                self._chosen(account, left, last, key)
            account.routing += 1
            # With another account ready to take it, a refusal that proves nothing was created
            # moves the prompt on at once: the client's own retries would only add refusals.
            retry_refusals = not self._alternative(eligible, tried, index)
            gate = self._hedge_gate(account, key, wanted) if hedge else wanted
            try:
                task = await account.client._routed_submit(
                    request, key, retry_refusals=retry_refusals, wanted=gate
                )
            except NanoBananaError as exc:
                if held:
                    # Raised from the journal, nothing sent: it tells nothing of the account's
                    # health now (a killed run's unknown submits opened the circuit here, and
                    # the account's other held prompts waited out its cooldown), and there is
                    # no other account to move to.
                    raise self._final(exc, account, attempts)  # noqa: B904 (it chains itself)
                before = account.breaker.state
                self._record(account, exc, probe=probe)
                if self.events.active:
                    self._circuits()
                await self._share(account, before, probe=probe)
                reason = failover_reason(exc, on_unknown=self._on_unknown)
                if reason is None:
                    raise self._final(exc, account, attempts)  # noqa: B904 (it chains itself)
                account.failovers += 1
                self.failovers += 1
                attempts.append(Attempt(account=account.name, outcome=f"{reason}: {exc}"))
                tried.add(index)
                last, left = exc, account
                continue
            except BaseException:
                if probe:
                    account.breaker.released()
                    self._notify()
                    self._share_soon(account)
                raise
            finally:
                account.routing -= 1
            if probe:
                # An accepted probe closes the circuit; other creates count when their task
                # ends, so that tasks failing to generate can open it.
                account.breaker.succeeded(self.clock.now())
                self._notify()
                if self.events.active:
                    self._circuits()
                # Not awaited: nothing may stand between an accepted task and its caller.
                self._share_soon(account)
            account.accepted += 1
            self.accepted += 0 if hedge else 1
            tried.add(index)
            outcome = "accepted (hedge)" if hedge else "accepted"
            attempts.append(Attempt(account=account.name, outcome=outcome))
            return task, index

    def _chosen(
        self,
        account: Account,
        left: Account | None,
        last: NanoBananaError | None,
        key: str | None,
    ) -> None:
        # The circuit moves a choice made (a half-open probe, another process's state).
        self._circuits()
        if left is not None:
            self._failed_over(left, account, last, key)
        at, events = self.clock.now(), self.events
        provider = account.client.provider
        events.emit(
            AccountChosen(
                provider=provider, at=at, key=key, account=account.name, strategy=self._strategy
            )
        )

    def _hedge_gate(
        self, account: Account, key: str | None, wanted: Callable[[], bool] | None
    ) -> Callable[[], bool]:
        # A hedge is "sent" when its create goes out, not when its account is chosen: one that
        # waited for a slot until the first task won is never sent, and no event says it was.
        told = False

        def gate() -> bool:
            nonlocal told
            if wanted is not None and not wanted():
                return False
            if not told and self.events.active:
                told = True
                self.events.emit(
                    HedgeSent(
                        provider=account.client.provider,
                        at=self.clock.now(),
                        key=key,
                        account=account.name,
                    )
                )
            return True

        return gate

    def _failed_over(
        self, left: Account, to: Account | None, error: BaseException | None, key: str | None
    ) -> None:
        self.events.emit(
            FailedOver(
                provider=left.client.provider,
                at=self.clock.now(),
                key=key,
                account=left.name,
                to_account=to.name if to is not None else None,
                reason=type(error).__name__,
            )
        )

    def _circuits(self) -> None:
        # Every circuit that moved since the last look: few accounts, looked at only while
        # something listens.
        for index, account in enumerate(self.accounts):
            state = account.breaker.state
            if state is not self._told[index]:
                self._told[index] = state
                self.events.emit(
                    CircuitChanged(
                        provider=account.client.provider,
                        at=self.clock.now(),
                        account=account.name,
                        state=_CIRCUIT_STATES[state],
                    )
                )

    def _alternative(self, eligible: Sequence[int], tried: set[int], index: int) -> bool:
        # Another untried account, not set aside, whose circuit lets a create go now.
        now = self.clock.now()
        return any(
            i != index
            and i not in tried
            and self.accounts[i].set_aside is None
            and self.accounts[i].breaker.ready_at(now) <= now
            for i in eligible
        )

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
        accounts = self.accounts
        while True:
            if self._closed:
                # Nothing was sent for this request: a create after the close would be paid
                # for a caller the router no longer answers.
                closed = ClientClosedError("the router closed before this request was sent")
                closed.attempts = tuple(attempts)
                raise closed
            candidates = [i for i in eligible if i not in tried and accounts[i].set_aside is None]
            if not candidates:
                aside = [accounts[i].set_aside for i in eligible if accounts[i].set_aside]
                error = last or (copy.copy(aside[0]) if aside else None)
                if error is None:
                    # Every eligible account already holds this prompt (a hedge or resubmit).
                    error = ProviderUnavailableError(
                        "no other account can take this request",
                        provider=",".join(sorted({accounts[i].client.provider for i in eligible})),
                        status=503,
                        code="no_account_left",
                    )
                error.attempts = tuple(attempts)
                raise error
            for i in candidates:
                shared = accounts[i].shared
                if shared is not None:
                    await shared.adopt(accounts[i].breaker)
            now = self.clock.now()
            ready = [i for i in candidates if accounts[i].breaker.ready_at(now) <= now]
            outlooks = {i: self._outlook(accounts[i], request) for i in ready}
            for index in rank(self._strategy, ready, outlooks, self._weights):
                breaker, shared = accounts[index].breaker, accounts[index].shared
                if not breaker.allow(now):
                    continue
                probe = breaker.state is Circuit.HALF_OPEN
                if probe and shared is not None:
                    try:
                        claimed = await shared.claim_probe()
                    except BaseException:
                        # Cancelled while asking: the probe is free for this process's next
                        # caller. The shared claim, if it was taken, lapses after its TTL (it
                        # may be another process's: deleting it could let two probes go).
                        breaker.released()
                        self._notify()
                        raise
                    if not claimed:
                        # Another process sends the probe: look again in a moment.
                        breaker.released()
                        breaker.hold_open(now + 1.0, breaker.cooldown, now)
                        continue
                return index, probe
            times = [accounts[i].breaker.ready_at(now) for i in candidates]
            earliest = min(times)
            # A probe out may close its circuit at any moment: wait for it, to the deadline.
            if now >= deadline or (earliest > deadline and math.inf not in times):
                names = ", ".join(accounts[i].name for i in candidates)
                error = ProviderUnavailableError(
                    f"the circuit of every eligible account is open ({names}) past the "
                    "request's timeout",
                    provider=",".join(sorted({accounts[i].client.provider for i in candidates})),
                    status=503,
                    code="circuit_open",
                )
                error.attempts = tuple(attempts)
                raise error
            await self._breakers_change(min(earliest, deadline))

    def latency_model(self, index: int, request: ImageRequest) -> LatencyModel | None:
        """The model's learned latency on account ``index``, None before it is learned."""
        return self.accounts[index].client._learned_latency(request)

    def _outlook(self, account: Account, request: ImageRequest) -> Outlook:
        # Read through the client's statistics and its scheduler: the router keeps no second
        # copy of an account's state.
        client = account.client
        stats = client.statistics()
        model = client._learned_latency(request)
        return Outlook(
            busy=max(stats.in_flight + stats.waiting, stats.pending + account.routing),
            cap=stats.effective_limits.concurrent_tasks,
            request_wait=client._request_wait(),
            latency=model.median if model is not None else client._settings.driver.first_poll,
        )

    def _record(self, account: Account, error: NanoBananaError, *, probe: bool) -> None:
        if is_fault(error):
            account.breaker.failed(self.clock.now())
        elif probe:
            account.breaker.released()
        if sets_aside(error) and account.set_aside is None:
            account.set_aside = error
            _log.warning(
                "%s refused (%s): account %s is set aside for the rest of the run",
                account.client.provider,
                type(error).__name__,
                account.name,
                extra={SET_ASIDE: account.name},
            )
        self._notify()

    def _final(
        self, error: NanoBananaError, account: Account, attempts: list[Attempt]
    ) -> NanoBananaError:
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

    async def _share(self, account: Account, before: Circuit, *, probe: bool) -> None:
        # Other processes see the circuit open or close, and a probe end, at once.
        if self._unshared or account.shared is None:
            return
        if probe or account.breaker.state is not before:
            await account.shared.publish(account.breaker)

    def _share_soon(self, account: Account) -> None:
        # From a done callback or a cancelled caller: published by a task of its own. Not
        # after the close: tasks the clients still track end later, and a write then would
        # reopen the closed connection (a job left pending past the loop's end).
        if account.shared is not None and not self._unshared:
            job = asyncio.ensure_future(account.shared.publish(account.breaker))
            self._sharing.add(job)
            job.add_done_callback(self._sharing.discard)

    def close(self) -> None:
        """Send no more creates: callers waiting for a circuit get ``ClientClosedError`` now."""
        self._closed = True
        self._notify()

    async def aclose(self) -> None:
        """Finish publishing and close the shared circuits' connections."""
        if self._sharing:
            await asyncio.wait(list(self._sharing))
        self._unshared = True
        for account in self.accounts:
            if account.shared is not None:
                await account.shared.aclose()

    def _notify(self) -> None:
        # Wakes callers waiting for a circuit to half-open (a probe ended, a state moved).
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _breakers_change(self, until: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    def watch(self, task: Task, index: int) -> None:
        """Count ``task``'s end on its account's circuit (a success, or a failure to generate)
        and put the attempts on its error."""
        account = self.accounts[index]
        breaker = account.breaker

        # Runs before the task's awaiters resume (done callbacks come first).
        def ended(future: asyncio.Future[ImageResult]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if isinstance(error, NanoBananaError) and not error.attempts:
                error.attempts = task.attempts
            before = breaker.state
            if error is None:
                breaker.succeeded(self.clock.now())
            elif isinstance(error, GenerationFailedError) and is_fault(error):
                breaker.failed(self.clock.now())
            else:
                return
            self._notify()
            if breaker.state is not before:
                if self.events.active:
                    self._circuits()
                self._share_soon(account)

        task._future.add_done_callback(ended)
