"""The router scenarios (issue 21's "done when"): two simulated accounts, apixo and crun, each
600 requests / 10 s, 50 tasks at once, tasks of mean 1 s, 900 prompts (``--prompts``).

1. *two accounts*: one account alone, then both through a ``Router``: the wall-time ratio, and
   per account the simulator's 429s, busiest window and most tasks at once.
2. *outage*: crun answers creates with its maintenance refusal (455) from 1 s to 7 s: prompts
   that succeed, creates crun refused, crun's creates before / during / after the outage, and
   prompts created on both providers. The router's circuits cool down for ``COOLDOWN`` s (a
   ``CircuitPolicy``: the default 30 s is longer than this batch), and one more row with the
   default shows the account lost for the rest of the batch. Per strategy: a strategy that
   prefers another account probes a recovered one only when it needs it.
3. *resets*: apixo drops 5 % of its create answers after creating the task: the unknown
   outcomes the caller gets (and how many name the apixo account), and prompts created on two
   providers.
4. *kill*: a batch through both accounts with a journal per client, in a child process
   SIGKILLed a third of the way through, then run again: prompts created twice (on one account
   or on both) and what the rerun reported.

Run through ``python -m benchmarks --scenarios router`` (or ``python -m benchmarks.router``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nanobanana_async as nb
from nanobanana_async._routing import Strategy  # the Router's strategy names; not re-exported
from nanobanana_async.testing import Faults, Latency, Outage, ServerLimits, Simulator, Simulators

ACCOUNT = ServerLimits(requests=600, per=10.0, concurrent_tasks=50)
LIMITS = nb.Limits(requests=600, per=10.0, concurrent_tasks=50)
MEAN, SIGMA = 1.0, 0.3
QUICK_MEAN = 0.2  # --quick: shorter tasks, so a smoke run takes seconds, not tens of seconds
OUTAGE = (1.0, 7.0)  # seconds after the simulators start
COOLDOWN = 2.0  # the outage rows' circuit cooldown: crun is probed within seconds of its end
RESETS = 0.05
PROVIDERS = ("apixo", "crun")


def latency(mean: float) -> Latency:
    """Lognormal task durations of mean ``mean`` seconds and log-spread ``SIGMA``."""
    return Latency(median=mean / math.exp(SIGMA**2 / 2), sigma=SIGMA)


LATENCY = latency(MEAN)


def _simulators(
    *, outage: bool = False, resets: float = 0.0, seed: int = 1, durations: Latency = LATENCY
) -> Simulators:
    crun_outages = [Outage(start=OUTAGE[0], end=OUTAGE[1])] if outage else []
    return Simulators(
        [
            Simulator(
                "apixo",
                latency=durations,
                limits=ACCOUNT,
                faults=Faults(reset_after_create=resets, kinds=frozenset({"create"})),
                seed=seed,
                record_timeline=True,
            ),
            Simulator(
                "crun",
                latency=durations,
                limits=ACCOUNT,
                outages=crun_outages,
                seed=seed + 1,
                record_timeline=True,
            ),
        ]
    )


def _client(sim: Simulator) -> nb.Client:
    return nb.Client(sim.provider, api_key=sim.api_key, base_url=sim.base_url, limits=LIMITS)


def _pair(values: Sequence[object]) -> str:
    return "/".join(str(v) for v in values)


def _accounts(sims: Simulators, names: Sequence[str]) -> dict[str, Any]:
    """Server-side columns, one value per account in ``names`` joined by ``/``."""
    stats = [sims.stats[n] for n in names]
    return {
        "accounts": _pair(names),
        "creates": _pair([s.creates for s in stats]),
        "server_429s": _pair([s.rate_limited for s in stats]),
        "max_window": _pair([s.max_window for s in stats]),
        "max_running": _pair([s.max_concurrent for s in stats]),
        "on_both": len(sims.prompts_on_several()),
    }


async def _batch(target: nb.Client | nb.Router, prompts: int) -> tuple[float, list[object]]:
    """The batch as ``as_completed`` feeds it (the CLI's way): at most the accounts' task caps
    added up are submitted and unfinished at once, so a prompt is given to an account only
    when it can start there soon (all 900 at once would queue half of them on each account,
    where a circuit opening later cannot take them back)."""
    start = time.perf_counter()
    outcomes: list[object] = []
    async for task in target.as_completed(f"prompt {i}" for i in range(prompts)):
        try:
            outcomes.append(await task)
        except nb.NanoBananaError as exc:
            outcomes.append(exc)
    return time.perf_counter() - start, outcomes


def _outcomes(outcomes: Sequence[object]) -> dict[str, Any]:
    kinds = collections.Counter(
        "ok" if isinstance(o, nb.ImageResult) else type(o).__name__ for o in outcomes
    )
    ok = kinds.pop("ok", 0)
    return {"succeeded": ok, "errors": dict(kinds) or ""}


async def two_accounts(
    prompts: int, seed: int = 1, durations: Latency = LATENCY
) -> list[dict[str, Any]]:
    """One account alone, then two through a Router; the second row carries the ratio."""
    rows = []
    async with _simulators(seed=seed, durations=durations) as sims:
        async with _client(sims["apixo"]) as client:
            wall, outcomes = await _batch(client, prompts)
        rows.append(
            {"run": "apixo alone", "wall_s": round(wall, 2), **_outcomes(outcomes)}
            | _accounts(sims, ["apixo"])
        )
    alone = wall
    async with _simulators(seed=seed, durations=durations) as sims:
        clients = [_client(sims[p]) for p in PROVIDERS]
        async with nb.Router(clients, owns_clients=True) as router:
            wall, outcomes = await _batch(router, prompts)
        rows.append(
            {
                "run": "router soonest",
                "wall_s": round(wall, 2),
                "speedup": round(alone / wall, 2),
                **_outcomes(outcomes),
            }
            | _accounts(sims, PROVIDERS)
        )
    return rows


async def outage(
    prompts: int,
    strategy: Strategy,
    seed: int = 1,
    *,
    cooldown: float = COOLDOWN,
    durations: Latency = LATENCY,
) -> dict[str, Any]:
    """crun refuses creates with 455 from 1 s to 7 s; crun's creates counted per phase.

    ``cooldown``: the circuits' ``CircuitPolicy.cooldown``; with the default 30 s crun's
    circuit stays open past the end of the batch.
    """
    policy = nb.CircuitPolicy(cooldown=cooldown, max_cooldown=max(300.0, cooldown))
    async with _simulators(outage=True, seed=seed, durations=durations) as sims:
        clients = [_client(sims[p]) for p in PROVIDERS]
        async with nb.Router(
            clients, owns_clients=True, strategy=strategy, circuit=policy
        ) as router:
            wall, outcomes = await _batch(router, prompts)
            circuit = router.statistics().accounts[1].circuit
        assert sims.started_at is not None
        created = [at - sims.started_at for at, _ in sims.stats["crun"].spans]
    phases = collections.Counter(
        "before" if t < OUTAGE[0] else "during" if t < OUTAGE[1] else "after" for t in created
    )
    return {
        "run": f"outage {strategy}, cooldown {cooldown:g} s",
        "wall_s": round(wall, 2),
        **_outcomes(outcomes),
        "crun_refused": sims.stats["crun"].refused,
        "crun_creates_before/during/after": _pair(
            [phases["before"], phases["during"], phases["after"]]
        ),
        "crun_first_after_s": round(
            min((t for t in created if t >= OUTAGE[1]), default=math.nan), 1
        ),
        "crun_circuit_at_end": circuit,
    } | _accounts(sims, PROVIDERS)


async def resets(prompts: int, seed: int = 1, durations: Latency = LATENCY) -> dict[str, Any]:
    """apixo drops ``RESETS`` of its create answers after creating the task."""
    async with _simulators(resets=RESETS, seed=seed, durations=durations) as sims:
        clients = [_client(sims[p]) for p in PROVIDERS]
        async with nb.Router(clients, owns_clients=True) as router:
            wall, outcomes = await _batch(router, prompts)
            apixo = router.accounts[0]
    unknown = [o for o in outcomes if isinstance(o, nb.SubmitOutcomeUnknownError)]
    stats = sims.stats
    return {
        "run": f"apixo resets {RESETS:.0%}",
        "wall_s": round(wall, 2),
        **_outcomes(outcomes),
        "unknown": len(unknown),
        "unknown_naming_apixo": sum(apixo in str(e) for e in unknown),
        "apixo_resets": stats["apixo"].faults["reset_after_create"],
        "created_total": stats["apixo"].creates + stats["crun"].creates,
        "duplicates_on_one": sum(s.duplicate_creates for s in stats.values()),
    } | _accounts(sims, PROVIDERS)


# ------------------------------------------------------------------------ kill and rerun


async def _child(prompts: int, journals: Path) -> dict[str, Any]:
    """The batch the kill scenario runs in a child process, on the accounts in its environment."""
    clients = [
        nb.Client(
            p,
            api_key=os.environ[f"NANOBANANA_API_KEY_{p.upper()}"],
            base_url=os.environ[f"NANOBANANA_BASE_URL_{p.upper()}"],
            limits=LIMITS,
            journal=journals / f"{p}.sqlite",
        )
        for p in PROVIDERS
    ]
    async with nb.Router(clients, owns_clients=True) as router:
        _, outcomes = await _batch(router, prompts)
    return _outcomes(outcomes)


async def _run_child(
    sims: Simulators, prompts: int, journals: Path, kill_after: int | None
) -> dict[str, Any] | None:
    """Run the child batch; SIGKILL it once the accounts created ``kill_after`` tasks."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.router",
        "--child",
        str(journals),
        "--prompts",
        str(prompts),
        env={**os.environ, **sims.env()},
        stdout=asyncio.subprocess.PIPE,
    )
    if kill_after is not None:
        while sum(s.creates for s in sims.stats.values()) < kill_after:
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    out, _ = await proc.communicate()
    if kill_after is not None:
        return None
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def kill_and_rerun(
    prompts: int, seed: int = 1, durations: Latency = LATENCY
) -> dict[str, Any]:
    """A journaled batch through both accounts, SIGKILLed a third of the way, then rerun."""
    with tempfile.TemporaryDirectory() as folder:
        async with _simulators(seed=seed, durations=durations) as sims:
            await _run_child(sims, prompts, Path(folder), kill_after=prompts // 3)
            at_kill = _pair([sims.stats[p].creates for p in PROVIDERS])
            # Let the tasks the dead batch left finish, so the rerun finds them done.
            loop = asyncio.get_running_loop()
            ends = [end for name in sims for _, end in sims[name].stats.spans]
            await asyncio.sleep(max(ends, default=0.0) - loop.time())
            rerun = await _run_child(sims, prompts, Path(folder), kill_after=None)
            assert rerun is not None
            counts = collections.Counter[str]()
            for name in sims:
                counts.update(sims[name].created_prompts())
    return {
        "run": "kill at 1/3, rerun",
        "creates_at_kill": at_kill,
        **{f"rerun_{k}": v for k, v in rerun.items()},
        "prompts_created": len(counts),
        "created_twice": sum(1 for n in counts.values() if n > 1),
    } | _accounts(sims, PROVIDERS)


async def run_all(
    prompts: int, strategies: Sequence[Strategy], seed: int = 1, *, mean: float = MEAN
) -> list[dict[str, Any]]:
    """Every router scenario at ``prompts`` prompts, one row each (scenario 1: two rows);
    ``mean``: the tasks' mean duration in seconds (``QUICK_MEAN`` for a smoke run)."""
    began = time.perf_counter()
    durations = latency(mean)

    def done(what: str) -> None:
        print(f"  done: router {what} ({time.perf_counter() - began:.0f} s)", file=sys.stderr)

    rows = await two_accounts(prompts, seed, durations)
    done("two accounts")
    for strategy in strategies:
        rows.append(await outage(prompts, strategy, seed, durations=durations))
        done(f"outage {strategy}")
    default = nb.CircuitPolicy().cooldown
    rows.append(await outage(prompts, strategies[0], seed, cooldown=default, durations=durations))
    done(f"outage {strategies[0]}, cooldown {default:g} s")
    rows.append(await resets(prompts, seed, durations))
    done("resets")
    rows.append(await kill_and_rerun(prompts, seed, durations))
    done("kill and rerun")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.router")
    parser.add_argument("--prompts", type=int, default=900)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategies", default="soonest,priority")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(_child(args.prompts, args.child))))
        return 0
    from .__main__ import _table

    rows = asyncio.run(run_all(args.prompts, args.strategies.split(","), args.seed))
    for row in rows:
        print(_table([row], list(row)), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
