"""What a Router decides, as plain values and functions (pure, no I/O): which failures move a
prompt to another account, which count against an account's circuit, and in what order the
accounts are tried under each strategy.
"""

from __future__ import annotations

import statistics as _statistics
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import attrs

from ._config import Limits
from ._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ContentPolicyError,
    GenerationFailedError,
    InsufficientCreditsError,
    ProviderRefusedError,
    ProviderUnavailableError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from ._stats import ClientStatistics

Strategy = Literal["soonest", "priority", "weighted"]
STRATEGIES: Final = ("soonest", "priority", "weighted")


@attrs.frozen(kw_only=True)
class Attempt:
    """One account a Router sent (or tried to send) a request to.

    Attributes:
        account: the account, as ``provider:fingerprint`` (never the key).
        outcome: what happened there: ``"accepted"``, or why the router moved on.
    """

    account: str
    outcome: str


def _share(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigurationError(
            f"{attribute.name} must be between 0 and 1 (exclusive), got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Hedge:
    """Opt-in hedging for a :class:`Router`: a task still running past a quantile of its
    account's learned latency gets a second submit on another account; the first result wins.

    Both tasks are paid for. The loser is tracked to its end and counted in
    ``Router.statistics()``. Nothing is hedged before the account has learned the model's
    latency (a few finished tasks), or beyond ``max_share`` of the router's accepted submits.

    Args:
        after_quantile: the quantile of the account's learned latency after which a task is
            hedged. Default 0.99.
        max_share: at most this share of accepted submits get a hedge. Default 0.05.
    """

    after_quantile: float = attrs.field(default=0.99, validator=_share)
    max_share: float = attrs.field(default=0.05, validator=_share)

    @property
    def z(self) -> float:
        """The standard-normal score of ``after_quantile``."""
        return _statistics.NormalDist().inv_cdf(self.after_quantile)

    def allows(self, hedges: int, submits: int) -> bool:
        """Whether one more hedge keeps hedges within ``max_share`` of ``submits``."""
        return hedges + 1 <= self.max_share * submits


def failover_reason(error: BaseException, *, on_unknown: str) -> str | None:
    """Why ``error`` from a create lets the prompt move to another account, or None.

    Only answers that prove no task was created qualify: nothing sent, a 429, the key or the
    credits refused, a refusal the driver documents as "not created" (crun's 455). An unknown
    outcome qualifies only with ``on_unknown="failover"`` (the user accepts paying twice).
    """
    match error:
        case ConnectError():
            return "no connection"
        case RateLimitError():
            return "rate limited (429)"
        case AuthenticationError():
            return "key refused"
        case InsufficientCreditsError():
            return "out of credits"
        case ProviderRefusedError():
            return f"refused before acceptance (HTTP {error.status}, code {error.code})"
        case SubmitOutcomeUnknownError() if on_unknown == "failover":
            return "outcome unknown (may be paid twice: on_unknown='failover')"
    return None


def is_fault(error: BaseException) -> bool | None:
    """Whether ``error`` is the provider's fault (True) or says nothing of it (None).

    Faults: no connection, 5xx and maintenance, an unknown create outcome (a reset, a timeout,
    a 5xx after sending), a task that failed to generate. Never a 429, a refused key, prompt
    or content.
    """
    match error:
        case ContentPolicyError():
            return None
        case GenerationFailedError() | ProviderUnavailableError() | TransportError():
            return True
    return None


def sets_aside(error: BaseException) -> bool:
    """Whether ``error`` takes its account out of the router for the rest of the run (401/402:
    every later create there would be refused the same way)."""
    return isinstance(error, AuthenticationError | InsufficientCreditsError)


@attrs.frozen(kw_only=True)
class Outlook:
    """What one account's scheduler knows about a new create there.

    Attributes:
        busy: tasks running on the account or waiting for one of its slots.
        cap: the account's effective concurrent-task cap.
        request_wait: seconds until the account's request window has a request free.
        latency: the model's learned median task duration there (the provider's advice before
            anything is learned).
    """

    busy: int
    cap: int
    request_wait: float
    latency: float

    @property
    def saturated(self) -> bool:
        """Every slot is taken: a new create waits for a task to end."""
        return self.busy >= self.cap

    def expected(self) -> float:
        """Seconds until a task submitted now is expected to finish: the wait for a slot (the
        queue ahead drains ``cap`` tasks per ``latency``) or for a request, then the latency."""
        queue = max(0, self.busy - self.cap + 1)
        slot_wait = queue / self.cap * self.latency
        return max(slot_wait, self.request_wait) + self.latency


class Weights:
    """Smooth weighted round robin: over any run of picks, each account's share follows its
    weight as closely as whole picks allow, with no randomness."""

    def __init__(self, weights: Sequence[float]) -> None:
        self._weights = list(weights)
        self._current = [0.0] * len(weights)

    def pick(self, candidates: Sequence[int]) -> int:
        """The candidate (an index into the weights) whose turn it is."""
        total = 0.0
        for i in candidates:
            self._current[i] += self._weights[i]
            total += self._weights[i]
        best = max(candidates, key=lambda i: (self._current[i], -i))
        self._current[best] -= total
        return best


def rank(
    strategy: str,
    candidates: Sequence[int],
    outlooks: Mapping[int, Outlook],
    weights: Weights | None = None,
) -> list[int]:
    """``candidates`` (account indexes, in the given order) in the order to try them.

    ``soonest``: by expected finish, ties in the given order. ``priority``: the given order,
    saturated accounts after the others. ``weighted``: the one whose turn it is by weight, then
    the rest soonest first.
    """
    soonest = sorted(candidates, key=lambda i: (outlooks[i].expected(), candidates.index(i)))
    if strategy == "priority":
        return sorted(candidates, key=lambda i: (outlooks[i].saturated, candidates.index(i)))
    if strategy == "weighted" and weights is not None and candidates:
        first = weights.pick(candidates)
        return [first, *(i for i in soonest if i != first)]
    return soonest


@attrs.frozen(kw_only=True)
class AccountStatistics:
    """One account of a router.

    Attributes:
        account: ``provider:fingerprint``.
        circuit: ``closed``, ``open`` or ``half-open``.
        set_aside: why the account was taken out for the run (its key or credits were
            refused), else None.
        accepted: creates the account accepted for this router.
        failovers: prompts that moved on from this account (nothing was created there).
        client: the account's own counters.
    """

    account: str
    circuit: str
    set_aside: str | None
    accepted: int
    failovers: int
    client: ClientStatistics


@attrs.frozen(kw_only=True)
class RouterStatistics(ClientStatistics):
    """A router's counters: the accounts' counters added up, and the router's own.

    ``limits`` and ``effective_limits`` add up the accounts' limits, with the request rates
    scaled to the first account's window.

    Attributes:
        accounts: each account's counters, in the order the clients were given.
        failovers: prompts moved to another account after a refusal.
        resubmits: failed tasks submitted again elsewhere (``resubmit_failed=True``).
        hedges: second submits made by hedging (each one paid), with those of unknown outcome
            (they may have been).
        hedges_won: hedges that finished first.
        hedge_losers_ended: tasks that lost a hedge race and were then seen to end.
    """

    accounts: tuple[AccountStatistics, ...]
    failovers: int
    resubmits: int
    hedges: int
    hedges_won: int
    hedge_losers_ended: int


def _added(limits: Sequence[Limits]) -> Limits:
    per = limits[0].per
    return Limits(
        requests=max(1, round(sum(each.requests * per / each.per for each in limits))),
        per=per,
        concurrent_tasks=sum(each.concurrent_tasks for each in limits),
        safety_margin=limits[0].safety_margin,
    )


def combine(
    accounts: Sequence[AccountStatistics],
    *,
    failovers: int,
    resubmits: int,
    hedges: int,
    hedges_won: int,
    hedge_losers_ended: int,
) -> RouterStatistics:
    """The router's statistics from its accounts' (at least one)."""
    stats = [each.client for each in accounts]
    tracked = [s for s in stats if s.mean_checks_per_task]
    return RouterStatistics(
        pending=sum(s.pending for s in stats),
        in_flight=sum(s.in_flight for s in stats),
        peak_in_flight=sum(s.peak_in_flight for s in stats),
        waiting=sum(s.waiting for s in stats),
        requests_in_window=sum(s.requests_in_window for s in stats),
        requests_sent=sum(s.requests_sent for s in stats),
        rate_limited=sum(s.rate_limited for s in stats),
        retries=sum(s.retries for s in stats),
        retry_tokens=sum(s.retry_tokens for s in stats),
        mean_checks_per_task=(
            sum(s.mean_checks_per_task for s in tracked) / len(tracked) if tracked else 0.0
        ),
        limits=_added([s.limits for s in stats]),
        effective_limits=_added([s.effective_limits for s in stats]),
        accounts=tuple(accounts),
        failovers=failovers,
        resubmits=resubmits,
        hedges=hedges,
        hedges_won=hedges_won,
        hedge_losers_ended=hedge_losers_ended,
    )


def describe(error: BaseException) -> str:
    """A short account of ``error`` for an :class:`Attempt` (its type and message)."""
    return f"{type(error).__name__}: {error}"
