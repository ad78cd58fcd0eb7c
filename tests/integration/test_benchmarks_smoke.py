"""A tiny run of the benchmark scenarios: the harness works (figures are not asserted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import attrs
import pytest

import nanobanana_async as nb
from benchmarks import loops, scenarios
from benchmarks.__main__ import main


async def test_throughput_scenario_runs_both_clients() -> None:
    """Both clients finish a tiny regime and report every column the table prints."""
    # A fifth of the latency: the baseline's scaled waits shrink with it.
    regime = attrs.evolve(scenarios.SCENARIO_1, tasks=20, mean_latency=0.35)
    ours, timeline = await scenarios.run_ours(regime)
    theirs, _ = await scenarios.run_baseline(regime)
    for row in (ours, theirs):
        assert row["succeeded"] == 20
        assert row["max_concurrent_server"] <= regime.concurrent
        assert 0 < row["ratio_to_clairvoyant"] <= 1.0
    assert ours["server_429s"] == 0
    assert timeline["arrivals"]
    assert timeline["in_flight"]


def test_memory_and_overhead_cases_run(tmp_path: Path) -> None:
    """The memory cases, the overhead and the loop scenario run at small sizes and write JSON."""
    assert main(["--scenarios", "3,4,loop", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    assert {row["case"] for row in report["memory"]} == {
        "ours-gather",
        "ours-as-completed",
        "baseline-gather",
    }
    assert all(row["bytes_per_pending_call"] > 0 for row in report["memory"])
    assert [row["tasks"] for row in report["overhead"]] == [200, 2000]
    (loop,) = report["responsiveness"]
    assert loop["checks_due_at_once"] == 1000
    assert loop["max_loop_iteration_ms"] > 0


def test_overhead_counts_one_check_per_task() -> None:
    """With instant tasks, each task costs one submit and about one status check."""
    row = asyncio.run(scenarios.overhead(300))
    assert row["status_checks_per_task"] <= 1.1


def test_clairvoyant_checks_at_the_finish_within_the_limits() -> None:
    """The clairvoyant client: one check at each exact finish, held back only by the limits."""
    unlimited = 10**6
    # Nothing to wait for but the tasks: all submitted at 0, the last seen at its finish.
    assert scenarios.clairvoyant_wall([0.5, 2.0, 1.0], unlimited, 1.0, 100) == 2.0
    # A cap of 2: the third and fourth tasks start when the first two are checked.
    assert scenarios.clairvoyant_wall([1.0] * 4, unlimited, 1.0, 2) == 2.0
    # 2 requests per second, 6 requests: sent at 0, 0, 1, 1, 2, 2.
    assert scenarios.clairvoyant_wall([0.0] * 3, 2, 1.0, 100) == 2.0
    # One request a second, a cap of 2: a free slot takes the next submit before a due check.
    # A and B go at 0 and 1, A's check at 2 frees a slot, C goes at 3 and ends at 8 (checking
    # B before submitting C would end at 9).
    assert scenarios.clairvoyant_wall([0.0, 0.0, 5.0], 1, 1.0, 2) == 8.0


def test_paced_clairvoyant_gives_up_the_window_burst() -> None:
    """Paced as the client paces (GCRA, its margin and small burst), the clairvoyant client
    sends evenly: it cannot use a whole window at once as the window's client can."""
    limits = nb.Limits(requests=100, per=10.0)  # 98 usable, a burst of 1: one every ~0.1 s
    instant = [0.0] * 40  # 80 requests
    assert scenarios.clairvoyant_wall(instant, 100, 10.0, 1000) == 0.0
    paced = scenarios.paced_clairvoyant_wall(instant, limits, 1000)
    assert paced == pytest.approx(79 * 10.0 / 97)


def test_cpu_scenario_compares_with_the_plain_loop() -> None:
    """The CPU scenario runs both clients against a threaded simulator and reports ratios."""
    regime = attrs.evolve(scenarios.CPU_REGIME, tasks=20, mean_latency=0.2)
    ours, plain = scenarios.cpu_against_plain(regime)
    assert (ours["client"], plain["client"]) == ("ours", "plain-aiohttp")
    for row in (ours, plain):
        assert row["succeeded"] == 20
        assert row["requests"] >= 40
        assert row["cpu_us_per_request"] > 0
    assert ours["cpu_us_per_task_vs_plain"] == round(
        ours["cpu_us_per_task"] / plain["cpu_us_per_task"], 2
    )


@pytest.mark.parametrize("who", loops.VARIANTS)
def test_plain_loop_with_musts_completes_a_tiny_run(who: str) -> None:
    """Each "plain + musts" client of ``benchmarks.loops`` runs every task to its URLs
    against a threaded simulator at the regime's limits (the pacing ones without a 429)."""
    regime = attrs.evolve(scenarios.CPU_REGIME, tasks=12, mean_latency=0.1)
    paced = "pace" in loops.musts_of(who)
    if paced:
        # A window the run's 24+ requests overfill unless they are paced.
        regime = attrs.evolve(regime, requests=20)
    sim = scenarios._simulator(regime, seed=4).start_in_thread()
    try:
        cpu, ok = asyncio.run(scenarios._client_cpu(who, sim, regime))
    finally:
        sim.stop_thread()
    assert ok == 12
    assert cpu > 0
    assert sim.stats.total_requests >= 24  # a create and at least one check each
    if paced:
        assert sim.stats.rate_limited == 0


def test_plain_with_shield_keeps_a_paid_id_its_caller_left() -> None:
    """The shield must: a caller cancelled while its create is on the wire loses nothing, the
    create's own task runs to its end and keeps the id."""

    async def run(sim: nb.testing.Simulator) -> list[object]:
        regime = attrs.evolve(scenarios.CPU_REGIME, tasks=1)
        async with aiohttp.ClientSession() as session:
            client = loops.PlainWithMusts(
                session,
                sim.base_url,
                sim.api_key,
                regime,
                loops.musts_of("plain+all"),
                first_wait=0.05,
                interval=0.05,
            )
            caller = asyncio.ensure_future(client.generate("a cat"))
            await asyncio.sleep(0)  # the create's task has started
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            await client.drain()
            return client.kept

    sim = scenarios._simulator(scenarios.CPU_REGIME, seed=4).start_in_thread()
    try:
        kept = asyncio.run(asyncio.wait_for(run(sim), 10))
    finally:
        sim.stop_thread()
    assert sim.created_prompts() == {"a cat": 1}
    assert [ref.task_id for ref in kept] == list(sim.stats.checks)  # type: ignore[attr-defined]


def test_plain_with_musts_names_are_checked() -> None:
    assert loops.musts_of("plain+all") == frozenset(loops.MUSTS)
    assert loops.musts_of("plain+mask+parse") == {"mask", "parse"}
    with pytest.raises(ValueError, match="unknown musts"):
        loops.musts_of("plain+shield+speed")
    with pytest.raises(ValueError, match="not a plain"):
        loops.musts_of("ours")


def test_router_scenarios_run_and_keep_their_invariants(tmp_path: Path) -> None:
    """``--scenarios router`` runs every router scenario at a tiny size: all prompts succeed
    through two accounts, none is created on both, and the killed batch's rerun pays for
    nothing twice (figures such as the speed-up are not asserted)."""
    argv = ["--scenarios", "router", "--quick", "--prompts", "24", "--strategies", "soonest"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = {row["run"]: row for row in json.loads((tmp_path / "quick.json").read_text())["router"]}
    assert set(rows) == {
        "apixo alone",
        "router soonest",
        "outage soonest, cooldown 2 s",
        "outage soonest, cooldown 30 s",
        "apixo resets 5%",
        "kill at 1/3, rerun",
    }
    for name in (
        "apixo alone",
        "router soonest",
        "outage soonest, cooldown 2 s",
        "outage soonest, cooldown 30 s",
    ):
        assert rows[name]["succeeded"] == 24
    assert rows["router soonest"]["speedup"] > 0
    resets = rows["apixo resets 5%"]
    assert resets["succeeded"] + resets["unknown"] == 24
    assert resets["unknown_naming_apixo"] == resets["unknown"]
    kill = rows["kill at 1/3, rerun"]
    assert kill["created_twice"] == 0
    assert kill["rerun_succeeded"] > 0
    assert all(row["on_both"] == 0 for row in rows.values())


def test_telemetry_cost_runs_every_variant() -> None:
    """The OpenTelemetry cost scenario runs off, events, on and sampled in process; with the
    SDK on it exports one task span per task (checked inside the run)."""
    pytest.importorskip("opentelemetry.sdk")
    from benchmarks import telemetry

    row = telemetry.telemetry_cost("in-process", 40, 1)
    assert row["tasks"] == 40
    for variant in telemetry.VARIANTS:
        assert row[f"{variant}_us_per_task"] > 0


def test_otel_split_runs_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    """The split of the OpenTelemetry cost (bridge, SDK every trace and a tenth, no-op, the
    SDK calls made directly) runs each variant and prints a figure for each."""
    pytest.importorskip("opentelemetry.sdk")
    from benchmarks import otel_split

    otel_split.main(n=30, rounds=1)
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["none", "noop", "sdk", "sdk10", "direct", "spans", "metrics", "sampled"]
    assert all(float(line.split()[2]) > 0 for line in lines)
