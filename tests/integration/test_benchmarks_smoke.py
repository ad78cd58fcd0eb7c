"""A tiny run of the benchmark scenarios: the harness works (figures are not asserted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import attrs

from benchmarks import scenarios
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
    assert ours["server_429s"] == 0
    assert timeline["arrivals"]
    assert timeline["in_flight"]


def test_memory_and_overhead_cases_run(tmp_path: Path) -> None:
    """The memory cases and the overhead scenario run at small sizes and write JSON."""
    assert main(["--scenarios", "3,4", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    assert {row["case"] for row in report["memory"]} == {
        "ours-gather",
        "ours-as-completed",
        "baseline-gather",
    }
    assert all(row["bytes_per_pending_call"] > 0 for row in report["memory"])
    assert [row["tasks"] for row in report["overhead"]] == [200, 2000]


def test_overhead_counts_one_check_per_task() -> None:
    """With instant tasks, each task costs one submit and about one status check."""
    row = asyncio.run(scenarios.overhead(300))
    assert row["status_checks_per_task"] <= 1.1
