"""decide(): the submit pipeline's retry rules, on bare values (no I/O, no clock)."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler._decide import (
    CheckLater,
    FailAccount,
    FailTask,
    OutcomeUnknown,
    PauseAccount,
    Raise,
    Retry,
    decide,
    decide_check,
)

POLICY = nb.RetryPolicy(attempts=3, base_delay=1.0, max_delay=8.0, max_retry_after=60.0)


def half() -> float:
    return 0.5


def api(cls: type[nb.APIError], **kwargs: object) -> nb.APIError:
    return cls("no", provider="crun", status=200, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "attempt", "expected"),
    [
        # Nothing reached the provider: retried with full-jitter backoff, then raised.
        (nb.ConnectError("refused"), 0, Retry(0.5)),
        (nb.ConnectError("refused"), 1, Retry(1.0)),
        (nb.ConnectError("refused"), 2, Raise()),
        # A 429 waits the provider's hint, or the backoff without one; too long a hint raises.
        (api(nb.RateLimitError, retry_after=7.0), 0, Retry(7.0)),
        (api(nb.RateLimitError), 1, Retry(1.0)),
        (api(nb.RateLimitError, retry_after=61.0), 0, Raise()),
        (api(nb.RateLimitError, retry_after=1.0), 2, Raise()),
        # A refusal the driver names retryable (crun 455) is retried; a final one is raised.
        (api(nb.ProviderRefusedError, retryable=True), 0, Retry(0.5)),
        (api(nb.ProviderRefusedError, retryable=False), 0, Raise()),
        (api(nb.ProviderRefusedError, retryable=True), 2, Raise()),
        # Refusals that no retry can change.
        (api(nb.AuthenticationError), 0, Raise()),
        (api(nb.InsufficientCreditsError), 0, Raise()),
    ],
)
def test_only_answers_that_prove_nothing_was_created_are_retried(
    error: nb.NanoBananaError, attempt: int, expected: object
) -> None:
    assert decide(error, attempt, POLICY, half) == expected


@pytest.mark.parametrize(
    "error",
    [
        nb.RequestTimeoutError("read timed out"),
        nb.TransportError("connection reset"),
        api(nb.ProviderUnavailableError),
        api(nb.BadResponseError),
    ],
)
def test_a_send_that_may_have_created_a_task_is_never_retried(error: nb.NanoBananaError) -> None:
    """After the request left, a timeout, a reset, a 5xx or an unreadable answer may hide an
    accepted task: the outcome is unknown, on the first attempt as on the last."""
    for attempt in range(POLICY.attempts):
        decision = decide(error, attempt, POLICY, half)
        assert isinstance(decision, OutcomeUnknown)
        assert str(error) in decision.why


@pytest.mark.parametrize(
    ("error", "bad_responses", "expected"),
    [
        (api(nb.RateLimitError, retry_after=3.0), 0, PauseAccount(3.0)),
        (api(nb.RateLimitError), 0, PauseAccount(None)),
        (api(nb.AuthenticationError), 0, FailAccount()),
        (api(nb.InsufficientCreditsError), 0, FailAccount()),
        (nb.RequestTimeoutError("slow"), 0, CheckLater(after_timeout=True)),
        (nb.ConnectError("refused"), 0, CheckLater(after_timeout=False)),
        (api(nb.ProviderUnavailableError), 0, CheckLater(after_timeout=False)),
        # Unreadable answers are retried until the policy's cap, then end the task.
        (api(nb.BadResponseError), POLICY.max_bad_responses - 1, CheckLater(after_timeout=False)),
        (api(nb.BadResponseError), POLICY.max_bad_responses, FailTask()),
        (api(nb.RequestRejectedError), 0, FailTask()),
        (api(nb.APIError), 0, FailTask()),
    ],
)
def test_a_failed_check_is_the_accounts_the_tasks_or_passing(
    error: nb.NanoBananaError, bad_responses: int, expected: object
) -> None:
    """A check creates nothing, so it is always safe to repeat: the question is whose failure
    it is (the account's 429 or key, the task's refusal) or whether it passes."""
    assert decide_check(error, bad_responses, POLICY) == expected
