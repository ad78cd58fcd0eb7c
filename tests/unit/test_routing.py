"""The Router's pure decisions: what fails over, what is a fault, the strategies' order."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async._routing import (
    Outlook,
    Weights,
    failover_reason,
    is_fault,
    rank,
    sets_aside,
)

REQUEST = nb.ImageRequest(prompt="x")


def api(cls: type[nb.APIError], status: int, code: int | None = None) -> nb.APIError:
    return cls("no", provider="crun", status=status, code=code)


UNKNOWN = nb.SubmitOutcomeUnknownError("reset", provider="apixo", request=REQUEST)
CASES = [
    # error, fails over, is a fault, sets the account aside
    (nb.ConnectError("refused"), True, True, False),
    (api(nb.RateLimitError, 429), True, None, False),
    (api(nb.AuthenticationError, 401), True, None, True),
    (api(nb.AuthenticationError, 403), True, None, True),
    (api(nb.InsufficientCreditsError, 402), True, None, True),
    (api(nb.ProviderRefusedError, 200, 455), True, True, False),
    (UNKNOWN, False, True, False),
    (api(nb.ProviderUnavailableError, 503), False, True, False),
    (api(nb.RequestRejectedError, 400), False, None, False),
    (api(nb.BadResponseError, 200), False, None, False),
    (nb.GenerationFailedError("x", task_id="t", provider="p", model="m"), False, True, False),
    (nb.ContentPolicyError("x", task_id="t", provider="p", model="m"), False, None, False),
    (nb.TaskTimeoutError("x", task_id="t", provider="p", model="m"), False, None, False),
]


@pytest.mark.parametrize(("error", "moves", "fault", "aside"), CASES, ids=lambda v: repr(v)[:40])
def test_what_each_failure_means_to_a_router(
    error: nb.NanoBananaError, moves: bool, fault: bool | None, aside: bool
) -> None:
    """Only answers proving nothing was created move on; only provider faults count."""
    assert (failover_reason(error, on_unknown="raise") is not None) is moves
    assert is_fault(error) is fault
    assert sets_aside(error) is aside


def test_an_unknown_outcome_moves_only_when_the_user_accepts_paying_twice() -> None:
    """on_unknown="failover" is the one way an unknown outcome moves, saying what it costs."""
    reason = failover_reason(UNKNOWN, on_unknown="failover")
    assert reason is not None
    assert "paid twice" in reason


def look(busy: int = 0, cap: int = 10, wait: float = 0.0, latency: float = 10.0) -> Outlook:
    return Outlook(busy=busy, cap=cap, request_wait=wait, latency=latency)


def test_expected_finish_adds_the_slot_queue_or_request_wait_to_the_latency() -> None:
    """Free slots: the latency (plus any request wait); full: the queue drains cap per latency."""
    assert look().expected() == 10.0
    assert look(wait=2.0).expected() == 12.0
    assert look(busy=10).expected() == 11.0
    assert look(busy=29).expected() == 30.0
    assert look(busy=10).saturated
    assert not look(busy=9).saturated


def test_soonest_ranks_by_expected_finish_ties_in_the_given_order() -> None:
    """The sooner account first; equal ones keep the order the caller gave."""
    outlooks = {0: look(latency=12.0), 1: look(latency=8.0), 2: look(latency=8.0)}
    assert rank("soonest", [0, 1, 2], outlooks) == [1, 2, 0]
    assert rank("soonest", [2, 1], outlooks) == [2, 1]


def test_priority_keeps_the_order_saturated_last() -> None:
    """Priority ignores speed; only a saturated account moves behind the others."""
    outlooks = {0: look(busy=10, latency=1.0), 1: look(latency=50.0), 2: look(latency=5.0)}
    assert rank("priority", [0, 1, 2], outlooks) == [1, 2, 0]


def test_weighted_picks_follow_the_weights_exactly() -> None:
    """Smooth weighted round robin: 5:3:2 over ten picks is exactly 5, 3 and 2."""
    weights = Weights([5.0, 3.0, 2.0])
    outlooks = {i: look() for i in range(3)}
    picks = [rank("weighted", [0, 1, 2], outlooks, weights)[0] for _ in range(10)]
    assert [picks.count(i) for i in range(3)] == [5, 3, 2]
    # An account left out of a pick (open circuit) does not bank its turns.
    assert rank("weighted", [1, 2], outlooks, weights)[0] in (1, 2)


def test_hedge_values_are_checked_and_its_share_holds() -> None:
    """Quantiles and shares must lie strictly between 0 and 1; one hedge per twenty submits."""
    hedge = nb.Hedge()
    assert (hedge.after_quantile, hedge.max_share) == (0.99, 0.05)
    assert 2.32 < hedge.z < 2.33
    assert not hedge.allows(0, 19)
    assert hedge.allows(0, 20)
    assert not hedge.allows(1, 39)
    for bad in ({"after_quantile": 1.0}, {"max_share": 0.0}, {"after_quantile": -0.5}):
        with pytest.raises(nb.ConfigurationError, match="between 0 and 1"):
            nb.Hedge(**bad)  # type: ignore[arg-type]


async def test_f44_a_hedge_is_not_sent_once_a_followed_task_has_its_result() -> None:
    """A hedge's create asks right before it is sent whether it is still wanted: not once a
    task followed for the same prompt has its result, even in the loop turns before the router
    hands that result to the caller's task (it would be a second task paid for nothing). A
    followed task that failed leaves the hedge wanted."""
    import datetime as dt

    from nanobanana_async._follow import _HedgeSend
    from nanobanana_async._task import Task

    outer, first, failed = Task(REQUEST), Task(REQUEST), Task(REQUEST)
    running = {first._future: (first, 0, False), failed._future: (failed, 1, False)}
    send = _HedgeSend(outer, running)
    assert send.wanted()
    failed._resolve(None, nb.GenerationFailedError("x", task_id="t1", provider="p", model="m"))
    assert send.wanted()
    now = dt.datetime.now(dt.UTC)
    result = nb.ImageResult(
        task_id="t0",
        provider="apixo",
        model="nano-banana-2",
        urls=("http://127.0.0.1:9/a.png",),
        request=None,
        submitted_at=now,
        completed_at=now,
    )
    first._resolve(result, None)
    assert not outer.done()  # the router has not handed it over yet
    assert not send.wanted()
