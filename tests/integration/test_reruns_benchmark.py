"""Fault matrix row F48 through ``benchmarks.reruns``: real worker processes SIGKILLed and rerun
from their journal on an account whose window binds (a few cycles; the benchmark runs 25)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reruns import cycles
from nanobanana_async.testing import ServerLimits


def test_f48_killed_and_rerun_workers_keep_the_window_and_the_cap(tmp_path: Path) -> None:
    """F48: two kill -9s and reruns of a worker told the account's limits (20 requests / 2 s,
    5 tasks), each rerun started at once from the same journal: the simulator sees no 429,
    never more than the window or the cap, no prompt created twice, and every prompt ends
    (an intent with no task id is reported, never sent again)."""
    limits = ServerLimits(requests=20, per=2.0, concurrent_tasks=5)
    row = cycles(limits, cycles=2, prompts=12, coordinator=None, folder=tmp_path, seed=7)
    assert set(row["outcomes"]) <= {"ImageResult", "SubmitOutcomeUnknownError"}, row
    assert sum(row["outcomes"].values()) == 12
    assert row["server_429s"] == 0
    assert int(row["max_window"].split("/")[0]) <= 20
    assert int(row["max_running"].split("/")[0]) <= 5
    assert row["duplicates"] == 0
