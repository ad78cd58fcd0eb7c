"""The batch command: input checks, progress display, manifest, and resume after SIGKILL."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nanobanana_async._journal import Journal
from nanobanana_async.cli import main
from nanobanana_async.testing import Faults, Latency, Simulator
from nanobanana_async.testing._wire import Apixo, RejectError


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> object:
    """An apixo simulator in a thread, with the environment pointing the CLI at it."""
    simulator = Simulator("apixo", latency=Latency(median=0.4, sigma=0.3), seed=9)
    simulator.start_in_thread()
    monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
    yield simulator
    simulator.stop_thread()


def test_bad_rows_exit_2_with_one_line_each_and_no_request(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every bad row is named by its line; nothing is sent; exit code 2."""
    csv_file = tmp_path / "prompts.csv"
    csv_file.write_text(
        "prompt,aspect_ratio,image_urls,timeout\n"
        "a cat,16:9,,\n"
        ",1:1,,\n"
        "a dog,7:3,,\n"
        "a fox,1:1,ftp://x.test/a.png,\n"
        "an owl,1:1,,-4\n"
    )
    code = main(["batch", str(csv_file), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert [line.split(": ")[2] for line in err] == ["line 3", "line 4", "line 5", "line 6"]
    assert sim.stats.total_requests == 0

    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"prompt": "ok"}\n{"prompt": \n["a list"]\n{"prompt": "x", "colour": 1}\n')
    assert main(["batch", str(jsonl), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "line 2: not JSON" in err[0]
    assert "line 4" in err[2]
    assert sim.stats.total_requests == 0


def test_batch_writes_images_and_manifest(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch downloads every image and writes a manifest sorted by line; rerun is free and
    the summary says the prompts came from the journal."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(25)) + "a broken one [[fail]]\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 27))
    assert [r["status"] for r in rows].count("succeeded") == 25
    for row in rows[:25]:
        assert (out / row["files"][0]).read_bytes().startswith(b"\x89PNG")
    creates = sim.stats.creates
    capsys.readouterr()
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    assert sim.stats.creates == creates  # the journal re-attached everything
    err = " ".join(capsys.readouterr().err.split())
    assert "0 new prompt(s); 26 from the journal" in err


def test_f19_killed_batch_resumes_without_paying_twice(tmp_path: Path, sim: Simulator) -> None:
    """SIGKILL at random points, three times, then a full run: one create per prompt."""
    n = 80
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(n)))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nanobanana_async", "batch", str(prompts), "--out", str(out)]
    rng = random.Random(19)
    created_at_kill = []
    for _ in range(3):
        # Kill once the server has created a random number more tasks: mid-run, whatever the
        # interpreter's start-up time, with submits, journal writes and polls in flight.
        target = sim.stats.creates + rng.randint(5, 20)
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
        )
        deadline = time.monotonic() + 30
        while sim.stats.creates < target and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        created_at_kill.append(sim.stats.creates)
    # The kills really interrupted the run, each after it had made progress.
    assert 0 < created_at_kill[0] < created_at_kill[1] < created_at_kill[2] < n
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=os.environ.copy(), check=False
    )
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == n
    unknown = [r for r in rows if r["status"] == "unknown"]
    # A kill between the journal's intent and the provider's answer leaves an unknown outcome:
    # it is reported, never resubmitted.
    assert all("may have been accepted" in r["error"] for r in unknown)
    assert done.returncode == (1 if unknown else 0)
    assert sim.stats.duplicate_creates == 0
    assert n - len(unknown) <= sim.stats.creates <= n
    for row in rows:
        if row["status"] == "succeeded":
            assert (out / row["files"][0]).stat().st_size > 0


def test_f19_resume_delivers_ended_tasks_that_have_no_manifest_row(
    tmp_path: Path, sim: Simulator
) -> None:
    """A batch killed after the journal recorded a task's end but before its image and row
    were written: resume downloads it from the journal's urls and writes its row (a failed
    end gets its failed row), without a create."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\na fox\na broken one [[fail]]\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    manifest = out / "results.jsonl"
    rows = {json.loads(t)["line"]: json.loads(t) for t in manifest.read_text().splitlines()}
    assert [rows[n]["status"] for n in (1, 2, 3, 4)] == ["succeeded"] * 3 + ["failed"]
    # Line 2: neither row nor file; line 3: its row, but its file is gone; line 4: no row.
    (out / rows[2]["files"][0]).unlink()
    (out / rows[3]["files"][0]).unlink()
    kept = [rows[1], rows[3]]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in kept))
    creates = sim.stats.creates
    journal = out / "journal.db"
    assert journal.is_file()
    assert main(["resume", "--journal", str(journal)]) == 1  # line 4 failed, as in the batch
    again = {json.loads(t)["line"]: json.loads(t) for t in manifest.read_text().splitlines()}
    assert sorted(again) == [1, 2, 3, 4]
    assert [again[n]["status"] for n in (1, 2, 3, 4)] == ["succeeded"] * 3 + ["failed"]
    for n in (1, 2, 3):
        assert again[n]["task_id"] == rows[n]["task_id"]
        assert (out / again[n]["files"][0]).read_bytes().startswith(b"\x89PNG")
    assert again[4]["task_id"] == rows[4]["task_id"]
    assert sim.stats.creates == creates


def test_f27_resume_out_after_the_urls_expired_says_so_and_what_to_do(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """resume --out elsewhere once the recorded image URLs answer 404: each line says the
    task succeeded but its URL expired, with the status command that shows the provider's
    URLs now; its row is failed with that reason and the task id; nothing is created; exit 1."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 0
    creates = sim.stats.creates
    sim.faults = Faults(expire_images=True)
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    argv = ["resume", "--journal", str(out / "journal.db"), "--out", str(elsewhere)]
    assert main(argv) == 1
    shown = capsys.readouterr()
    said = " ".join(shown.out.split())
    assert shown.err == ""
    rows = [json.loads(t) for t in (elsewhere / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    for row in rows:
        task_id = row["task_id"]
        assert "expired" in row["error"]
        assert (
            f"line {row['line']}: apixo task {task_id} succeeded, but its image URL has "
            "expired (HTTP 404;"
        ) in said
        command = (
            f"nanobanana status {task_id} --provider apixo --base-url {sim.base_url} "
            "--model nano-banana-2"
        )
        assert f"'{command}' shows the URLs it gives now" in said
        assert main(shlex.split(command)[1:]) == 0  # runs as printed
        assert f"{task_id}: succeeded" in capsys.readouterr().out
    assert sim.stats.creates == creates
    assert [p.name for p in elsewhere.iterdir()] == ["results.jsonl"]


@pytest.fixture
def poor_sim(monkeypatch: pytest.MonkeyPatch) -> object:
    """An apixo simulator whose account pays for 100 creates, then answers 402."""
    simulator = Simulator("apixo", latency=Latency(median=0.2, sigma=0.2), seed=11, credits=100)
    simulator.start_in_thread()
    monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    yield simulator
    simulator.stop_thread()


def test_batch_out_of_credits_stops_submitting(
    tmp_path: Path, poor_sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """300 prompts, credits for 100: those 100 finish and are downloaded, the rest are listed
    as not submitted (one message, not 200 identical failures), exit 1, no task lost."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(300)))
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 300
    statuses = [r["status"] for r in rows]
    assert statuses.count("succeeded") == poor_sim.stats.creates == 100
    assert statuses.count("not_submitted") == 200
    assert "failed" not in statuses
    # Only the submits already under way when the first 402 came were sent at all.
    assert poor_sim.stats.requests["create"] <= 100 + 64
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "200 prompt(s) not submitted: the account ran out of credits" in err
    assert err.count("not submitted") == 1


def test_batch_with_a_wrong_key_stops_submitting(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused key stops the creates (it used to send all 120 and list ten identical 401
    lines): the prompts are not submitted, one summary row names the refusal, exit 1."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "wrong")
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(120)))
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["not_submitted"] * 120
    assert sim.stats.requests["create"] <= 64
    err = " ".join(capsys.readouterr().err.split())
    assert "lines 1, 2, 3, 4, 5 and 115 more │ apixo: HTTP 401" in err
    assert "120 prompt(s) not submitted: the provider refused the API key" in err


def test_a_refused_key_from_api_key_env_names_that_variable(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key read through --api-key-env TEAM_KEY is refused: the summary says to fix
    TEAM_KEY, the variable the key came from (it said NANOBANANA_API_KEY, which holds the
    right key here)."""
    monkeypatch.setenv("TEAM_KEY", "wrong")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")
    argv = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--api-key-env", "TEAM_KEY"]
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "not submitted: the provider refused the API key (lines 1, 2); fix TEAM_KEY" in err
    assert sim.stats.creates == 0


def test_batch_min_balance_refuses_to_start(
    tmp_path: Path, poor_sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--min-balance above the account's balance: exit 2, nothing created."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    args = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--min-balance", "500"]
    assert main(args) == 2
    assert "below --min-balance 500" in " ".join(capsys.readouterr().err.split())
    assert poor_sim.stats.creates == 0
    assert main(["balance", "--provider", "apixo"]) == 0
    assert capsys.readouterr().out.strip() == "apixo: 100"


@pytest.mark.parametrize(("after", "progress"), [(3, "table"), (20, "auto")])
def test_ctrl_c_exits_130_with_one_line(
    tmp_path: Path, sim: Simulator, after: int, progress: str
) -> None:
    """SIGINT mid-batch (submits in flight, or tasks running and downloading): exit 130 and
    the one 'interrupted' line, no 'Unclosed client session' or pending-task noise."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(30)))
    command = [
        sys.executable,
        "-m",
        "nanobanana_async",
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
        "--progress",
        progress,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    deadline = time.monotonic() + 30
    while sim.stats.creates < after and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    line = "interrupted: run the same command again to resume from the journal"
    if progress == "table":
        # The progress table is drawn on stderr too; what follows it is the one line, on a
        # line of its own (off a terminal rich left the table's last line open).
        tail = err.decode().rsplit("┘", 1)[-1].splitlines()
        assert tail == ["", line]
    else:
        # stdout is a pipe: progress is plain lines there, and stderr holds the one line.
        assert err.decode().splitlines() == [line]


def test_a_refused_call_names_the_provider_and_url(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 (or a 404 from a server of another protocol) says where the request went."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "wrong-key-for-this-test")
    assert main(["balance", "--provider", "apixo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: apixo at {sim.base_url}: ")
    assert "API key" in err[0]


def test_ctrl_c_during_generate_names_the_paid_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the create: the one line names the task and how to fetch it, exit 130."""
    simulator = Simulator("apixo", latency=Latency(median=30.0, sigma=0.1), seed=3)
    simulator.start_in_thread()
    try:
        env = {
            **os.environ,
            "NANOBANANA_PROVIDER": "apixo",
            "NANOBANANA_API_KEY": simulator.api_key,
            "NANOBANANA_BASE_URL": simulator.base_url,
        }
        command = [sys.executable, "-m", "nanobanana_async", "generate", "a cat"]
        proc = subprocess.Popen(
            [*command, "-o", str(tmp_path / "cat.png")], stderr=subprocess.PIPE, env=env
        )
        # The first status check shows the client holds the accepted task.
        deadline = time.monotonic() + 30
        while not simulator.stats.requests["status"] and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        simulator.stop_thread()
    assert proc.returncode == 130
    lines = err.decode().splitlines()
    assert len(lines) == 1
    expected = (
        r"interrupted: apixo task (\w+) goes on; 'nanobanana status \1 --provider apixo "
        r"--model nano-banana-2' fetches it"
    )
    assert re.fullmatch(expected, lines[0])
    assert simulator.stats.creates == 1


def test_ctrl_c_during_resume_is_one_line_the_journal_keeps_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C of a batch, then of its resume, while the tasks run: each prints its one
    'interrupted' line (not also a WARNING naming every pending id and client.resume: the
    journal holds them), and the resume after that delivers every image, nothing created
    twice."""
    simulator = Simulator("crun", latency=Latency(median=3.5, sigma=0.1), seed=6)
    simulator.start_in_thread()
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(6)))
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NANOBANANA_")},
        "NANOBANANA_PROVIDER": "crun",
        "NANOBANANA_API_KEY": simulator.api_key,
        "NANOBANANA_BASE_URL": simulator.base_url,
    }
    module = [sys.executable, "-m", "nanobanana_async"]
    interrupted = "interrupted: run the same command again to resume from the journal"

    def interrupt(argv: list[str], ready: Callable[[], bool]) -> list[str]:
        proc = subprocess.Popen(
            [*module, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        return err.decode().splitlines()

    try:
        batch = ["batch", str(prompts), "--out", str(out), "--progress", "none"]
        # Every create answered: the tasks are being checked.
        tracked = lambda: simulator.stats.requests["status"] >= 6  # noqa: E731
        assert interrupt(batch, tracked) == [interrupted]
        checks = simulator.stats.requests["status"]
        resume = ["resume", "--journal", str(out / "journal.db")]
        ready = lambda: simulator.stats.requests["status"] > checks  # noqa: E731
        assert interrupt(resume, ready) == [interrupted]
        monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
        assert main(resume) == 0
    finally:
        simulator.stop_thread()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["succeeded"] * 6
    assert simulator.stats.creates == 6


@pytest.mark.parametrize("provider", ["apixo", "crun"])
def test_ctrl_c_during_the_create_of_generate_is_one_line_saying_the_outcome_is_unknown(
    tmp_path: Path, provider: str
) -> None:
    """Ctrl-C while the create is on the wire (no journal, a hosted provider): one line that
    says the create may have been accepted and paid for with no task id known, exit 130; not
    a logged WARNING beside the interrupted line."""
    slow = Faults(slow=1.0, slow_seconds=3.0, kinds=frozenset({"create"}))
    simulator = Simulator(provider, faults=slow, seed=4)
    simulator.start_in_thread()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NANOBANANA_")},
            "NANOBANANA_PROVIDER": provider,
            "NANOBANANA_API_KEY": simulator.api_key,
            "NANOBANANA_BASE_URL": simulator.base_url,
        }
        command = [sys.executable, "-m", "nanobanana_async", "generate", "a cat"]
        proc = subprocess.Popen(
            [*command, "-o", str(tmp_path / "cat.png")], stderr=subprocess.PIPE, env=env
        )
        deadline = time.monotonic() + 30
        while not simulator.stats.requests["create"] and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        simulator.stop_thread()
    assert proc.returncode == 130
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"interrupted: the create sent to {provider} ")
    assert "may have been accepted and paid for" in lines[0]
    assert "no task id is known" in lines[0]
    assert simulator.api_key not in lines[0]
    assert not (tmp_path / "cat.png").exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # The unterminated quote used to swallow the rows after it into one paid prompt.
        (
            "p.csv",
            'prompt,aspect_ratio\na cat,1:1\n"a dog,16:9\nan owl,1:1\n',
            ["line 3: a quote opened here is never closed"],
        ),
        (
            "p.csv",
            'prompt,aspect_ratio\n"a" dog,1:1\nan owl,1:1\n',
            ['line 2: text after a closing quote (a quote inside a cell is written "")'],
        ),
        # An unquoted comma used to shift the prompt's tail into aspect_ratio, the rest dropped.
        (
            "p.csv",
            "prompt,aspect_ratio\nan owl,1:1\na cat, sleeping,1:1\n",
            ["line 3: 3 cells but the header names 2 columns"],
        ),
        ("p.csv", "text,aspect_ratio\na cat,1:1\n", ["line 1: the header names no prompt column"]),
        ("p.json", '[\n  "a cat",\n  "a dog"\n  "an owl"\n]\n', ["line 4: not JSON"]),
        ("p.json", '\n{"prompt": "a cat"}\n', ["line 2: a .json file holds an array"]),
        (
            "p.jsonl",
            '{"prompt": "a cat"}\n{"prompt": "a dog"\n\n7\n',
            ["line 2: not JSON", "line 4: not a prompt or an object"],
        ),
    ],
)
def test_malformed_files_are_refused_with_line_numbers_and_nothing_is_sent(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    expected: list[str],
) -> None:
    """A file that does not parse is refused whole: exit 2, each problem with its line, no
    request."""
    path = tmp_path / name
    path.write_text(text)
    assert main(["batch", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(expected)
    for line, start in zip(err, expected, strict=True):
        assert line.startswith(f"error: {path}: {start}")
    assert sim.stats.total_requests == 0
    assert not (tmp_path / "out").exists()


def test_one_line_json_array_runs_every_item(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items sharing a line (and a request) are still one task each, none merged."""
    path = tmp_path / "p.json"
    path.write_text('["a cat", "a cat", "a dog"]')
    out = tmp_path / "out"
    assert main(["batch", str(path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["prompt"] for r in rows) == ["a cat", "a cat", "a dog"]
    assert len({r["task_id"] for r in rows}) == 3
    assert sim.stats.creates == 3


def test_dash_reads_prompts_from_stdin(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`batch -` reads a prompt a line from stdin (other types with --input-format), checked
    like a file; `generate -` reads its prompt from stdin."""
    import io

    out = tmp_path / "out"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a cat\n\na dog\n"))
    assert main(["batch", "-", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["line"], r["prompt"]) for r in rows] == [(1, "a cat"), (3, "a dog")]
    creates = sim.stats.creates
    assert creates == 2
    capsys.readouterr()

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"prompt": "a cat"}\n{"prompt": ""}\n'))
    args = ["batch", "-", "--input-format", "jsonl", "--out", str(tmp_path / "o2")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: <stdin>: line 2: prompt must be a non-empty string @ $.prompt"]
    assert sim.stats.creates == creates

    # The simulator fails a prompt holding [[fail]]: the prompt sent is stdin's, not "-".
    monkeypatch.setattr(sys, "stdin", io.StringIO("a fox [[fail]]\n"))
    assert main(["generate", "-", "-o", str(tmp_path / "fox.png")]) == 1
    assert sim.stats.creates == creates + 1


def test_api_key_env_and_base_url_flags(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    canary: str,
) -> None:
    """`--api-key-env NAME` reads the key from NAME and `--base-url` points the client; the
    key is never printed, a missing variable is exit 2 naming it."""
    monkeypatch.delenv("NANOBANANA_API_KEY")
    monkeypatch.delenv("NANOBANANA_BASE_URL")
    monkeypatch.setenv("TEAM_KEY", sim.api_key)
    flags = ["--api-key-env", "TEAM_KEY", "--base-url", sim.base_url]
    assert main(["balance", "--provider", "apixo", *flags]) == 0
    assert capsys.readouterr().out.startswith("apixo: ")
    assert sim.stats.total_requests == 1

    monkeypatch.setenv("TEAM_KEY", canary)
    assert main(["balance", "--provider", "apixo", *flags]) == 1
    out, err = capsys.readouterr()
    assert canary not in out + err
    assert "apixo at " + sim.base_url in err

    monkeypatch.delenv("TEAM_KEY")
    assert main(["balance", "--provider", "apixo", *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --api-key-env TEAM_KEY: no environment variable TEAM_KEY is set"
    ]
    assert sim.stats.total_requests == 2


def test_out_on_a_read_only_mount_is_exit_2(tmp_path: Path) -> None:
    """The real case behind the access check: `--out` on a read-only filesystem (a tmpfs
    mounted read-only in a private mount namespace, which stops root too)."""
    import shutil

    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a private read-only mount")
    if subprocess.run([unshare, "-m", "true"], check=False).returncode != 0:
        pytest.skip("no private mount namespace here")
    ro = tmp_path / "ro"
    ro.mkdir()
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    script = f'mount -t tmpfs -o ro tmpfs "{ro}" && exec "$0" -m nanobanana_async "$@"'
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOBANANA_")}
    env["NANOBANANA_PROVIDER"] = "local"
    done = subprocess.run(
        [
            unshare,
            "-m",
            "/bin/sh",
            "-c",
            script,
            sys.executable,
            "batch",
            str(prompts),
            "--out",
            str(ro),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: --out {ro}: not writable"]


def test_ctrl_c_while_waiting_for_stdin_ends_the_process(tmp_path: Path) -> None:
    """`batch -` waiting for input: one Ctrl-C is `interrupted`, exit 130, at once (a read
    in a worker thread kept the process alive after the line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOBANANA_")}
    env["NANOBANANA_PROVIDER"] = "local"
    out = tmp_path / "out"
    with subprocess.Popen(
        [sys.executable, "-m", "nanobanana_async", "batch", "-", "--out", str(out)],
        stdin=subprocess.PIPE,  # open and never written: the read blocks
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        try:
            _wait_for_a_pipe_read(proc.pid)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)  # stdin still open: a read still waiting would hang here
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "interrupted"
    assert not out.exists()


def _wait_for_a_pipe_read(pid: int) -> None:
    # Past start-up and blocked reading stdin, in whichever thread reads it (Linux's wchan).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            waits = [p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/wchan")]
        except OSError:
            waits = []
        if any("pipe_read" in wait for wait in waits):
            return
        if not Path(f"/proc/{pid}/wchan").exists():
            pytest.skip("no /proc wchan here to see the read")
        time.sleep(0.01)
    pytest.fail("the command never read stdin")


def test_a_full_disk_mid_batch_sends_nothing_unjournaled_and_loses_no_paid_task(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills mid-batch: a prompt whose intent cannot be written is not sent (its
    row says why), a task accepted but not journaled is said by id and still downloaded, and
    the batch ends with its summary, not an ExceptionGroup."""
    calls = {"intent": 0, "submitted": 0}
    record_intent, record_submitted = Journal.record_intent, Journal.record_submitted

    async def intent(self: Journal, *args: Any, **kwargs: Any) -> None:
        calls["intent"] += 1
        if calls["intent"] > 6:
            raise sqlite3.OperationalError("database or disk is full")
        await record_intent(self, *args, **kwargs)

    async def submitted(self: Journal, *args: Any) -> None:
        calls["submitted"] += 1
        if calls["submitted"] == 3:
            raise sqlite3.OperationalError("database or disk is full")
        await record_submitted(self, *args)

    monkeypatch.setattr(Journal, "record_intent", intent)
    monkeypatch.setattr(Journal, "record_submitted", submitted)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(12)))
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sim.stats.creates == 6
    assert [r["status"] for r in rows].count("succeeded") == 6
    assert [r["status"] for r in rows].count("not_submitted") == 6
    for row in rows:
        if row["status"] == "succeeded":
            assert (out / row["files"][0]).read_bytes().startswith(b"\x89PNG")
    unjournaled = re.findall(r"task (\w+) was accepted but is not in the journal", err)
    assert len(set(unjournaled)) == 1
    assert unjournaled[0] in {r["task_id"] for r in rows if r["status"] == "succeeded"}
    assert f"'nanobanana status {unjournaled[0]} --provider apixo" in err
    assert "could not be written" in err
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err


def test_a_task_accepted_but_not_journaled_stops_new_submits(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal fails to record one accepted task: no new prompt is sent (only those
    already in flight are created), that task is still downloaded, and its id is said twice:
    as it happens and in the summary."""
    calls = {"submitted": 0}
    record_submitted = Journal.record_submitted

    async def submitted(self: Journal, *args: Any) -> None:
        calls["submitted"] += 1
        if calls["submitted"] == 3:
            raise sqlite3.OperationalError("database or disk is full")
        await record_submitted(self, *args)

    monkeypatch.setattr(Journal, "record_submitted", submitted)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(40)))
    out = tmp_path / "out"
    window = 4
    argv = ["batch", str(prompts), "--out", str(out), "--concurrent", str(window)]
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    statuses = [r["status"] for r in rows]
    # The two recorded before it, and at most the window's submits already under way.
    assert sim.stats.requests["create"] <= 2 + window
    assert statuses.count("succeeded") == sim.stats.creates
    assert statuses.count("not_submitted") == 40 - sim.stats.creates
    said = re.findall(r"task (\w+) was accepted but is not in the journal", err)
    assert len(said) == 2
    task_id = said[0]
    assert task_id in {r["task_id"] for r in rows if r["status"] == "succeeded"}
    # Nowhere else (a log line, the table): each time with the command that fetches it.
    assert err.count(task_id) == 2 * 2
    assert err.count(f"'nanobanana status {task_id} --provider apixo") == 2
    # Nor logged (a log WARNING reaches stderr too): the error that carries it is said.
    assert not [r for r in caplog.records if task_id in r.getMessage()]
    assert "could not be written" in err
    assert "Traceback" not in err


def test_the_status_command_for_a_task_not_journaled_keeps_key_env_and_base_url(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """batch with --api-key-env and --base-url: the status command printed for a task
    accepted but not journaled carries both, and runs as printed (without them it asked the
    documented URL with NANOBANANA_API_KEY)."""
    calls = {"submitted": 0}
    record_submitted = Journal.record_submitted

    async def submitted(self: Journal, *args: Any) -> None:
        calls["submitted"] += 1
        if calls["submitted"] == 1:
            raise sqlite3.OperationalError("database or disk is full")
        await record_submitted(self, *args)

    monkeypatch.setattr(Journal, "record_submitted", submitted)
    monkeypatch.delenv("NANOBANANA_API_KEY")
    monkeypatch.delenv("NANOBANANA_BASE_URL")
    monkeypatch.setenv("TEAM_KEY", sim.api_key)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    out = tmp_path / "out"
    flags = ["--provider", "apixo", "--api-key-env", "TEAM_KEY", "--base-url", sim.base_url]
    assert main(["batch", str(prompts), "--out", str(out), *flags]) == 0  # delivered
    err = capsys.readouterr().err
    commands = re.findall(r"'(nanobanana status [^']+)' fetches it", err)
    assert len(commands) == 2  # as it happens and in the summary
    task_id = next(iter(sim._book.tasks))
    assert commands[0] == (
        f"nanobanana status {task_id} --provider apixo --api-key-env TEAM_KEY "
        f"--base-url {sim.base_url} --model nano-banana-2"
    )
    assert main(shlex.split(commands[0])[1:]) == 0  # reaches the task as printed
    assert f"{task_id}: succeeded" in capsys.readouterr().out


def test_an_apixo_content_refusal_fails_its_row_not_the_batch(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20, item 14: apixo answers a prompt refused on content with HTTP 403
    (PROTOCOLS.md 4, "Errors [C]": "403 forbidden/content policy"): that row fails, the others
    are paid and written, and the key is not blamed."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n[[refused]] something\na dog\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "NANOBANANA_API_KEY" not in err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["succeeded", "failed", "succeeded"]
    assert "content policy" in rows[1]["error"]
    assert sim.stats.creates == 2


def test_a_key_echoed_inside_a_word_or_base64_reaches_no_output(
    tmp_path: Path,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20, item 12d: a provider refusing each create with the key echoed next to word
    characters and base64-encoded: results.jsonl, the summary and every file of the run show
    neither, while the refusal itself still reads."""
    key = sim.api_key
    basic = base64.b64encode(f"apikey:{key}".encode()).decode()

    def refuse(*args: object) -> object:
        raise RejectError(400, f"quota for apikey_{key}_v2 exceeded (Authorization: Basic {basic})")

    monkeypatch.setattr(Apixo, "validate", refuse)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("quota for apikey_***_v2 exceeded" in r["error"] for r in rows)
    shown = [captured.out, captured.err]
    shown += [p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()]
    assert [text for text in shown if key in text or basic[4:-4] in text] == []
