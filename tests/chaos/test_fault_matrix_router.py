"""Fault-matrix rows F39-F44: a Router over several accounts (fake clock, one scripted transport
per account)."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.fakeapi import FakeApixo
from tests.unit.test_refusals import Crun
from tests.unit.test_router import apixo, crun


class Maintenance(Crun):
    """crun answering 455 to every create while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.refused = 0

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.kind == "submit" and self.down:
            self.refused += 1
            return json_response({"code": 455, "message": "maintenance", "data": None})
        return super().__call__(request)


async def drive(clock: FakeClock, coro: Any) -> Any:
    """Run ``coro`` to its end, moving the fake clock; its error is returned, not raised."""
    job = asyncio.ensure_future(coro)
    await clock.run_until(job.done, limit=7200)
    return job.exception() or job.result()


def created(*servers: FakeApixo | Crun) -> int:
    return sum(len(s.tasks) if isinstance(s, FakeApixo) else len(s.created) for s in servers)


# ----------------------------------------------------------------- F39


def reset_after_create(server: FakeApixo) -> None:
    """The server creates the task, then the connection drops before its answer."""

    def hook(request: HttpRequest) -> object:
        if request.kind == "submit":
            server.create(request)
            return nb.TransportError("connection reset after the request was sent")
        return None

    server.hook = hook  # type: ignore[assignment]


async def test_f39_unknown_outcome_stays_with_its_account(clock: FakeClock) -> None:
    """A create that may have been accepted is never sent to another account: the caller gets
    SubmitOutcomeUnknownError naming the account, and the prompt exists once."""
    a, sa = apixo(clock)
    b, sb = apixo(clock, key="key-b")
    reset_after_create(sa)
    async with nb.Router([a, b], owns_clients=True) as router:
        error = await drive(clock, router.generate("x"))
    assert isinstance(error, nb.SubmitOutcomeUnknownError)
    assert router.accounts[0] in str(error)
    assert [at.account for at in error.attempts] == [router.accounts[0]]
    assert error.request.prompt == "x"
    assert sb.count("submit") == 0
    assert created(sa, sb) == 1


async def test_f39_on_unknown_failover_pays_twice_only_when_asked(clock: FakeClock) -> None:
    """on_unknown="failover" moves an unknown outcome on: the prompt then exists twice."""
    a, sa = apixo(clock)
    b, sb = apixo(clock, key="key-b")
    reset_after_create(sa)
    async with nb.Router([a, b], on_unknown="failover", owns_clients=True) as router:
        result = await drive(clock, router.generate("x"))
    assert isinstance(result, nb.ImageResult)
    assert [at.account for at in result.attempts] == list(router.accounts)
    assert result.attempts[0].outcome.startswith("outcome unknown (may be paid twice")
    assert created(sa, sb) == 2


# ----------------------------------------------------------------- F40


def refusing(kind: str) -> Any:
    if kind == "connect":
        return nb.ConnectError("connection refused")
    status = {"429": 429, "401": 401, "403": 403, "402": 402}[kind]
    headers = {"retry-after": "99999"} if status == 429 else {}
    return json_response({"code": status, "message": "no", "data": None}, status, headers)


@pytest.mark.parametrize("kind", ["429", "455", "connect", "401", "402"])
async def test_f40_refusal_moves_the_prompt_to_the_next_account_once(
    clock: FakeClock, kind: str
) -> None:
    """A refusal that proves nothing was created (429, crun's 455, no connection, key or
    credits refused) sends the prompt to the next account, once: it is created exactly once."""
    if kind == "455":
        first_server: FakeApixo | Crun = Crun(refuse={0: 455, 1: 455, 2: 455})
        first = crun(clock, first_server)
    else:
        first_server = FakeApixo(clock)
        answer = refusing(kind)
        first_server.hook = lambda r: answer if r.kind == "submit" else None
        first, _ = apixo(clock, server=first_server)
    second, sb = apixo(clock, key="key-b")
    async with nb.Router([first, second], owns_clients=True) as router:
        result = await drive(clock, router.submit(nb.ImageRequest(prompt="x")))
        assert isinstance(result, nb.Task)
        await drive(clock, result.result())
    assert created(first_server, sb) == 1
    assert sb.count("submit") == 1
    assert [at.account for at in result.attempts] == list(router.accounts)
    assert result.attempts[-1].outcome == "accepted"
    assert router.statistics().failovers == 1


async def test_f40_a_request_refused_as_forbidden_is_not_sent_elsewhere(clock: FakeClock) -> None:
    """apixo documents 403 as "forbidden/content policy": a refusal of this request, not of the
    key, so the caller gets it and no other account is asked (nor its circuit counted)."""
    first_server = FakeApixo(clock)
    answer = refusing("403")
    first_server.hook = lambda r: answer if r.kind == "submit" else None
    first, _ = apixo(clock, server=first_server)
    second, sb = apixo(clock, key="key-b")
    async with nb.Router([first, second], owns_clients=True) as router:
        error = await drive(clock, router.submit(nb.ImageRequest(prompt="x")))
        assert isinstance(error, nb.RequestRejectedError)
        assert router.statistics().failovers == 0
        assert router.statistics().accounts[0].circuit == "closed"
    assert sb.count("submit") == 0


async def test_f40_refusing_account_sees_one_create_per_prompt_until_its_circuit_opens(
    clock: FakeClock,
) -> None:
    """crun in maintenance before apixo: each prompt costs crun exactly one create (the client
    does not retry a 455 the router can send elsewhere) until its circuit opens after five;
    then crun sees none, and every prompt is created once, on apixo."""
    down = Maintenance()
    a = crun(clock, down)
    b, sb = apixo(clock, key="key-b")
    async with nb.Router([a, b], owns_clients=True) as router:
        for i in range(8):
            task = await drive(clock, router.submit(nb.ImageRequest(prompt=f"p{i}")))
            assert task.ref.provider == "apixo"
            assert down.refused == min(i + 1, 5)
        assert circuit(router) == "open"
    assert created(down, sb) == 8


async def test_f40_a_lone_client_still_retries_455(clock: FakeClock) -> None:
    """With no other account to go to, the client's own retries stay: two 455s then an
    accepted create, through the client alone or a router over it alone."""
    for through_router in (False, True):
        server = Crun(refuse={0: 455, 1: 455})
        client = crun(clock, server)
        async with client:
            if through_router:
                async with nb.Router([client]) as router:
                    result = await drive(clock, router.generate("x"))
            else:
                result = await drive(clock, client.generate("x"))
        assert isinstance(result, nb.ImageResult)
        assert (server.creates, len(server.created)) == (3, 1)


@pytest.mark.parametrize("kind", ["429", "connect"])
async def test_f40_a_429_or_refused_connection_fails_over_without_client_retries(
    clock: FakeClock, kind: str
) -> None:
    """A 429 (Retry-After 1 s, which a client would wait out) or a refused connection on the
    first of two accounts costs it one create: the prompt moves on at once. A lone client on
    the same answers still retries, and its second create is accepted."""
    for alone in (False, True):
        first_server = FakeApixo(clock)
        answer = (
            json_response(
                {"code": 429, "message": "slow down", "data": None}, 429, {"retry-after": "1"}
            )
            if kind == "429"
            else nb.ConnectError("connection refused")
        )
        first_server.hook = lambda r, a=answer, s=first_server: (
            a if r.kind == "submit" and s.count("submit") == 1 else None
        )
        first, _ = apixo(clock, server=first_server)
        second, sb = apixo(clock, key="key-b")
        clients = [first] if alone else [first, second]
        async with nb.Router(clients, owns_clients=True) as router:
            task = await drive(clock, router.submit(nb.ImageRequest(prompt="x")))
            assert isinstance(task, nb.Task)
        if alone:
            assert (first_server.count("submit"), len(first_server.tasks)) == (2, 1)
            await second.aclose()
        else:
            assert (first_server.count("submit"), len(first_server.tasks)) == (1, 0)
            assert len(sb.tasks) == 1


async def test_f40_the_last_account_left_retries_refusals_itself(clock: FakeClock) -> None:
    """Once the other account refused too, the last one spends its own retries: a passing
    455 there still ends in a task, not an error."""
    first, second = Maintenance(), Crun(refuse={0: 455})
    a = crun(clock, first)
    b = crun(clock, second, key="key-d")
    async with nb.Router([a, b], owns_clients=True) as router:
        result = await drive(clock, router.generate("x"))
    assert isinstance(result, nb.ImageResult)
    assert first.refused == 1
    assert (second.creates, len(second.created)) == (2, 1)


# ----------------------------------------------------------------- F41


def circuit(router: nb.Router, index: int = 0) -> str:
    return router.statistics().accounts[index].circuit


async def test_f41_outage_opens_half_opens_with_one_request_and_closes(clock: FakeClock) -> None:
    """crun in maintenance: after 5 refused prompts its circuit opens and it gets no creates;
    after the 30 s cooldown one submit probes it (the others go on to apixo), a refused probe
    reopens it for twice as long, and an accepted one closes it."""
    down = Maintenance()
    a = crun(clock, down)
    b, sb = apixo(clock, key="key-b")
    async with nb.Router([a, b], owns_clients=True, random=lambda: 0.5) as router:
        for i in range(5):
            assert isinstance(await drive(clock, router.generate(f"p{i}")), nb.ImageResult)
        assert circuit(router) == "open"
        refused = down.refused
        opened_at = clock.now()
        await drive(clock, router.generate("while open"))
        assert down.refused == refused
        # The cooldown ends: one probe, still refused, opens it again for 60 s.
        await clock.advance(opened_at + 30.0 - clock.now())
        probe = await drive(clock, router.submit(nb.ImageRequest(prompt="probe 1")))
        assert down.refused == refused + 1  # one create: apixo is ready, so no client retries
        assert [at.account for at in probe.attempts] == list(router.accounts)
        assert circuit(router) == "open"
        reopened_at = clock.now()
        await clock.advance(reopened_at + 59.0 - clock.now())
        await drive(clock, router.generate("still open"))
        assert down.refused == refused + 1
        # Maintenance over: of three submits at the half-open, one probes, two go to apixo.
        down.down = False
        await clock.advance(reopened_at + 60.0 - clock.now())
        before = sb.count("submit")
        jobs = [router.submit(nb.ImageRequest(prompt=f"q{i}")) for i in range(3)]
        tasks = await drive(clock, asyncio.gather(*jobs))
        assert [t.ref.provider for t in tasks].count("crun") == 1
        assert sb.count("submit") == before + 2
        assert circuit(router) == "closed"
        assert router.statistics().accounts[0].accepted == 1


async def test_f41_429s_and_content_refusals_never_open_the_circuit(clock: FakeClock) -> None:
    """Ten 429s on creates and ten content refusals on tasks leave the circuit closed."""
    server = FakeApixo(clock)
    limited = refusing("429")
    refusal = {
        "state": "failed",
        "failCode": "CONTENT_POLICY",
        "failMsg": "prompt flagged by the safety system",
    }

    def hook(request: HttpRequest) -> object:
        if request.kind == "submit" and server.count("submit") <= 10:
            return limited
        if request.kind == "status":
            data = {"taskId": request.params["taskId"], **refusal}
            return json_response({"code": 200, "message": "success", "data": data})
        return None

    server.hook = hook  # type: ignore[assignment]
    a, _ = apixo(clock, server=server)
    b, _ = apixo(clock, key="key-b")
    async with nb.Router([a, b], strategy="priority", owns_clients=True) as router:
        for i in range(20):
            await drive(clock, router.generate(f"p{i}"))
        stats = router.statistics()
    assert len(server.tasks) == 10
    assert stats.accounts[0].circuit == "closed"
    assert stats.accounts[0].failovers == 10


async def test_f41_generation_failures_count_as_faults(clock: FakeClock) -> None:
    """Five tasks in a row that fail to generate open the account's circuit."""
    a, sa = apixo(clock)
    b, _ = apixo(clock, key="key-b")
    async with nb.Router([a, b], strategy="priority", owns_clients=True) as router:
        for i in range(5):
            error = await drive(clock, router.generate(f"[[fail]] {i}"))
            assert isinstance(error, nb.GenerationFailedError)
        assert circuit(router) == "open"
        await drive(clock, router.generate("next"))
    assert len(sa.tasks) == 5


async def test_f41_an_outage_that_ends_gets_the_account_back_after_its_cooldown(
    clock: FakeClock,
) -> None:
    """With a 2 s cooldown (CircuitPolicy), crun refused in maintenance is probed 2 s after
    its circuit opened, under "soonest", and takes creates again once the probe is
    accepted; with the default 30 s it would still be open then."""
    down = Maintenance()
    a = crun(clock, down)
    b, _ = apixo(clock, key="key-b")
    policy = nb.CircuitPolicy(cooldown=2.0)
    async with nb.Router([a, b], owns_clients=True, circuit=policy, random=lambda: 0.5) as router:
        for i in range(5):
            # Submits, not generates: the clock stays where the circuit opened.
            await drive(clock, router.submit(nb.ImageRequest(prompt=f"p{i}")))
        assert circuit(router) == "open"
        opened_at = clock.now()
        down.down = False
        # It opened within the last step of the fake clock (0.1 s): 1.7 s on is before 2 s.
        await clock.advance(opened_at + 1.7 - clock.now())
        early = await drive(clock, router.submit(nb.ImageRequest(prompt="early")))
        assert early.ref.provider == "apixo"
        await clock.advance(opened_at + 2.0 - clock.now())
        probe = await drive(clock, router.submit(nb.ImageRequest(prompt="probe")))
        assert probe.ref.provider == "crun"
        assert circuit(router) == "closed"
        after = await drive(clock, router.submit(nb.ImageRequest(prompt="after")))
        assert after.ref.provider == "crun"
    assert len(down.created) == 2


async def test_a_router_takes_only_a_circuit_policy(clock: FakeClock) -> None:
    """circuit= must be a CircuitPolicy: anything else is a ConfigurationError at once."""
    a, _ = apixo(clock)
    with pytest.raises(nb.ConfigurationError, match="CircuitPolicy"):
        nb.Router([a], circuit={"cooldown": 2.0})  # type: ignore[arg-type]
    await a.aclose()


# ----------------------------------------------------------------- F42


async def test_f42_every_circuit_open_callers_wait_for_the_first_half_open(
    clock: FakeClock,
) -> None:
    """With both accounts open, a caller waits (is not failed) until the earliest half-open,
    and its probe then succeeds; a caller whose timeout ends first fails at once."""
    one, two = Maintenance(), Maintenance()
    a = crun(clock, one)
    b = crun(clock, two, key="key-d")
    async with nb.Router([a, b], owns_clients=True, random=lambda: 0.5) as router:
        for i in range(5):
            error = await drive(clock, router.generate(f"p{i}"))
            assert isinstance(error, nb.ProviderRefusedError)
        assert (circuit(router, 0), circuit(router, 1)) == ("open", "open")
        opened = clock.now()
        short = await drive(clock, router.generate("short", timeout=10.0))
        assert isinstance(short, nb.ProviderUnavailableError)
        assert "circuit" in str(short)
        assert clock.now() <= opened + 0.1  # one step of the fake clock's driver
        one.down = two.down = False
        job = asyncio.ensure_future(router.generate("waits"))
        await clock.advance(25.0)
        assert not job.done()
        await clock.run_until(job.done)
        assert isinstance(job.result(), nb.ImageResult)
        assert clock.now() >= opened + 24.0  # the cooldown, jittered around 30 s


# ----------------------------------------------------------------- F43


@pytest.mark.parametrize("status", [401, 402])
async def test_f43_refused_key_or_credits_sets_the_account_aside_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """A 401 or 402 on one account sets it aside for the run with one WARNING; every prompt
    still succeeds on the others, and the refused account gets no second create."""
    server = FakeApixo(clock)
    answer = json_response({"code": status, "message": "no", "data": None}, status)
    server.hook = lambda r: answer if r.kind == "submit" else None
    a, _ = apixo(clock, server=server)
    b, sb = apixo(clock, key="key-b")
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with nb.Router([a, b], owns_clients=True) as router:
            results = [await drive(clock, router.generate(f"p{i}")) for i in range(5)]
            stats = router.statistics()
    assert all(isinstance(r, nb.ImageResult) for r in results)
    assert server.count("submit") == 1
    assert len(sb.tasks) == 5
    warnings = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(warnings) == 1
    assert router.accounts[0] in warnings[0].getMessage()
    assert stats.accounts[0].set_aside is not None


async def test_f43_every_account_refused_raises_the_refusal(clock: FakeClock) -> None:
    """When every account's key was refused, callers get the AuthenticationError at once."""
    servers = [FakeApixo(clock), FakeApixo(clock)]
    answer = json_response({"code": 401, "message": "no", "data": None}, 401)
    for server in servers:
        server.hook = lambda r: answer if r.kind == "submit" else None
    a, _ = apixo(clock, server=servers[0])
    b, _ = apixo(clock, key="key-b", server=servers[1])
    async with nb.Router([a, b], owns_clients=True) as router:
        first = await drive(clock, router.generate("p0"))
        later = await drive(clock, router.generate("p1"))
    assert isinstance(first, nb.AuthenticationError)
    assert isinstance(later, nb.AuthenticationError)
    assert [s.count("submit") for s in servers] == [1, 1]


# ----------------------------------------------------------------- F44


async def test_f44_hedge_after_p99_first_result_wins_both_tracked_share_held(
    clock: FakeClock,
) -> None:
    """A task past its account's learned p99 gets one submit elsewhere; the first result wins,
    the loser is tracked to its end and counted, and hedges stay within max_share."""
    slow = {3: 100.0, 4: 100.0}
    sa = FakeApixo(clock, latency=lambda i: slow.get(i, 5.0))
    a, _ = apixo(clock, server=sa)
    b, sb = apixo(clock, key="key-b", base_url="https://b.test")
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.25)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):  # the account learns the model's latency (about 5 s)
            await drive(clock, router.generate(f"learn {i}"))
        assert sb.count("submit") == 0
        # Two slow tasks: a second hedge would exceed 25 % of the 5 submits, so one is made.
        first = await router.submit(nb.ImageRequest(prompt="slow"))
        second = await router.submit(nb.ImageRequest(prompt="slow too"))
        started = clock.now()
        result = await drive(clock, first.result())
        assert result.task_id == "t0"  # the hedge's id, on the second account
        assert first.id == "t0"
        assert clock.now() - started < 30.0
        assert not second.done()
        stats = router.statistics()
        assert (stats.hedges, stats.hedges_won, stats.hedge_losers_ended) == (1, 1, 0)
        assert [at.outcome for at in first.attempts] == ["accepted", "accepted (hedge)"]
        # The unhedged one ends on its own account; the loser runs on (paid) to its end.
        assert (await drive(clock, second.result())).task_id == "t4"
        await clock.advance(5.0)
        stats = router.statistics()
    assert sb.count("submit") == 1
    assert stats.hedge_losers_ended == 1
    assert stats.hedges <= hedge.max_share * sum(s.accepted for s in stats.accounts)


# ----------------------------------------------------------------- randomized


class Flaky(FakeApixo):
    """An apixo account whose creates fail at random (seeded): nothing sent, 429, 503 after
    creating, reset after creating, or the key refused once; records each prompt it created."""

    def __init__(self, clock: FakeClock, rng: random.Random) -> None:
        super().__init__(clock, latency=lambda i: rng.uniform(2.0, 20.0))
        self.rng = rng
        self.prompts: list[str] = []
        self.hook = self.fault

    def fault(self, request: HttpRequest) -> Any:
        if request.kind != "submit":
            return None
        roll = self.rng.random()
        if roll < 0.15:
            return nb.ConnectError("refused")
        if roll < 0.25:
            return json_response(
                {"code": 429, "message": "x", "data": None}, 429, {"retry-after": "1"}
            )
        if roll < 0.30:
            self.create(request)
            return nb.TransportError("reset after the request was sent")
        if roll < 0.33:
            self.create(request)
            return json_response({"code": 503, "message": "busy", "data": None}, 503)
        if roll < 0.34:
            return json_response({"code": 401, "message": "no", "data": None}, 401)
        return None

    def create(self, request: HttpRequest) -> HttpResponse:
        body = request.json
        assert isinstance(body, dict)
        self.prompts.append(body["input"]["prompt"])
        return super().create(request)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_faults_never_create_a_prompt_on_two_accounts(
    clock: FakeClock, seed: int
) -> None:
    """Seeded random refusals, resets and refused keys on three accounts: every prompt ends
    (a result or a typed error), is created at most once over all accounts, and each unknown
    outcome names the account that holds it."""
    rng = random.Random(seed)
    servers = [Flaky(clock, rng) for _ in range(3)]
    limits = nb.Limits(concurrent_tasks=5)
    clients = [
        apixo(clock, key=f"key-{i}", server=server, limits=limits)[0]
        for i, server in enumerate(servers)
    ]
    strategy = ("soonest", "priority", "weighted")[seed % 3]
    async with nb.Router(clients, strategy=strategy, owns_clients=True) as router:  # type: ignore[arg-type]
        jobs = [asyncio.ensure_future(router.generate(f"p{i}")) for i in range(60)]
        await clock.run_until(lambda: all(j.done() for j in jobs), limit=7200)
    outcomes = [j.exception() or j.result() for j in jobs]
    created = [p for server in servers for p in server.prompts]
    assert len(created) == len(set(created))
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, nb.SubmitOutcomeUnknownError):
            holder = outcome.attempts[-1].account
            assert holder in str(outcome)
            assert f"p{i}" in servers[router.accounts.index(holder)].prompts
        elif isinstance(outcome, nb.ImageResult):
            assert f"p{i}" in created
            assert outcome.attempts[-1].outcome == "accepted"
        else:
            assert isinstance(outcome, nb.NanoBananaError)
            assert f"p{i}" not in created
    assert sum(isinstance(o, nb.ImageResult) for o in outcomes) >= 30


async def test_f44_a_hedge_waiting_for_a_slot_never_delays_the_result(clock: FakeClock) -> None:
    """The hedge's account has no free slot: the hedge waits there, and the first task's result
    still reaches the caller the moment it is seen; the router's close stops the wait."""
    sa = FakeApixo(clock, latency=lambda i: 30.0 if i == 3 else 5.0)
    a, _ = apixo(clock, server=sa)
    b, sb = apixo(
        clock, key="key-b", base_url="https://b.test", limits=nb.Limits(concurrent_tasks=1)
    )
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with a, b:
        blocker = await b.submit(nb.ImageRequest(prompt="[[stuck]] holds b's only slot"))
        async with nb.Router([a, b], strategy="priority", hedge=hedge) as router:
            for i in range(3):
                await drive(clock, router.generate(f"learn {i}"))
            task = await router.submit(nb.ImageRequest(prompt="slow"))
            started = clock.now()
            result = await drive(clock, task.result())
            assert result.task_id == "t3"
            # Handed over at the status poll that saw it done (the poll after its 30 s).
            seen = max(at for at, kind in sa.log if kind == "status")
            assert clock.now() - seen <= 0.1  # one step of the fake clock's driver
            assert clock.now() - started < 35.0
            assert router.statistics().hedges == 0
        assert sb.count("submit") == 1
        assert not blocker.done()


async def test_f44_hedges_due_at_once_stay_within_their_share(clock: FakeClock) -> None:
    """Three tasks pass their p99 at the same instant: their hedges are sent together, yet no
    more of them than max_share of the submits allows (one here), however their creates
    interleave."""
    sa = FakeApixo(clock, latency=lambda i: 100.0 if i >= 3 else 5.0)
    a, _ = apixo(clock, server=sa)
    b, sb = apixo(clock, key="key-b", base_url="https://b.test")
    answered: list[int] = []

    def slow_first_answer(request: HttpRequest) -> object:
        # The first hedge's create is answered after a second: the others are due meanwhile.
        if request.kind == "submit" and not answered:
            answered.append(1)
            return json_response(
                {"code": 429, "message": "x", "data": None}, 429, {"retry-after": "1"}
            )
        return None

    sb.hook = slow_first_answer  # type: ignore[assignment]
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.2)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):
            await drive(clock, router.generate(f"learn {i}"))
        slow = [await router.submit(nb.ImageRequest(prompt=f"slow {i}")) for i in range(3)]
        await clock.run_until(lambda: all(t.done() for t in slow), limit=7200)
        stats = router.statistics()
    # 6 submits: one hedge is within 20 %, two are not (the first was answered 429, then 200).
    assert sb.count("submit") == 2
    assert stats.hedges == 1


async def test_f42_closing_the_router_ends_callers_waiting_for_a_circuit(clock: FakeClock) -> None:
    """A caller waiting for an open circuit when the router closes gets ClientClosedError at
    once, and nothing is created for it after the close (the clients stay open: not owned)."""
    one, two = Maintenance(), Maintenance()
    a = crun(clock, one)
    b = crun(clock, two, key="key-d")
    async with a, b:
        router = nb.Router([a, b], random=lambda: 0.5)
        async with router:
            for i in range(5):
                await drive(clock, router.generate(f"p{i}"))
            assert (circuit(router, 0), circuit(router, 1)) == ("open", "open")
            job = asyncio.ensure_future(router.generate("waits"))
            await clock.advance(5.0)
            assert not job.done()
            one.down = two.down = False
        closed_at = clock.now()
        await clock.run_until(job.done, limit=7200)
        assert isinstance(job.exception(), nb.ClientClosedError)
        assert clock.now() - closed_at < 1.0
        await clock.advance(60.0)
        assert created(one, two) == 0


class _SlowProbeClaim:
    """A shared circuit (coordinator) whose probe claim takes a while to answer."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def adopt(self, breaker: object) -> None:
        return None

    async def claim_probe(self) -> bool:
        await self.answer.wait()
        return True

    async def publish(self, breaker: object) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_f41_a_caller_cancelled_while_claiming_the_probe_frees_it(clock: FakeClock) -> None:
    """The caller holding the half-open probe is cancelled while the coordinator answers its
    claim: the probe is free again, so the next caller probes (and closes) the circuit instead
    of waiting for a probe that will never end."""
    down = Maintenance()
    a = crun(clock, down)
    async with nb.Router([a], owns_clients=True, random=lambda: 0.5) as router:
        slow = _SlowProbeClaim()
        router._accounts[0].shared = slow  # type: ignore[assignment]
        for i in range(5):
            await drive(clock, router.generate(f"p{i}"))
        assert circuit(router) == "open"
        await clock.advance(31.0)
        cancelled = asyncio.ensure_future(router.generate("cancelled while claiming"))
        await clock.advance(0.5)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        slow.answer.set()
        down.down = False
        result = await drive(clock, router.generate("next", timeout=60.0))
        assert isinstance(result, nb.ImageResult)
        assert circuit(router) == "closed"


class _RecordedCircuit(_SlowProbeClaim):
    """A shared circuit (coordinator) that records what is published after its close."""

    def __init__(self) -> None:
        super().__init__()
        self.answer.set()
        self.closed = False
        self.published_after_close = 0

    async def publish(self, breaker: object) -> None:
        self.published_after_close += self.closed

    async def aclose(self) -> None:
        self.closed = True


async def test_f41_a_closed_router_publishes_no_circuit(clock: FakeClock) -> None:
    """Tasks the router sent end after its close (the clients, not its own, keep tracking
    them) and open the circuit: nothing is published on the closed coordinator connection
    (it would reopen it, or leave a write pending past the loop's end)."""
    a, _ = apixo(clock)
    b, _ = apixo(clock, key="key-b")
    shared = _RecordedCircuit()
    async with a, b:
        async with nb.Router([a, b], strategy="priority") as router:
            router._accounts[0].shared = shared  # type: ignore[assignment]
            tasks = [await router.submit(nb.ImageRequest(prompt=f"[[fail]] {i}")) for i in range(5)]
        await clock.run_until(lambda: all(t.done() for t in tasks), limit=7200)
        assert circuit(router) == "open"
    assert shared.closed
    assert shared.published_after_close == 0


async def test_f44_a_hedge_of_unknown_outcome_counts_against_the_share(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hedge create is reset after the second account made the task: each may be paid,
    so each counts as a hedge (max_share holds in paid creates) and is logged at WARNING with
    its account; the first tasks still end on their own account."""
    sa = FakeApixo(clock, latency=lambda i: 100.0 if i >= 3 else 5.0)
    a, _ = apixo(clock, server=sa)
    b, sb = apixo(clock, key="key-b", base_url="https://b.test")
    reset_after_create(sb)
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.2)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):
            await drive(clock, router.generate(f"learn {i}"))
        slow = []
        with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
            for i in range(3):  # one after another: each hedge's outcome is known first
                slow.append(await router.submit(nb.ImageRequest(prompt=f"slow {i}")))
                await clock.advance(40.0)
            await clock.run_until(lambda: all(t.done() for t in slow), limit=7200)
        stats = router.statistics()
    assert all(t.ref is not None and t.ref.provider == "apixo" for t in slow)
    assert stats.hedges == 1
    assert len(sb.tasks) == 1  # created once, not once per slow task
    assert any(router.accounts[1] in r.getMessage() for r in caplog.records)


async def test_f44_a_hedge_still_waiting_for_a_slot_when_the_first_wins_is_never_sent(
    clock: FakeClock,
) -> None:
    """The hedge waits for the second account's only slot; the first task wins meanwhile, then
    the slot frees while the router is still open: the hedge's create is never sent (nobody
    needs it), nothing counts as a hedge (no ``hedge`` event either), and the slot it waited
    for is free again."""
    sa = FakeApixo(clock, latency=lambda i: 30.0 if i == 3 else 5.0)
    a, _ = apixo(clock, server=sa)
    sb = FakeApixo(clock, latency=lambda i: 60.0)  # the blocker ends after the winner
    limits = nb.Limits(concurrent_tasks=1)
    b, _ = apixo(clock, key="key-b", server=sb, base_url="https://b.test", limits=limits)
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with a, b:
        blocker = await b.submit(nb.ImageRequest(prompt="holds b's only slot for 60 s"))
        seen: list[Any] = []
        async with nb.Router(
            [a, b], strategy="priority", hedge=hedge, on_event=seen.append
        ) as router:
            for i in range(3):
                await drive(clock, router.generate(f"learn {i}"))
            task = await router.submit(nb.ImageRequest(prompt="slow"))
            assert (await drive(clock, task.result())).task_id == "t3"
            await clock.advance(1.0)
            assert b.statistics().waiting == 0  # the hedge stopped waiting for b's slot
            await drive(clock, blocker.result())  # b's slot frees, the router still open
            await clock.advance(120.0)
            stats = router.statistics()
            assert sb.count("submit") == 1  # the blocker's create only
            assert (stats.hedges, stats.hedge_losers_ended) == (0, 0)
            assert b.statistics().in_flight == 0
            # b takes creates again: the dropped hedge left no slot or admission behind.
            assert (await drive(clock, b.generate("after"))).task_id == "t1"
        assert [e for e in seen if e.kind == "hedge"] == []
        assert any(e.kind == "account_chosen" and e.account == router.accounts[1] for e in seen)


async def test_f44_a_hedge_refused_with_429_is_not_retried_once_the_first_wins(
    clock: FakeClock,
) -> None:
    """The hedge's create is answered 429 with Retry-After 60 s (nothing created), so its retry
    waits for the account's window; the first task wins meanwhile: the retry is never sent,
    nothing counts as a hedge, and the hedge's slot is released."""
    sa = FakeApixo(clock, latency=lambda i: 30.0 if i == 3 else 5.0)
    a, _ = apixo(clock, server=sa)
    b, sb = apixo(clock, key="key-b", base_url="https://b.test")

    def wait_a_minute(request: HttpRequest) -> object:
        if request.kind == "submit":
            return json_response(
                {"code": 429, "message": "x", "data": None}, 429, {"retry-after": "60"}
            )
        return None

    sb.hook = wait_a_minute  # type: ignore[assignment]
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):
            await drive(clock, router.generate(f"learn {i}"))
        task = await router.submit(nb.ImageRequest(prompt="slow"))
        assert (await drive(clock, task.result())).task_id == "t3"
        assert sb.count("submit") == 1  # the hedge's first create, refused
        await clock.advance(120.0)
        stats = router.statistics()
        assert sb.count("submit") == 1  # its retry was never sent
        assert (stats.hedges, stats.hedge_losers_ended) == (0, 0)
        assert b.statistics().in_flight == 0


async def test_f44_a_journaled_hedge_never_sent_leaves_no_intent(
    clock: FakeClock, tmp_path: Path
) -> None:
    """With journals, the hedge refused with 429 writes its intent before each attempt; once
    the first task wins its retry is not sent, and its journal keeps no row for the prompt (a
    rerun would report an intent as a create of unknown outcome, and never submit it)."""
    sa = FakeApixo(clock, latency=lambda i: 30.0 if i == 3 else 5.0)
    a, _ = apixo(clock, server=sa, journal=tmp_path / "a.sqlite")
    b, sb = apixo(clock, key="key-b", base_url="https://b.test", journal=tmp_path / "b.sqlite")

    def wait_a_minute(request: HttpRequest) -> object:
        if request.kind == "submit":
            return json_response(
                {"code": 429, "message": "x", "data": None}, 429, {"retry-after": "60"}
            )
        return None

    sb.hook = wait_a_minute  # type: ignore[assignment]
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):
            await drive(clock, router.generate(f"learn {i}"))
        task = await router.submit(nb.ImageRequest(prompt="slow"), key="line-4")
        assert (await drive(clock, task.result())).task_id == "t3"
        await clock.advance(120.0)
        assert sb.count("submit") == 1
        journal = b._life.journal
        assert journal is not None
        for _ in range(200):  # the journal writes in a worker thread: real time, not fake
            if await journal.journal.get("line-4") is None:
                break
            await asyncio.sleep(0.01)
        assert await journal.journal.get("line-4") is None
        assert b.statistics().in_flight == 0
