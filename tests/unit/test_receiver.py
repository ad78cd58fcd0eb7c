"""The callback receiver's token table and answers, through its aiohttp app (no real server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS

APIXO = DRIVERS["apixo"]
TTL = 60.0


def body(task_id: str) -> bytes:
    return json.dumps({"code": 200, "data": {"taskId": task_id, "state": "success"}}).encode()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[nb.CallbackReceiver, TestClient]]:  # type: ignore[type-arg]
    receiver = nb.CallbackReceiver(public_url="http://127.0.0.1:1/cb", early_ttl=TTL)
    async with TestClient(TestServer(receiver.app)) as http:
        yield receiver, http


def hint_to(seen: list[str], name: str) -> Callable[[nb.TaskState], bool]:
    """An ``on_hint`` that records ``name`` and reports the check as moved sooner."""

    def on_hint(claimed: nb.TaskState) -> bool:
        seen.append(name)
        return True

    return on_hint


def path(url: str) -> str:
    return "/" + url.rsplit("/", 1)[1]


class Dial:
    """A clock a test sets by hand (the receiver only reads ``now()``)."""

    def __init__(self, at: float = 0.0) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    async def sleep_until(self, deadline: float) -> None:
        raise AssertionError("the receiver never sleeps")


async def test_ended_tokens_expire_even_behind_a_task_that_runs_for_hours(
    receiver: tuple[nb.CallbackReceiver, TestClient],  # type: ignore[type-arg]
) -> None:
    """One long task registered first never holds back the expiry of the 10,000 after it: the
    table keeps the running task plus what ended within the TTL, and still serves the former."""
    recv, http = receiver
    hints: list[str] = []
    clock = Dial()
    long = recv._register(APIXO, clock)
    long.bind("long", hint_to(hints, "long"))
    for i in range(10_000):
        clock.at = i * 0.1
        registration = recv._register(APIXO, clock)
        registration.bind(f"t{i}", lambda: True)
        clock.at += 1.0
        registration.finished(seen_ended=True)
    ended_within_ttl = sum(1 for i in range(10_000) if i * 0.1 + 1.0 > 10_000 * 0.1 - TTL)
    assert recv.statistics().remembered <= 1 + ended_within_ttl + 1
    assert (await http.post(path(long.url), data=body("long"))).status == 200
    assert hints == ["long"]
    assert recv.statistics().accepted == 1


async def test_a_submit_that_never_returns_is_forgotten_after_the_ttl(
    receiver: tuple[nb.CallbackReceiver, TestClient],  # type: ignore[type-arg]
) -> None:
    """Registrations whose submit never bound them are dropped after ``early_ttl``; their
    callbacks are then answered 404, not held. A submit that binds after that (it waited its
    turn past the TTL) is remembered again: the provider has its URL and will call it."""
    recv, http = receiver
    clock = Dial()
    lost = [recv._register(APIXO, clock) for _ in range(100)]
    assert recv.statistics().remembered == 100
    assert (await http.post(path(lost[0].url), data=body("x"))).status == 200  # held: early
    clock.at = TTL + 1.0
    recv._register(APIXO, clock)
    assert recv.statistics().remembered == 1
    assert (await http.post(path(lost[1].url), data=body("x"))).status == 404
    hints: list[str] = []
    lost[2].bind("late", hint_to(hints, "late"))
    assert recv.statistics().remembered == 2
    assert (await http.post(path(lost[2].url), data=body("late"))).status == 200
    assert hints == ["late"]


async def test_answers_by_stage(
    receiver: tuple[nb.CallbackReceiver, TestClient],  # type: ignore[type-arg]
) -> None:
    """Early callbacks are held and applied at bind; after the end they are duplicates; a
    discarded submit's token is unknown (404)."""
    recv, http = receiver
    hinted: list[str] = []
    clock = Dial()
    registration = recv._register(APIXO, clock)
    assert (await http.post(path(registration.url), data=body("t1"))).status == 200
    registration.bind("t1", hint_to(hinted, "t1"))
    assert hinted == ["t1"]
    clock.at = 5.0
    registration.finished(seen_ended=True)
    assert (await http.post(path(registration.url), data=body("t1"))).status == 200
    assert hinted == ["t1"]
    failed = recv._register(APIXO, clock)
    failed.discard()
    assert (await http.post(path(failed.url), data=body("t2"))).status == 404
    stats = recv.statistics()
    assert (stats.early, stats.accepted, stats.duplicates, stats.rejected) == (1, 1, 1, 1)


async def test_each_registration_ages_on_the_clock_of_its_client(
    receiver: tuple[nb.CallbackReceiver, TestClient],  # type: ignore[type-arg]
) -> None:
    """Two clients' clocks far apart share a receiver: neither's reading expires the other's
    tokens, and each clock's tokens go once that clock has moved past the TTL."""
    recv, http = receiver
    behind, ahead = Dial(1000.0), Dial(100_000.0)
    waiting = recv._register(APIXO, behind)  # a submit that has not returned
    ended = recv._register(APIXO, ahead)
    ended.bind("t1", lambda: True)
    ended.finished(seen_ended=False)
    recv._register(APIXO, ahead)
    recv._register(APIXO, behind)
    assert recv.statistics().remembered == 4
    assert (await http.post(path(waiting.url), data=body("t0"))).status == 200  # held
    assert (await http.post(path(ended.url), data=body("t1"))).status == 200  # a replay
    behind.at += TTL + 1.0
    recv._register(APIXO, ahead)
    assert recv.statistics().remembered == 3  # the ones on ``ahead``
    assert (await http.post(path(waiting.url), data=body("t0"))).status == 404
    ahead.at += TTL + 1.0
    recv._register(APIXO, behind)
    assert recv.statistics().remembered == 1
    assert (await http.post(path(ended.url), data=body("t1"))).status == 404
