"""The CLI's balance command, --min-balance, and a batch that runs out of credits (issue 11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobanana_async.cli import main
from nanobanana_async.testing import Latency, Simulator


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """An apixo simulator holding 10 credits, with the environment pointing the CLI at it."""
    simulator = Simulator("apixo", latency=Latency(median=0.3, sigma=0.2), seed=3, credits=10)
    simulator.start_in_thread()
    monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    yield simulator
    simulator.stop_thread()


def test_balance_prints_the_credits(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance"]) == 0
    assert capsys.readouterr().out == "apixo: 10\n"


def test_balance_without_an_endpoint_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    assert main(["balance", "--provider", "xingchao"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "xingchao" in err[0]


def test_min_balance_refuses_to_start(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(tmp_path / "o"), "--min-balance", "11"]) == 2
    assert "below --min-balance 11" in capsys.readouterr().err
    assert sim.stats.creates == 0


def test_batch_out_of_credits_lists_the_rest_as_not_submitted(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """30 prompts, 10 credits: 10 succeed, 20 are listed as not submitted, exit 1, no task lost
    and no prompt reported as failed; the same command with credits again sends only those 20."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"a cat number {i}\n" for i in range(30)))
    out = tmp_path / "o"
    code = main(["batch", str(prompts), "--out", str(out), "--concurrent", "4"])
    assert code == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"succeeded": 10, "not_submitted": 20}
    assert sim.stats.creates == 10
    # Stopped early: only the creates already in flight met the empty account.
    assert sim.stats.rejected <= 4
    err = capsys.readouterr().err
    assert "20 prompt(s) not submitted" in err
    # No task lost: with credits again, the same command submits exactly the 20 it did not,
    # and none of the 10 that were paid for is created twice.
    sim.credits = 100
    assert main(["batch", str(prompts), "--out", str(out), "--concurrent", "4"]) == 0
    assert (sim.stats.creates, sim.stats.duplicate_creates) == (30, 0)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(row["line"] for row in rows) == list(range(1, 31))
    assert all(row["status"] == "succeeded" and row["files"] for row in rows)
    assert "20 new prompt(s); 10 from the journal" in " ".join(capsys.readouterr().err.split())


def test_300_prompts_on_an_account_that_pays_for_100(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11's done-when at its own scale: the account runs out after 100 creates. The other
    200 prompts are listed as not submitted, exit 1; no cascade of 402s (only creates already
    in flight meet the empty account); every prompt has exactly one row (no task lost)."""
    simulator = Simulator("apixo", latency=Latency(median=0.1, sigma=0.2), seed=5, credits=100)
    simulator.start_in_thread()
    try:
        monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
        monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
        monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
        prompts = tmp_path / "p.txt"
        prompts.write_text("".join(f"a cat number {i}\n" for i in range(300)))
        out = tmp_path / "o"
        code = main(["batch", str(prompts), "--out", str(out), "--concurrent", "20"])
    finally:
        simulator.stop_thread()
    assert code == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(row["prompt"] for row in rows) == sorted(f"a cat number {i}" for i in range(300))
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"succeeded": 100, "not_submitted": 200}
    assert simulator.stats.creates == 100
    assert simulator.stats.rejected <= 20
    assert "200 prompt(s) not submitted" in capsys.readouterr().err
