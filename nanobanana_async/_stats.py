"""ClientStatistics: a snapshot of an account's counters (pure)."""

from __future__ import annotations

import attrs

from ._config import Limits, RetryPolicy
from ._scheduler._account import Account


@attrs.frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of the account this client uses (shared with same-key clients).

    Attributes:
        pending: tasks submitted and not yet finished.
        in_flight: tasks that may be running on the provider (creates sent, not seen ended).
        peak_in_flight: the most ``in_flight`` ever.
        waiting: callers waiting for a slot.
        requests_in_window: requests sent in the last ``limits.per`` seconds.
        requests_sent: requests sent since the account was first used.
        rate_limited: 429 answers received.
        retries: retries made (submits and status checks).
        retry_tokens: what is left of the retry budget.
        mean_checks_per_task: status checks per tracked task.
        limits: the configured limits (the ceiling).
        effective_limits: the limits in force now: lower than ``limits`` after the account
            answered 429 to something the configured limits allowed, climbing back after a
            quiet period.
    """

    pending: int
    in_flight: int
    peak_in_flight: int
    waiting: int
    requests_in_window: int
    requests_sent: int
    rate_limited: int
    retries: int
    retry_tokens: int
    mean_checks_per_task: float
    limits: Limits
    effective_limits: Limits


def snapshot(account: Account | None, limits: Limits, retry: RetryPolicy) -> ClientStatistics:
    """The counters of ``account``; zeros (and the configured limits) before it exists."""
    if account is None:
        return ClientStatistics(
            pending=0,
            in_flight=0,
            peak_in_flight=0,
            waiting=0,
            requests_in_window=0,
            requests_sent=0,
            rate_limited=0,
            retries=0,
            retry_tokens=retry.budget,
            mean_checks_per_task=0.0,
            limits=limits,
            effective_limits=limits,
        )
    ledger = account.ledger
    return ClientStatistics(
        pending=len(account.entries),
        in_flight=ledger.slots.sent,
        peak_in_flight=ledger.slots.peak,
        waiting=ledger.slots.waiting,
        requests_in_window=ledger.requests_in_window(),
        requests_sent=ledger.requests,
        rate_limited=account.rate_limited,
        retries=account.budget.retries,
        retry_tokens=account.budget.tokens,
        mean_checks_per_task=account.checks / account.tracked if account.tracked else 0.0,
        limits=ledger.configured,
        effective_limits=ledger.effective,
    )
