"""Pure retry decisions: jittered delays, Retry-After parsing and the retry budget (no I/O)."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping

from ._config import RetryPolicy


def delay(attempt: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Full-jitter backoff: ``random() * min(max_delay, base_delay * 2**attempt)``.

    Args:
        attempt: 0 for the first retry.
        policy: supplies base and cap.
        random: returns a float in [0, 1).
    """
    ceiling = min(policy.max_delay, math.ldexp(policy.base_delay, min(attempt, 60)))
    return random() * ceiling


def parse_retry_after(headers: Mapping[str, str], wall_now: float) -> float | None:
    """Read the provider's hint in seconds from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds or an HTTP-date (compared with ``wall_now``, unix seconds).
    Returns None when absent or unusable (negative, NaN, infinite, unparsable).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        value = _finite(raw_ms)
        if value is not None:
            return value / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    value = _finite(raw)
    if value is not None:
        return value
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - wall_now)


def _finite(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


class RetryBudget:
    """A token bucket that caps retries across all calls, as botocore's standard mode does.

    A retry takes ``retry_cost`` tokens (``timeout_retry_cost`` after a timeout); every success
    puts one back, up to the budget. With the bucket empty, retries stop until successes refill it,
    so a provider outage cannot multiply the load.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._capacity = policy.budget
        self.tokens = policy.budget
        self.retries = 0

    def try_spend(self, *, after_timeout: bool = False) -> bool:
        """Take the cost of one retry; False when the budget cannot pay for it."""
        cost = self._policy.timeout_retry_cost if after_timeout else self._policy.retry_cost
        if cost > self.tokens:
            return False
        self.tokens -= cost
        self.retries += 1
        return True

    def refund(self) -> None:
        """Return one token after a success."""
        self.tokens = min(self._capacity, self.tokens + 1)
