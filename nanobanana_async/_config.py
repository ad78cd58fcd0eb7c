"""Client configuration values: limits, retry policy, timeouts (no I/O)."""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from ._errors import ConfigurationError

DEFAULT_TASK_TIMEOUT: Final = 900.0
"""Seconds a task is tracked when neither the request nor the client sets a timeout."""


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{attribute.name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{attribute.name} must be a finite number, got {value!r}")
    if value < 0:
        raise ConfigurationError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class Limits:
    """An account's budget, shared by every client that uses the same provider and key.

    Args:
        requests: at most this many requests (submits, status checks, anything) in any sliding
            window of ``per`` seconds. Default 10,000.
        per: the window in seconds. Default 60.
        concurrent_tasks: at most this many tasks between submit and seen-finished. Default 1,000.
        safety_margin: the fraction of ``requests`` kept unused, because the server counts at
            arrival, a little after the send. Default 0.02.
    """

    requests: int = attrs.field(default=10_000, validator=_positive)
    per: float = attrs.field(default=60.0, validator=_positive)
    concurrent_tasks: int = attrs.field(default=1_000, validator=_positive)
    safety_margin: float = attrs.field(default=0.02, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.safety_margin >= 0.5:
            raise ConfigurationError("safety_margin must be below 0.5")
        counts: tuple[object, ...] = (self.requests, self.concurrent_tasks)
        if not all(isinstance(n, int) for n in counts):
            raise ConfigurationError("requests and concurrent_tasks must be whole numbers")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed calls are retried.

    The delay before retry ``n`` (0-based) is full jitter: ``U(0, min(max_delay, base_delay *
    2**n))``. Retries draw on a shared budget of ``budget`` tokens: a retry costs
    ``retry_cost`` (``timeout_retry_cost`` after a timeout) and each success returns one.

    Args:
        attempts: attempts per user-blocking call (submit), including the first. Default 3.
        base_delay: seconds. Default 0.5.
        max_delay: seconds. Default 8.
        max_retry_after: the longest Retry-After honoured on a submit, in seconds; a longer one
            raises ``RateLimitError``. Default 120.
        max_bad_responses: malformed status answers in a row before a task fails. Default 5.
        budget: the retry budget's size. Default 500.
        retry_cost: tokens one retry takes. Default 5.
        timeout_retry_cost: tokens one retry after a timeout takes. Default 10.
    """

    attempts: int = attrs.field(default=3, validator=_positive)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    max_bad_responses: int = attrs.field(default=5, validator=_positive)
    budget: int = attrs.field(default=500, validator=_non_negative)
    retry_cost: int = attrs.field(default=5, validator=_non_negative)
    timeout_retry_cost: int = attrs.field(default=10, validator=_non_negative)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Durations in seconds.

    Args:
        request: one HTTP request, connect to last byte. Default 30.
        connect: making the connection. Default 10.
        task: a task's total wait when the request sets none; None uses the provider's default
            (15 minutes).
        coordinator: the longest a request waits for an unreachable coordinator (Redis)
            before ``CoordinatorUnavailableError``. Default 30.
    """

    request: float = attrs.field(default=30.0, validator=_positive)
    connect: float = attrs.field(default=10.0, validator=_positive)
    task: float | None = attrs.field(default=None, validator=attrs.validators.optional(_positive))
    coordinator: float = attrs.field(default=30.0, validator=_positive)
