"""The Router under a fake clock, one scripted transport per account (no sockets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import nanobanana_async as nb
import tests.unit.test_client as client_tests
from nanobanana_async.testing import FakeClock, HttpRequest, ScriptedTransport, json_response
from tests.fakeapi import FakeApixo
from tests.unit.test_refusals import Crun


def apixo(
    clock: FakeClock, key: str = "key-a", server: FakeApixo | None = None, **kwargs: object
) -> tuple[nb.Client, FakeApixo]:
    server = server or FakeApixo(clock)
    client = nb.Client(
        "apixo",
        api_key=key,
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, server


def crun(clock: FakeClock, server: Crun, key: str = "key-c", **kwargs: object) -> nb.Client:
    return nb.Client(
        "crun",
        api_key=key,
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------- one client, same behaviour

PARITY: list[Callable[..., Awaitable[None]]] = [
    client_tests.test_generate_polls_until_success,
    client_tests.test_failed_task_raises_with_id,
    client_tests.test_invalid_input_sends_nothing,
    client_tests.test_unknown_state_keeps_polling_and_logs_once,
    client_tests.test_poll_429_waits_retry_after_and_pauses_account,
    client_tests.test_submit_timeout_is_outcome_unknown_and_not_retried,
    client_tests.test_submit_connect_error_is_retried,
    client_tests.test_submit_5xx_is_outcome_unknown,
    client_tests.test_submit_429_is_retried_after_hint,
    client_tests.test_submit_absurd_retry_after_raises,
    client_tests.test_cancelled_waiter_detaches_only_itself,
    client_tests.test_aclose_fails_pending_tasks_with_their_ids,
    client_tests.test_concurrency_cap_applies_backpressure,
    client_tests.test_resume_tracks_an_earlier_task,
    client_tests.test_as_completed_yields_every_task_with_backpressure,
]


@pytest.mark.parametrize("case", PARITY, ids=lambda case: case.__name__.removeprefix("test_"))
async def test_a_router_over_one_client_passes_the_clients_tests(
    case: Callable[..., Awaitable[None]],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Client's own tests pass unchanged against a Router that owns that one client."""
    original = client_tests.make_client
    routers: list[nb.Router] = []

    def through_router(
        clock: FakeClock, server: FakeApixo, key: str = "k", **kwargs: object
    ) -> tuple[nb.Router, ScriptedTransport]:
        client, transport = original(clock, server, key, **kwargs)
        routers.append(nb.Router([client], owns_clients=True))
        return routers[-1], transport

    monkeypatch.setattr(client_tests, "make_client", through_router)
    # Unknown states are logged once per process: the client's own run may have logged it.
    monkeypatch.setattr("nanobanana_async._scheduler._checks._seen_unknown", set())
    names = case.__code__.co_varnames[: case.__code__.co_argcount]
    await case(**{name: request.getfixturevalue(name) for name in names})
    assert routers, "the test built its client through make_client"


# ----------------------------------------------------------------- eligibility


async def test_a_request_goes_only_where_its_provider_accepts_it(clock: FakeClock) -> None:
    """nano-banana-pro is crun's only: the router sends it there although apixo comes first."""
    a, server = apixo(clock)
    c_server = Crun()
    async with nb.Router([a, crun(clock, c_server)], owns_clients=True) as router:
        task = await router.submit(nb.ImageRequest(prompt="x", model="nano-banana-pro"))
    assert task.ref is not None
    assert task.ref.provider == "crun"
    assert server.count("submit") == 0
    assert c_server.creates == 1


async def test_no_eligible_account_lists_each_ones_reasons_before_any_request(
    clock: FakeClock,
) -> None:
    """A request no provider takes fails before I/O, naming each account and field."""
    a, server = apixo(clock)
    c_server = Crun()
    async with nb.Router([a, crun(clock, c_server)], owns_clients=True) as router:
        with pytest.raises(nb.InvalidRequestError) as info:
            await router.generate("x", model="nano-banana", resolution="2K")
    names = router.accounts
    assert len(info.value.errors) >= 2
    assert any(line.startswith(names[0]) for line in info.value.errors)
    assert any(line.startswith(names[1]) for line in info.value.errors)
    assert all("@ $." in line for line in info.value.errors)
    assert server.log == []
    assert c_server.creates == 0


def test_accounts_are_named_by_provider_and_key_fingerprint(canary: str, clock: FakeClock) -> None:
    """Accounts read provider:fingerprint, never the key; two of one kind stay apart."""
    one, _ = apixo(clock, key=canary)
    two, _ = apixo(clock, key=canary)
    router = nb.Router([one, two])
    assert router.accounts == (
        f"apixo:{nb._redact.key_fingerprint(canary)}",  # type: ignore[attr-defined]
        f"apixo:{nb._redact.key_fingerprint(canary)}#2",  # type: ignore[attr-defined]
    )
    assert canary not in repr(router)
    assert canary not in repr(router.statistics())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "fastest"}, "strategy"),
        ({"on_unknown": "retry"}, "on_unknown"),
        ({"weights": [1.0]}, "weights"),
        ({"weights": [1.0, 0.0]}, "weights"),
        ({"weights": ["1", "2"]}, "weights"),
        ({"hedge": 0.5}, "hedge must be a nanobanana_async.Hedge or None, got float"),
    ],
)
def test_bad_router_configuration_fails_at_once(
    clock: FakeClock, kwargs: dict[str, object], message: str
) -> None:
    """Unknown strategies, on_unknown values and bad weights raise ConfigurationError."""
    one, _ = apixo(clock)
    two, _ = apixo(clock, key="other")
    with pytest.raises(nb.ConfigurationError, match=message):
        nb.Router([one, two], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(nb.ConfigurationError):
        nb.Router([])
    with pytest.raises(nb.ConfigurationError):
        nb.Router([one, one])
    with pytest.raises(nb.ConfigurationError):
        nb.Router([one, apixo(FakeClock(), key="x")[0]])


# ----------------------------------------------------------------- strategies


async def test_soonest_spreads_a_burst_over_free_slots_in_the_given_order(
    clock: FakeClock,
) -> None:
    """With 3 slots on each account, 6 submits at once go 3 and 3; the first goes to the first
    account (a tie), and the 7th waits on whichever frees first."""
    limits = nb.Limits(concurrent_tasks=3)
    a, sa = apixo(clock, limits=limits)
    b, sb = apixo(clock, key="key-b", limits=limits)
    async with nb.Router([a, b], owns_clients=True) as router:
        first = await router.submit(nb.ImageRequest(prompt="p0"))
        assert first.attempts[0].account == router.accounts[0]
        jobs = [asyncio.ensure_future(router.generate(f"p{i}")) for i in range(1, 6)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
        await first
    assert (len(sa.tasks), len(sb.tasks)) == (3, 3)


async def test_priority_fills_the_first_account_before_the_next(clock: FakeClock) -> None:
    """ "priority": the second account, though faster, only gets what the first has no slot
    for."""
    limits = nb.Limits(concurrent_tasks=4)
    a, sa = apixo(clock, server=FakeApixo(clock, latency=lambda i: 20.0), limits=limits)
    b, sb = apixo(
        clock,
        key="key-b",
        server=FakeApixo(clock, latency=lambda i: 5.0),
        base_url="https://b.test",
        limits=limits,
    )
    async with a, b:
        jobs = [asyncio.ensure_future(c.generate(f"learn {i}")) for c in (a, b) for i in range(4)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
        async with nb.Router([a, b], strategy="priority") as router:
            jobs = [asyncio.ensure_future(router.generate(f"p{i}")) for i in range(6)]
            await clock.run_until(lambda: all(j.done() for j in jobs))
    assert (len(sa.tasks), len(sb.tasks)) == (4 + 4, 4 + 2)


async def test_weighted_shares_follow_the_weights(clock: FakeClock) -> None:
    """Weights 3:1 send three of every four prompts to the first account."""
    a, sa = apixo(clock)
    b, sb = apixo(clock, key="key-b")
    async with nb.Router([a, b], strategy="weighted", weights=[3, 1], owns_clients=True) as r:
        jobs = [asyncio.ensure_future(r.generate(f"p{i}")) for i in range(8)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    assert (len(sa.tasks), len(sb.tasks)) == (6, 2)


async def test_soonest_prefers_the_account_that_learned_a_shorter_latency(
    clock: FakeClock,
) -> None:
    """Once both accounts learned the model's latency, new prompts go to the faster one.
    (Latency is learned per provider, endpoint and model: the second is another server.)"""
    a, sa = apixo(clock, server=FakeApixo(clock, latency=lambda i: 20.0))
    b, sb = apixo(
        clock,
        key="key-b",
        server=FakeApixo(clock, latency=lambda i: 5.0),
        base_url="https://b.test",
    )
    async with a, b:
        # Each account learns the model's latency from tasks sent to it directly.
        jobs = [
            asyncio.ensure_future(client.generate(f"learn {i}"))
            for client in (a, b)
            for i in range(4)
        ]
        await clock.run_until(lambda: all(j.done() for j in jobs))
        before = len(sb.tasks)
        async with nb.Router([a, b]) as router:
            for i in range(3):
                task = await router.submit(nb.ImageRequest(prompt=f"p{i}"))
                await clock.run_until(task.done)
    assert len(sa.tasks) == 4
    assert len(sb.tasks) == before + 3


# ----------------------------------------------------------------- attempts and statistics


async def test_attempts_name_each_account_tried_and_why(clock: FakeClock, canary: str) -> None:
    """A failover shows on the task: the refusing account with its reason, then the one that
    accepted; the key never appears."""
    server = FakeApixo(clock)
    server.hook = lambda r: nb.ConnectError("refused") if r.kind == "submit" else None
    a, _ = apixo(clock, key=canary, server=server)
    b, _ = apixo(clock, key="key-b")
    async with nb.Router([a, b], owns_clients=True) as router:
        job = asyncio.ensure_future(router.submit(nb.ImageRequest(prompt="x")))
        await clock.run_until(job.done)
        task = job.result()
        stats = router.statistics()
    assert [at.account for at in task.attempts] == list(router.accounts)
    assert task.attempts[0].outcome.startswith("no connection")
    assert task.attempts[1].outcome == "accepted"
    assert canary not in repr(task.attempts)
    assert stats.failovers == 1
    assert [s.accepted for s in stats.accounts] == [0, 1]
    assert [s.failovers for s in stats.accounts] == [1, 0]
    assert stats.limits.concurrent_tasks == 2_000


async def test_resume_goes_to_the_named_account(clock: FakeClock) -> None:
    """resume() needs the account with several; it takes a unique provider name too."""
    a, sa = apixo(clock)
    c_server = Crun()
    sa.create(HttpRequest(method="POST", path="/", json={"input": {"prompt": "x"}}))
    async with nb.Router([a, crun(clock, c_server)], owns_clients=True) as router:
        with pytest.raises(nb.InvalidRequestError, match="account"):
            router.resume("t0", model="nano-banana-2")
        task = router.resume("t0", model="nano-banana-2", account="apixo")
        await clock.run_until(task.done)
        again = router.resume("t9", model="nano-banana-2", account=router.accounts[1])
    assert (await task).task_id == "t0"
    assert again.ref is not None
    assert again.ref.provider == "crun"


async def test_a_router_does_not_close_clients_it_does_not_own(clock: FakeClock) -> None:
    """By default the clients stay open after the router closes; owns_clients closes them."""
    a, _ = apixo(clock)
    async with a:
        async with nb.Router([a]) as router:
            first = await router.submit(nb.ImageRequest(prompt="through the router"))
            await clock.run_until(first.done)
        task = await a.submit(nb.ImageRequest(prompt="still open"))
        await clock.run_until(task.done)
    with pytest.raises(nb.ClientClosedError):
        await router.submit(nb.ImageRequest(prompt="x"))


async def test_a_router_that_fails_to_start_closes_the_clients_it_owns(clock: FakeClock) -> None:
    """A client that cannot start (here: already closed) fails the router's entry; the owned
    clients it had started are closed, not left running with no one to close them."""
    a, server = apixo(clock)
    b, _ = apixo(clock, key="key-b")
    await b.aclose()
    with pytest.raises(nb.ClientClosedError):
        async with nb.Router([a, b], owns_clients=True):
            pass
    with pytest.raises(nb.ClientClosedError):
        await a.submit(nb.ImageRequest(prompt="x"))
    assert server.count("submit") == 0


def failed_on_status(server: FakeApixo, code: str = "GENERATION_FAILED") -> None:
    """Every status check on ``server`` answers that the task failed with ``code``."""

    def hook(request: HttpRequest) -> object:
        if request.kind != "status":
            return None
        data = {
            "taskId": request.params["taskId"],
            "state": "failed",
            "failCode": code,
            "failMsg": "prompt flagged by the safety system"
            if code != "GENERATION_FAILED"
            else "x",
        }
        return json_response({"code": 200, "message": "success", "data": data})

    server.hook = hook  # type: ignore[assignment]


async def test_resubmit_failed_moves_a_failed_task_to_another_account_once(
    clock: FakeClock,
) -> None:
    """With resubmit_failed, a task that failed after acceptance runs again on another account
    (both paid, both on the attempts); when that one fails too, the error is final."""
    a, sa = apixo(clock)
    b, sb = apixo(clock, key="key-b")
    failed_on_status(sa)
    async with nb.Router([a, b], resubmit_failed=True, owns_clients=True) as router:
        task = await router.submit(nb.ImageRequest(prompt="x"))
        first_id = task.id
        result = await _run(clock, task)
        failed_on_status(sb)
        again = await router.submit(nb.ImageRequest(prompt="y"))
        await clock.run_until(again.done)
        stats = router.statistics()
    assert first_id == "t0"
    assert (result.task_id, task.id) == ("t0", "t0")  # b's first task is t0 too
    assert task.attempts[0].outcome == "accepted"
    assert "GenerationFailedError" in task.attempts[1].outcome
    assert task.attempts[-1] == nb.Attempt(account=router.accounts[1], outcome="accepted")
    assert stats.resubmits == 2
    assert (len(sa.tasks), len(sb.tasks)) == (2, 2)
    with pytest.raises(nb.GenerationFailedError) as info:
        await again
    assert len(info.value.attempts) == 4


async def _run(clock: FakeClock, task: nb.Task) -> nb.ImageResult:
    await clock.run_until(task.done)
    return await task


async def test_content_refusals_and_plain_failures_are_not_resubmitted(clock: FakeClock) -> None:
    """A content refusal is never resubmitted; without resubmit_failed no failure is."""
    for resubmit, code in ((True, "CONTENT_POLICY"), (False, "GENERATION_FAILED")):
        a, sa = apixo(clock)
        b, sb = apixo(clock, key="key-b")
        failed_on_status(sa, code)
        async with nb.Router([a, b], resubmit_failed=resubmit, owns_clients=True) as router:
            task = await router.submit(nb.ImageRequest(prompt="x"))
            await clock.run_until(task.done)
        with pytest.raises(nb.GenerationFailedError) as info:
            await task
        assert isinstance(info.value, nb.ContentPolicyError) is resubmit
        assert len(sb.tasks) == 0
        assert info.value.attempts[0].account == router.accounts[0]


async def test_a_set_aside_warning_never_holds_the_key(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The one WARNING for a refused key names the account by fingerprint only."""
    server = FakeApixo(clock)
    refused = json_response({"code": 401, "message": f"bad key {canary}", "data": None}, 401)
    server.hook = lambda r: refused if r.kind == "submit" else None
    a, _ = apixo(clock, key=canary, server=server)
    b, _ = apixo(clock, key="key-b")
    with caplog.at_level(logging.DEBUG, logger="nanobanana_async"):
        async with nb.Router([a, b], owns_clients=True) as router:
            task = await router.submit(nb.ImageRequest(prompt="x"))
    assert canary not in caplog.text
    assert canary not in repr(task.attempts)
    assert canary not in repr(router.statistics())
    assert canary not in str(router.statistics().accounts[0].set_aside)


async def test_closing_the_router_ends_the_tasks_it_follows_with_their_ids(
    clock: FakeClock,
) -> None:
    """A hedged or resubmittable task still pending when the router closes fails with
    ClientClosedError naming it; the clients (not owned) keep tracking it."""
    a, sa = apixo(clock)
    b, _ = apixo(clock, key="key-b")
    async with a, b:
        async with nb.Router([a, b], resubmit_failed=True) as router:
            task = await router.submit(nb.ImageRequest(prompt="[[stuck]] x"))
            await clock.advance(5.0)
        with pytest.raises(nb.ClientClosedError) as info:
            await task
        assert info.value.task_id == "t0"
        assert a.statistics().pending == 1
    assert sa.tasks["t0"].checks >= 1


async def test_validate_names_every_account_and_sends_nothing(clock: FakeClock) -> None:
    """validate() passes when one account takes the request, else lists each one's reasons."""
    a, sa = apixo(clock)
    c_server = Crun()
    async with nb.Router([a, crun(clock, c_server)], owns_clients=True) as router:
        router.validate(nb.ImageRequest(prompt="x", model="nano-banana-pro"))
        with pytest.raises(nb.InvalidRequestError) as info:
            router.validate(nb.ImageRequest(prompt="x", model="nano-banana", resolution="2K"))
    assert [line.split(":")[0] for line in info.value.errors] == ["apixo", "crun"]
    assert (sa.log, c_server.creates) == ([], 0)


@pytest.mark.parametrize("key", ["line-1", None])
async def test_a_rerun_goes_back_to_the_account_whose_journal_holds_the_request(
    clock: FakeClock, tmp_path: Path, key: str | None
) -> None:
    """A prompt that failed over from A to B is in B's journal: a rerun through a new router
    (new clients, same journals) re-attaches on B and creates nothing anywhere."""
    sa, sb = FakeApixo(clock), FakeApixo(clock)
    sa.hook = lambda r: nb.ConnectError("refused") if r.kind == "submit" else None
    request = nb.ImageRequest(prompt="x")

    def clients() -> list[nb.Client]:
        return [
            apixo(clock, server=sa, journal=tmp_path / "a.sqlite")[0],
            apixo(clock, key="key-b", server=sb, journal=tmp_path / "b.sqlite")[0],
        ]

    async with nb.Router(clients(), owns_clients=True) as router:
        job = asyncio.ensure_future(router.submit(request, key=key))
        await clock.run_until(job.done)
        first = job.result()
    sa.hook = None
    async with nb.Router(clients(), owns_clients=True) as router:
        again = await router.submit(request, key=key)
    assert (first.id, again.id) == ("t0", "t0")
    assert again.ref is not None
    assert [at.account for at in again.attempts] == [router.accounts[1]]
    assert (len(sa.tasks), len(sb.tasks)) == (0, 1)


async def test_f19_a_reruns_journaled_unknown_submits_neither_open_nor_wait_for_the_circuit(
    clock: FakeClock, tmp_path: Path
) -> None:
    """A killed run left six submits of unknown outcome and one task in A's journal. A rerun
    answers each from the journal, sending no create: A's circuit stays closed, and the task
    is re-attached at once even while real faults hold A's circuit open."""
    sa, sb = FakeApixo(clock), FakeApixo(clock)
    timed_out = nb.RequestTimeoutError("read timed out")
    sa.hook = lambda r: timed_out if r.kind == "submit" else None
    lost = [(nb.ImageRequest(prompt=f"lost {i}"), f"line-{i}") for i in range(6)]
    kept = nb.ImageRequest(prompt="kept")

    def clients() -> list[nb.Client]:
        return [
            apixo(clock, server=sa, journal=tmp_path / "a.sqlite")[0],
            apixo(clock, key="key-b", server=sb, journal=tmp_path / "b.sqlite")[0],
        ]

    def run(submit: Awaitable[nb.Task], limit: float = 60.0) -> Awaitable[None]:
        job = asyncio.ensure_future(submit)
        jobs.append(job)
        return clock.run_until(job.done, limit=limit)

    jobs: list[asyncio.Future[nb.Task]] = []
    async with clients()[0] as client:
        for request, key in lost:
            await run(client.submit(request, key=key))
            with pytest.raises(nb.SubmitOutcomeUnknownError):
                jobs[-1].result()
        sa.hook = None
        await run(client.submit(kept, key="line-kept"))
        first = jobs[-1].result()
    sent = sa.count("submit")
    async with nb.Router(clients(), owns_clients=True) as router:
        for request, key in lost:
            await run(router.submit(request, key=key))
            with pytest.raises(nb.SubmitOutcomeUnknownError, match="journal holds an earlier"):
                jobs[-1].result()
        assert router.statistics().accounts[0].circuit == "closed"
        assert sa.count("submit") == sent
        # Real unknown outcomes are faults: five in a row open A's circuit.
        sa.hook = lambda r: timed_out if r.kind == "submit" else None
        for i in range(5):
            await run(router.submit(nb.ImageRequest(prompt=f"fresh {i}"), key=f"fresh-{i}"))
            with pytest.raises(nb.SubmitOutcomeUnknownError):
                jobs[-1].result()
        assert router.statistics().accounts[0].circuit == "open"
        # Re-attached before the cooldown (30 s less 20 % jitter at the least) could end. The
        # journal's lookup runs on its thread, in real time: each fake step leaves it a moment.
        started = clock.now()
        held = asyncio.ensure_future(router.submit(kept, key="line-kept"))
        while not held.done() and clock.now() - started < 20.0:
            await clock.advance(0.1)
            await asyncio.sleep(0.005)
        assert held.done(), "the held prompt waited for the circuit"
        again = held.result()
        assert again.id == first.id
        assert [at.account for at in again.attempts] == [router.accounts[0]]
    assert (sa.count("submit"), len(sb.tasks)) == (sent + 5, 0)
