"""The batch's progress off a terminal (issue 23, item 3): plain lines every few seconds when
stdout is a file, JSON lines with ``--progress json``, nothing with ``--quiet``."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobanana_async.cli import main
from nanobanana_async.testing import Latency, Simulator


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch, canary: str) -> Iterator[Simulator]:
    """An apixo simulator in a thread whose key is the canary, the CLI pointed at it."""
    simulator = Simulator("apixo", api_key=canary, latency=Latency(median=0.3, sigma=0.1))
    simulator.start_in_thread()
    monkeypatch.setenv("NANOBANANA_API_KEY", canary)
    monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    yield simulator
    simulator.stop_thread()


def _prompts(tmp_path: Path, n: int) -> Path:
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(n)))
    return prompts


def test_stdout_to_a_file_gets_a_plain_line_at_least_every_5_seconds(
    tmp_path: Path, sim: Simulator, canary: str
) -> None:
    """A ~5 s batch with stdout to a file (no option given) writes plain progress lines, the
    first within 5 s and then at most 5 s apart, and a last one with every prompt done."""
    sim.latency = Latency(median=4.5, sigma=0.05)
    log = tmp_path / "log.txt"
    command = [
        sys.executable,
        "-m",
        "nanobanana_async",
        "batch",
        str(_prompts(tmp_path, 5)),
        "--out",
        str(tmp_path / "out"),
    ]
    with log.open("w") as stdout:
        done = subprocess.run(
            command,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = log.read_text().splitlines()
    pattern = re.compile(r"^\[(\d+)s\] (\d+)/5 done, \d+ failed, .* \| [\d.]+/s \| ETA \S+ \|")
    matches = [pattern.match(line) for line in lines]
    assert all(matches), lines
    elapsed = [int(m[1]) for m in matches if m]
    assert len(elapsed) >= 2  # at ~3 s, and the final counts at ~5 s
    assert elapsed[0] <= 5
    assert all(b - a <= 5 for a, b in itertools.pairwise(elapsed))
    assert matches[-1] is not None
    assert matches[-1][2] == "5"
    assert canary not in log.read_text()
    assert "nanobanana batch" not in done.stderr.decode()  # no progress table drawn


def test_progress_json_lines_parse(
    tmp_path: Path, sim: Simulator, canary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --progress json every stdout line is one JSON object; the last has all done."""
    code = main(
        [
            "batch",
            str(_prompts(tmp_path, 4)),
            "--out",
            str(tmp_path / "out"),
            "--progress",
            "json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert records
    assert records[-1]["total"] == records[-1]["done"] == 4
    assert {"elapsed", "rate", "eta", "running", "failed"} <= set(records[-1])
    assert canary not in captured.out
    assert canary not in captured.err
    assert "summary" in captured.err


def test_quiet_prints_no_progress_and_no_summary(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quiet: nothing on stdout, nothing on stderr when all went well (no summary table, no
    manifest line, no journal count on a rerun); the manifest is still written."""
    out = tmp_path / "out"
    for _ in range(2):  # the rerun takes both prompts from the journal
        assert main(["batch", str(_prompts(tmp_path, 2)), "--out", str(out), "--quiet"]) == 0
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", "")
        assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_quiet_names_the_failed_prompts_in_one_line(
    tmp_path: Path, sim: Simulator, canary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quiet prints errors only, but a failed prompt is an error: one line names the failed
    lines, the first error and the manifest, so an exit 1 does not come with an empty screen."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na broken one [[fail]]\na fox\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("1 prompt(s) failed (lines 2): ")
    assert lines[0].endswith(f"see {out / 'results.jsonl'}")
    assert "summary" not in captured.err
    assert canary not in captured.err
