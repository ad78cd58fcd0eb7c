"""Jittered backoff, Retry-After parsing and the retry budget."""

from __future__ import annotations

import email.utils

import pytest

from nanobanana_async import RetryPolicy
from nanobanana_async._backoff import RetryBudget, delay, parse_retry_after


def test_delay_is_full_jitter_capped() -> None:
    """Delay is random() times min(max_delay, base * 2**attempt)."""
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    assert delay(0, policy, lambda: 1.0) == 0.5
    assert delay(3, policy, lambda: 1.0) == 4.0
    assert delay(10, policy, lambda: 1.0) == 8.0
    assert delay(10, policy, lambda: 0.25) == 2.0
    assert delay(10_000, policy, lambda: 0.0) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "2500"}, 2.5),
        ({"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Seconds and milliseconds are read; absurd values are ignored."""
    assert parse_retry_after(headers, 0.0) == expected


def test_parse_retry_after_http_date_uses_wall_clock() -> None:
    """An HTTP-date is measured from the given wall time, never from a global clock."""
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": header}, now + 3600) == 0.0


def test_retry_budget_runs_out_and_refills() -> None:
    """Retries stop when the budget is spent; successes give tokens back."""
    budget = RetryBudget(RetryPolicy(budget=20, retry_cost=5, timeout_retry_cost=10))
    assert budget.try_spend(after_timeout=True)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    for _ in range(5):
        budget.refund()
    assert budget.try_spend()
    assert budget.retries == 4
