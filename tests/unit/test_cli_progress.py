"""The batch's progress counting (pure: times are passed in) and its submit loop."""

from __future__ import annotations

import asyncio
import io
import json
import random
from pathlib import Path
from typing import cast

import pytest
from rich.console import Console

import nanobanana_async as nb
from nanobanana_async.cli._batch import SUBMIT_WINDOW, Manifest, _run_batch
from nanobanana_async.cli._progress import (
    BatchState,
    progress_record,
    render_plain,
    render_progress,
)


def _text(state: BatchState, now: float) -> str:
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=False).print(render_progress(state, now))
    return out.getvalue()


def test_a_finished_task_shows_as_downloading_until_saved() -> None:
    """Between its task's end and its file, a prompt is in the downloading column."""
    state = BatchState(total=3, started=0.0, request_limit=100)
    for line in (1, 2, 3):
        state.accepted(line, 0.5)
    state.finished(1, 2.0)
    state.finished(2, 2.1)
    state.saved(2.5, ok=True)
    assert (state.submitted, state.running, state.downloading, state.done) == (3, 1, 1, 1)
    header, row = [line for line in _text(state, 3.0).splitlines() if "│" in line or "┃" in line]
    assert "downloading" in header
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["3/3", "1", "1", "1", "0"]


def test_counts_never_go_backwards() -> None:
    """Seeded random event orders: submitted, done and failed only grow, and every prompt is
    in exactly one column."""
    rng = random.Random(12)
    for _ in range(50):
        total = rng.randint(1, 40)
        state = BatchState(total=total, started=0.0)
        phase = dict.fromkeys(range(total), "waiting")
        now, seen = 0.0, (0, 0, 0)
        while any(p not in ("done", "failed", "skipped") for p in phase.values()):
            now += rng.random()
            line = rng.choice(
                [n for n, p in phase.items() if p not in ("done", "failed", "skipped")]
            )
            step = rng.random()
            if phase[line] == "waiting":
                if step < 0.8:
                    state.accepted(line, now)
                    phase[line] = "running"
                elif step < 0.9:
                    state.refused(now)
                    phase[line] = "failed"
                else:
                    state.not_submitted()
                    phase[line] = "skipped"
            elif phase[line] == "running":
                if step < 0.85:
                    state.finished(line, now)
                    phase[line] = "downloading"
                else:
                    state.task_failed(line, now)
                    phase[line] = "failed"
            else:
                state.saved(now, ok=step < 0.9)
                phase[line] = "done" if step < 0.9 else "failed"
            counts = (state.submitted, state.done, state.failed)
            assert all(a >= b for a, b in zip(counts, seen, strict=True))
            seen = counts
            waiting = sum(1 for p in phase.values() if p == "waiting")
            columns = state.running + state.downloading + state.done + state.failed
            assert columns + state.skipped + waiting == total
            assert state.eta(now) != "0m00s"


def test_eta_is_never_zero_while_tasks_run() -> None:
    """166 of 200 ended in 2 s and 34 still run (1.5 s each): the ETA covers the tail, not
    0m00s from the fast rate."""
    state = BatchState(total=200, started=0.0)
    for line in range(200):
        state.accepted(line, 0.01 * line)
    for line in range(166):
        state.finished(line, 1.5 + 0.003 * line)
        state.saved(1.5 + 0.003 * line, ok=True)
    assert state.running == 34
    assert state.eta(2.0) == "0m01s"  # last accept 1.99 s + 1.5 s typical, floored at 1 s
    assert state.eta(2.6) == "0m01s"


def test_eta_follows_the_observed_rate() -> None:
    """One prompt ending a second, 50 left: about 50 s; '-' before any end and after the last."""
    state = BatchState(total=100, started=0.0)
    assert state.eta(5.0) == "-"
    for line in range(100):
        state.accepted(line, 0.0)
    for line in range(50):
        state.finished(line, line + 1.0)
        state.saved(line + 1.0, ok=True)
    assert state.eta(50.0) == "0m50s"
    for line in range(50, 100):
        state.finished(line, 60.0)
        state.saved(60.0, ok=True)
    assert state.eta(60.0) == "-"


def test_eta_ignores_the_wait_for_the_first_results() -> None:
    """Nothing ends for 20 s (submits, first latency), then one a second: the ETA follows
    the pace since the first end, not the 20 s of waiting (it read 20m59s)."""
    state = BatchState(total=120, started=0.0)
    for line in range(120):
        state.accepted(line, line * 0.15)
    for line in range(5):
        state.finished(line, 20.0 + line)
        state.saved(20.0 + line, ok=True)
    assert state.eta(24.0) == "1m55s"  # 115 left at one a second


def test_a_retries_column_appears_once_there_are_retries() -> None:
    """No retries: no column (the table fits 80 columns); then their count is shown."""
    state = BatchState(total=1, started=0.0, request_limit=100)
    assert "retries" not in _text(state, 1.0)
    state.retries = 37
    header, row = [line for line in _text(state, 1.0).splitlines() if "│" in line or "┃" in line]
    assert header.split("┃")[7].strip() == "retries"
    assert row.split("│")[7].strip() == "37"


async def test_a_batch_stops_submitting_when_the_coordinator_is_gone(tmp_path: Path) -> None:
    """No Redis: the submits in the window fail, the rest are not submitted (each would wait
    Timeouts.coordinator and fail the same way: 16 rounds of 30 s for 1,000 prompts)."""
    calls = 0

    class NoCoordinator:
        async def submit(self, request: nb.ImageRequest, *, key: str) -> nb.Task:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            raise nb.CoordinatorUnavailableError("the coordinator (Redis) did not answer")

    lines = {f"k{n}": (n, nb.ImageRequest(prompt=f"p{n}")) for n in range(1, 201)}
    state = BatchState(total=200, started=0.0)
    rows = Manifest(tmp_path / "results.jsonl")

    async def finish(line: int, request: nb.ImageRequest, result: nb.ImageResult) -> None:
        raise AssertionError("nothing finishes")

    client = cast("nb.Client", NoCoordinator())
    stop = await _run_batch(client, lines, state, rows, finish, concurrent=1000)
    assert isinstance(stop, nb.CoordinatorUnavailableError)
    assert calls <= SUBMIT_WINDOW
    assert [r["status"] for r in rows.rows] == ["not_submitted"] * 200
    assert state.skipped == 200


def test_plain_and_json_progress_carry_counts_rate_and_eta() -> None:
    """A plain line and a JSON record show the same counts, the recent rate and the ETA."""
    state = BatchState(total=10, started=0.0, request_limit=600)
    for line in range(1, 7):
        state.accepted(line, 0.1 * line)
    for line, at in ((1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)):
        state.finished(line, at)
        state.saved(at, ok=True)
    state.task_failed(5, 5.5)
    state.requests_in_window, state.retries = 42, 3
    record = progress_record(state, 6.0)
    assert json.loads(json.dumps(record)) == record
    assert record["elapsed"] == 6.0
    assert (record["total"], record["submitted"], record["running"]) == (10, 6, 1)
    assert (record["done"], record["failed"], record["not_submitted"]) == (4, 1, 0)
    assert record["rate"] == pytest.approx(5 / 6.0, abs=0.01)
    assert record["eta"] is not None
    assert record["eta"] == pytest.approx(state.eta_seconds(6.0), abs=0.5)
    assert (record["requests_in_window"], record["request_limit"], record["retries"]) == (
        42,
        600,
        3,
    )
    text = render_plain(state, 6.0)
    assert text.startswith("[6s] 4/10 done, 1 failed, 1 running, 0 downloading, 6 submitted")
    assert f"ETA {state.eta(6.0)}" in text
    assert "0.8/s" in text
    assert "requests 42/600" in text
    assert "3 retries" in text


def test_the_rate_counts_only_recent_ends() -> None:
    """Ends older than the ETA window no longer count toward the rate."""
    state = BatchState(total=100, started=0.0)
    for line in range(10):
        state.accepted(line, 0.0)
        state.task_failed(line, 1.0)
    assert state.rate(10.0) == pytest.approx(1.0)
    assert state.rate(200.0) == 0.0
