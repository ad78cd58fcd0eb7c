"""What to do after a request failed, as pure functions: :func:`decide` for a create,
:func:`decide_check` for a status check.

RELIABILITY.md's rule for creates: a request that may have created a task is never sent again.
So only answers that prove nothing was created are retried (no connection, a 429, a refusal the
driver names retryable); every other failure after the send is an unknown outcome; the rest
raise. A status check creates nothing, so it is always safe to send again: what matters is
whether the failure is the account's, the task's, or passing.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .._backoff import delay
from .._config import RetryPolicy
from .._errors import (
    APIError,
    AuthenticationError,
    BadResponseError,
    ConnectError,
    InsufficientCreditsError,
    NanoBananaError,
    ProviderRefusedError,
    ProviderUnavailableError,
    RateLimitError,
    TransportError,
)


@attrs.frozen
class Retry:
    """Send again after ``after`` seconds (after a 429: the account's pause)."""

    after: float


@attrs.frozen
class OutcomeUnknown:
    """The create may have been accepted: never send it again; ``why`` says what happened."""

    why: str


@attrs.frozen
class Raise:
    """The error is final (a refusal, or no attempt or patience left): raise it as it is."""


Decision = Retry | OutcomeUnknown | Raise


def decide(
    error: NanoBananaError, attempt: int, policy: RetryPolicy, random: Callable[[], float]
) -> Decision:
    """The next step after attempt ``attempt`` (0-based) of a create failed with ``error``.

    ``Retry`` still needs the account's retry budget to pay for it; the caller asks.
    """
    last = attempt + 1 >= policy.attempts
    match error:
        case ConnectError():
            # Nothing reached the provider, so a retry cannot create a second task.
            return Raise() if last else Retry(delay(attempt, policy, random))
        case TransportError():
            return OutcomeUnknown(
                f"may have been accepted ({error}); not retried, to avoid paying twice"
            )
        case RateLimitError(retry_after=hint):
            if last or (hint is not None and hint > policy.max_retry_after):
                return Raise()
            # Retry-After 0 (or none) says nothing of when the window frees: back off, so a
            # storm of such answers is one bounded pause, not a resend per answer.
            after = delay(attempt, policy, random) if hint is None or hint <= 0 else hint
            return Retry(after)
        case ProviderRefusedError(retryable=retryable):
            # The driver names this answer as "not created" from its docs.
            if retryable and not last:
                return Retry(delay(attempt, policy, random))
            return Raise()
        case ProviderUnavailableError():
            return OutcomeUnknown(
                f"failed on the provider's side ({error}); it may have been accepted, so it is "
                "not retried"
            )
        case BadResponseError():
            return OutcomeUnknown(
                f"got an unreadable answer ({error}); it may have been accepted, so it is not "
                "retried"
            )
    return Raise()


@attrs.frozen
class PauseAccount:
    """A 429 on a check: the whole account cools down (``retry_after``: the provider's hint)."""

    retry_after: float | None


@attrs.frozen
class FailAccount:
    """The key or the credits were refused: every task of the account fails now."""


@attrs.frozen
class CheckLater:
    """Passing trouble: check again later (``after_timeout``: the retry costs more budget)."""

    after_timeout: bool


@attrs.frozen
class FailTask:
    """The task ends with this error."""


CheckDecision = PauseAccount | FailAccount | CheckLater | FailTask


def decide_check(error: NanoBananaError, bad_responses: int, policy: RetryPolicy) -> CheckDecision:
    """The next step after a status check failed with ``error``.

    ``bad_responses``: unreadable answers in a row for this task, this one included; after
    ``policy.max_bad_responses`` the task fails rather than be checked forever.
    """
    match error:
        case RateLimitError(retry_after=hint):
            return PauseAccount(hint)
        case AuthenticationError() | InsufficientCreditsError():
            return FailAccount()
        case BadResponseError():
            if bad_responses >= policy.max_bad_responses:
                return FailTask()
            return CheckLater(after_timeout=False)
        case TransportError() | ProviderUnavailableError():
            return CheckLater(after_timeout=isinstance(error, TimeoutError))
        case APIError():
            return FailTask()
    return FailTask()
