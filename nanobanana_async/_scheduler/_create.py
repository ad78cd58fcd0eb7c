"""One create request and its retries, under the account's window and task cap (does I/O).

What to do after a failed attempt is :func:`decide`'s; this module only performs it: wait out a
429 on the shared account, back off after a refusal, never resend what may have been accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from .._clock import Clock
from .._errors import (
    APIError,
    ClientClosedError,
    ConfigurationError,
    NanoBananaError,
    RateLimitError,
    StorageError,
    SubmitOutcomeUnknownError,
)
from .._journal import Intent
from .._models import ImageRequest, TaskRef
from ..events import (
    Accepted,
    RateLimited,
    Refused,
    Retrying,
    Submitted,
    _cause,
    _unknown_without_prompt,
)
from ..events import OutcomeUnknown as OutcomeUnknownEvent
from ._account import Connection
from ._decide import OutcomeUnknown, Raise, decide
from ._ledger import Lease


class NotWantedError(ClientClosedError):
    """A create its caller no longer wanted when it was due to be sent; nothing was sent."""


async def create(
    conn: Connection,
    clock: Clock,
    request: ImageRequest,
    lease: Lease,
    *,
    intent: Intent | None,
    closed: Callable[[], bool],
    retry_refusals: bool = True,
    key: str | None = None,
    wanted: Callable[[], bool] | None = None,
) -> TaskRef:
    """Send the create for ``request`` (its slot ``lease`` is held) until it is accepted.

    ``retry_refusals=False`` (a Router with another account to try): an answer that proves
    nothing was created (no connection, a 429, a retryable refusal) is raised at once, after
    the account's 429 pause is noted, instead of being retried here. ``key`` (the caller's)
    goes on the events.

    ``wanted`` (a Router's hedge) is asked right before each send: False means nobody needs
    the task any more, and nothing is sent (:class:`NotWantedError`).

    Raises:
        NotWantedError: ``wanted`` said no before the create was sent.
        SubmitOutcomeUnknownError: the create may have been accepted; it is not sent again.
        ClientClosedError: the client closed before the create was sent.
        APIError, ConnectError: refused, or never sent, once retries are spent.
    """
    account, policy, driver = conn.account, conn.policy, conn.driver
    ledger, emitter = account.ledger, conn.emitter
    http = driver.build_submit(request)
    for attempt in range(policy.attempts):
        if ledger.admit_first:
            await ledger.slots.admit(lease)
            await ledger.acquire_request(lease)
        else:
            await ledger.acquire_request(lease)
            if not ledger.slots.try_admit(lease) and not await ledger.slots.admit(lease):
                # More creates were out than the (effective) cap: it waited for a task to
                # end, so its turn in the window has passed; take a fresh one.
                await ledger.acquire_request()
        granted = clock.now()
        if closed():
            raise ClientClosedError("the client closed before this submit was sent")
        if intent is not None:
            # Written right before each send, never before a wait: a kill while waiting
            # leaves no intent, so the rerun submits instead of reporting an unknown outcome.
            await _journaled(intent.write, intent)
        # A slow write may have outlived the turn in a shared window, or a 429 come back
        # since the turn: a fresh one is taken then (a kill in that wait is reported of
        # unknown outcome: never paid twice).
        await ledger.refresh_request(granted)
        if wanted is not None and not wanted():
            # Asked after the last wait, with no await before the send: a hedge whose first
            # task won meanwhile is never created (it would be paid for nothing).
            raise NotWantedError("not sent: the task is no longer wanted")
        ledger.note_send()
        if emitter.active:
            emitter.emit(
                Submitted(
                    provider=driver.name,
                    at=clock.now(),
                    key=key,
                    account=emitter.account,
                    attempt=attempt + 1,
                    model=str(request.model),
                    resolution=request.resolution,
                )
            )
        try:
            response = await conn.transport.send(http, timeout=conn.timeouts.request)
            ref = driver.parse_submit(response, request)
        except NanoBananaError as exc:
            if isinstance(exc, RateLimitError):
                account.rate_limited += 1
            decision = decide(exc, attempt, policy, conn.random)
            if isinstance(decision, OutcomeUnknown):
                unknown = SubmitOutcomeUnknownError(
                    f"submit to {driver.name} {decision.why}",
                    provider=driver.name,
                    request=request,
                )
                if emitter.active:
                    emitter.emit(
                        OutcomeUnknownEvent(
                            provider=driver.name,
                            at=clock.now(),
                            key=key,
                            account=emitter.account,
                            error=_unknown_without_prompt(unknown),
                        )
                    )
                raise unknown from exc
            will_retry = not isinstance(decision, Raise) and retry_refusals
            if will_retry and not account.budget.try_spend():
                will_retry = False
            if emitter.active:
                emitter.emit(
                    Refused(
                        provider=driver.name,
                        at=clock.now(),
                        key=key,
                        account=emitter.account,
                        attempt=attempt + 1,
                        error=exc,
                        status=exc.status if isinstance(exc, APIError) else None,
                        will_retry=will_retry,
                    )
                )
            if isinstance(decision, Raise):
                if isinstance(exc, RateLimitError) and account.events.active:
                    # Not learned from (its Retry-After is past patience): scope not known.
                    account.events.emit(_limited(driver.name, clock, "unknown", exc))
                raise
            if not retry_refusals:
                # The router sends it elsewhere now; a 429 still pauses this account for
                # the creates that stay with it.
                if isinstance(exc, RateLimitError):
                    ledger.slots.refused(lease)
                    about_cap = ledger.rate_limited(
                        retry_after=exc.retry_after, creating=True, lease=lease
                    )
                    if account.events.active:
                        account.events.emit(
                            _limited(driver.name, clock, "tasks" if about_cap else "window", exc)
                        )
                    if not about_cap:
                        ledger.pause(decision.after)
                raise
            if not will_retry:  # the retry budget is spent
                raise
            # Refused or never sent, so not created: clear the intent before the wait.
            if intent is not None:
                await _journaled(intent.clear, intent)
            cap_reached = False
            if isinstance(exc, RateLimitError):
                cap_reached = ledger.rate_limited(
                    retry_after=exc.retry_after, creating=True, lease=lease
                )
                if account.events.active:
                    account.events.emit(
                        _limited(driver.name, clock, "tasks" if cap_reached else "window", exc)
                    )
            if emitter.active:
                emitter.emit(
                    Retrying(
                        provider=driver.name,
                        at=clock.now(),
                        key=key,
                        account=emitter.account,
                        operation="create",
                        cause=_cause(exc),
                        # At the task cap it waits for a task to end: no delay is known.
                        delay=0.0 if cap_reached else decision.after,
                        attempt=attempt + 2,
                    )
                )
            if isinstance(exc, RateLimitError) and not cap_reached:
                # A 429 cools down the shared account; acquire_request() waits it out. Paused
                # before the hand-back below: that is a round trip to a shared ledger, and the
                # checks sent meanwhile met the same full window (one 429 each).
                ledger.pause(decision.after)
            if cap_reached and lease.sent and ledger.slots.sent <= ledger.slots.cap:
                # Refused at the cap while our count has room (another process's tasks, or
                # a cap learned one too high): the slot is taken at the provider. Handed back
                # now, it would admit the next create at once, refused in turn, for the whole
                # episode. Held until one of our tasks ends and no other create took its
                # slot, or the backoff at the latest (F45).
                await ledger.slots.freed(clock.now() + decision.after)
            # Handed back before the retry asks again, in every backend (F45): a shared
            # ledger that still held it would admit the retry on its own stale admission.
            await ledger.slots.refuse(lease)
            if isinstance(exc, RateLimitError):
                # At the task cap it waits for a task to end, not for the window.
                continue
            await clock.sleep_until(clock.now() + decision.after)
            continue
        account.budget.refund()
        ledger.note_accepted(lease)
        if emitter.active:
            emitter.emit(
                Accepted(
                    provider=driver.name,
                    at=clock.now(),
                    task_id=ref.task_id,
                    key=key,
                    account=emitter.account,
                    attempt=attempt + 1,
                )
            )
        return ref
    raise AssertionError("unreachable: the last attempt returns or raises")


def _limited(
    provider: str, clock: Clock, scope: Literal["window", "tasks", "unknown"], exc: RateLimitError
) -> RateLimited:
    return RateLimited(
        provider=provider,
        at=clock.now(),
        scope=scope,
        retry_after=exc.retry_after,
        operation="create",
    )


async def _journaled(write: Callable[[], Awaitable[None]], intent: Intent) -> None:
    """Run a journal write made while no task exists; a failure (a full disk) stops the
    submit before anything more is sent.

    Raises:
        StorageError: the journal could not be written; no task was created.
        ConfigurationError: the journal could not be opened (in use, not a journal).
    """
    try:
        await write()
    except ConfigurationError:
        raise
    except Exception as exc:
        # sqlite3.OperationalError ("database or disk is full"), OSError: typed, and said
        # to be harmless, since the create it guards was not sent.
        raise StorageError(
            f"the journal {intent.path} could not be written ({type(exc).__name__}: {exc}): "
            "no task was created for this request",
            task_id=None,
            path=str(intent.path),
        ) from None
