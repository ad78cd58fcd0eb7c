"""Where the commands put paid images: the file asked for or named by the bytes' type, the
batch's recorded folder on resume, an unwritable path refused before paying, and the task id
after any later failure."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async.cli import _common, main
from nanobanana_async.testing import Faults, Latency, Simulator, _png
from nanobanana_async.testing._png import render

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 3_000


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """An apixo simulator in a thread, with the environment pointing the CLI at it."""
    simulator = Simulator("apixo", latency=Latency(median=0.3, sigma=0.2), seed=5)
    simulator.start_in_thread()
    monkeypatch.setenv("NANOBANANA_PROVIDER", "apixo")
    monkeypatch.setenv("NANOBANANA_API_KEY", simulator.api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", simulator.base_url)
    yield simulator
    simulator.stop_thread()


@pytest.mark.usefixtures("sim")
def test_generate_twice_into_one_file_writes_the_second_image(tmp_path: Path) -> None:
    """`generate "a cat" -o g.png` then `generate "a dog" -o g.png`: g.png is the dog (it
    used to say it wrote the dog and keep the cat)."""
    out = tmp_path / "g.png"
    assert main(["generate", "a cat", "-o", str(out)]) == 0
    assert out.read_bytes() == render("a cat", None)
    assert main(["generate", "a dog", "-o", str(out)]) == 0
    assert out.read_bytes() == render("a dog", None)
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


@pytest.mark.usefixtures("sim")
def test_generate_names_the_file_by_the_images_real_type(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without -o a JPEG is saved as image.jpg; `-o x.png` keeps the path asked for and
    warns once that the bytes are JPEG (not also as a log WARNING, which reaches stderr)."""
    monkeypatch.setattr(_png, "render", lambda prompt, aspect_ratio: JPEG)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a cat"]) == 0
    assert (tmp_path / "image.jpg").read_bytes() == JPEG
    assert "image.jpg" in capsys.readouterr().out
    assert main(["generate", "a cat", "-o", "x.png"]) == 0
    assert (tmp_path / "x.png").read_bytes() == JPEG
    err = capsys.readouterr().err
    assert "warning: x.png holds JPEG bytes (kept at the path given" in err
    assert err.count("holds JPEG bytes") == 1
    assert not [r for r in caplog.records if "holds JPEG bytes" in r.getMessage()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.jpg", "x.png"]


def test_generate_sends_output_format_and_google_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`generate --output-format png --google-search` puts both in the request it submits."""
    sent: list[nb.ImageRequest] = []

    async def submit(self: nb.Client, request: nb.ImageRequest, *, key: str | None = None) -> None:
        sent.append(request)
        raise nb.ConnectError("stop here")

    monkeypatch.setenv("NANOBANANA_PROVIDER", "crun")
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.setattr(nb.Client, "submit", submit)
    main(["generate", "a cat", "--output-format", "png", "--google-search"])
    main(["generate", "a cat"])
    assert [(r.output_format, r.google_search) for r in sent] == [("png", True), (None, None)]


def test_generate_into_an_unwritable_folder_is_refused_before_paying(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`generate -o ro/x.png` where ro is read-only: exit 2 naming the folder, nothing sent
    (it used to pay, then fail without the task id)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    real_open = os.open

    def refusing_open(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        # root ignores permission bits: refuse as the kernel does for anyone else.
        if Path(path).parent == ro and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(_common.os, "open", refusing_open)
    try:
        assert main(["generate", "a cat", "-o", str(ro / "x.png")]) == 2
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --output {ro / 'x.png'}: {ro} is not writable (Permission denied)"]
    assert sim.stats.total_requests == 0


def test_a_failure_after_acceptance_prints_the_task_id_and_how_to_fetch_it(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The task was accepted (paid) and then failed: the error, then its id and the status
    command, exit 1."""
    assert main(["generate", "a cat [[fail]]", "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ")
    task_id = next(iter(sim._book.tasks))
    assert err[1] == (
        f"apixo task {task_id} was accepted: 'nanobanana status {task_id} --provider apixo "
        "--model nano-banana-2' fetches it"
    )


def test_the_status_command_printed_after_acceptance_keeps_key_env_and_base_url(
    sim: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """generate with --api-key-env and --base-url: the status command it prints carries both
    (copied as printed it reached another URL with another key), and runs as printed."""
    monkeypatch.delenv("NANOBANANA_API_KEY")
    monkeypatch.delenv("NANOBANANA_BASE_URL")
    monkeypatch.setenv("TEAM_KEY", sim.api_key)
    flags = ["--api-key-env", "TEAM_KEY", "--base-url", sim.base_url]
    assert main(["generate", "a cat [[fail]]", "-o", str(tmp_path / "x.png"), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    task_id = next(iter(sim._book.tasks))
    command = (
        f"nanobanana status {task_id} --provider apixo --api-key-env TEAM_KEY "
        f"--base-url {sim.base_url} --model nano-banana-2"
    )
    assert err[1] == f"apixo task {task_id} was accepted: '{command}' fetches it"
    assert main(command.split()[1:]) == 1  # reaches the task: it failed
    shown = capsys.readouterr()
    assert f"{task_id}: failed" in shown.out + shown.err


def test_a_refused_key_on_the_default_provider_says_apixo_was_not_chosen(
    sim: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another provider's key with no provider named goes to apixo, the default: its refusal
    says apixo was taken by default and how to name the provider (a crun user read only
    'apixo refused the API key'). With apixo named, the line is as before."""
    monkeypatch.delenv("NANOBANANA_PROVIDER")
    monkeypatch.setenv("NANOBANANA_API_KEY", "a-crun-key-given-to-apixo")
    out = tmp_path / "x.png"
    hint = "apixo is the default with a key set: name the key's provider with --provider"
    assert main(["generate", "a cat", "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "HTTP 401" in err[0]
    assert err[0].endswith(f"({hint} or NANOBANANA_PROVIDER)")
    assert main(["generate", "a cat", "-o", str(out), "--provider", "apixo"]) == 1
    assert hint not in capsys.readouterr().err
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(tmp_path / "out")]) == 1
    assert hint in " ".join(capsys.readouterr().err.split())
    assert sim.stats.creates == 0
    assert not out.exists()


def test_a_generate_of_unknown_outcome_says_no_task_id_is_known_and_what_to_do(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The connection breaks after the create was sent: one line saying it may have been
    paid for, that no task id is known and where to look before running it again; exit 1,
    one create, no file."""
    sim.faults = Faults(reset_after_create=1.0, kinds=frozenset({"create"}))
    out = tmp_path / "x.png"
    assert main(["generate", "a cat", "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "may have been accepted" in err[0]
    assert err[0].endswith(
        "no task id is known: look for it in apixo's task list before generating it again"
    )
    assert sim.stats.creates == 1
    assert not out.exists()


def test_status_with_no_network_says_could_not_connect_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status ID` with nothing listening: "could not connect to URL" as generate says it,
    within seconds, not "not finished within 30 s; still tracked"."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    assert main(["status", "task-1", "--provider", "crun"]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: crun at http://127.0.0.1:9: could not connect")
    assert "still tracked" not in err[0]


def test_resume_writes_into_the_batchs_recorded_out(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`resume --journal J` without --out writes images and manifest into the batch's --out
    (recorded in the journal), not the current folder or the journal's; an explicit --out
    is used as given."""
    journal = tmp_path / "state" / "journal.db"
    out = tmp_path / "out"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")

    async def no_end(self: Journal, *args: object, **kwargs: object) -> None:
        return None  # as if killed before the ends were written: the tasks stay open

    monkeypatch.setattr(Journal, "record_end", no_end)
    assert main(["batch", str(prompts), "--out", str(out), "--journal", str(journal)]) == 0
    for name in list(out.iterdir()):
        name.unlink()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["resume", "--journal", str(journal)]) == 0
    written = re.findall(r"line \d: (\S+)", capsys.readouterr().out)
    assert [Path(p).parent for p in written] == [out, out]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]
    assert all((out / r["files"][0]).is_file() for r in rows)
    assert sorted(p.name for p in journal.parent.iterdir()) == ["journal.db"]
    capsys.readouterr()
    # A file as --out: one line, as batch says it, before anything is checked or written.
    checks = sim.stats.requests["status"]
    assert main(["resume", "--journal", str(journal), "--out", str(prompts)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --out {prompts}: not a folder"]
    assert sim.stats.requests["status"] == checks
    other = tmp_path / "elsewhere"
    assert main(["resume", "--journal", str(journal), "--out", str(other)]) == 0
    assert len([p for p in other.iterdir() if p.suffix == ".png"]) == 2


def test_status_of_a_running_task_says_to_ask_again_not_still_tracked(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status ID --wait 0.5` on a task still running: the state its check saw (apixo's
    "pending" or "processing", never "unknown") and "run the same command again later",
    exit 1; "still tracked" means nothing to a command that exits."""

    async def submit_stuck() -> str:
        async with nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url) as client:
            task = await client.submit(nb.ImageRequest(prompt="a cat [[stuck]]"))
            assert task.id is not None
            return task.id

    task_id = asyncio.run(submit_stuck())
    code = main(["status", task_id, "--model", "nano-banana-2", "--wait", "0.5"])
    out = capsys.readouterr().out.strip()
    assert code == 1
    assert re.match(rf"{task_id}: (pending|processing) \(", out), out
    assert out.endswith("(not finished within 0.5 s; run the same command again later)")
    assert "still tracked" not in out


def test_status_of_a_finished_task_answers_from_its_first_check(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status ID` on a task that has ended answers at once from its one check: succeeded
    with its URLs, or failed with the provider's reason (no wait for a second check)."""

    async def submit_and_wait() -> tuple[str, str]:
        async with nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url) as client:
            done = await client.submit(nb.ImageRequest(prompt="a cat"))
            failed = await client.submit(nb.ImageRequest(prompt="a dog [[fail]]"))
            await done
            with pytest.raises(nb.GenerationFailedError):
                await failed
            assert done.id is not None
            assert failed.id is not None
            return done.id, failed.id

    done_id, failed_id = asyncio.run(submit_and_wait())
    checks = sim.stats.requests["status"]
    # --wait 0.01: only the first check can have seen the end in time.
    assert main(["status", done_id, "--model", "nano-banana-2", "--wait", "0.01"]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{done_id}: succeeded http://\S+", out), out
    assert main(["status", failed_id, "--model", "nano-banana-2", "--wait", "0.01"]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{failed_id}: failed ("), out
    assert "not finished" not in out
    assert sim.stats.requests["status"] == checks + 2


def test_resume_skips_a_damaged_row_and_resumes_the_others(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One damaged journal row no longer blocks resuming the rest: it is named (line, why)
    and skipped; a row whose request today's rules refuse is resumed by its task id; nothing
    is created again; exit 1 (a row was not resumed)."""
    out = tmp_path / "out"
    journal = out / "journal.db"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\na fox\n")

    async def no_end(self: Journal, *args: object, **kwargs: object) -> None:
        return None  # as if killed before the ends were written: the tasks stay open

    monkeypatch.setattr(Journal, "record_end", no_end)
    assert main(["batch", str(prompts), "--out", str(out)]) == 0
    for name in out.glob("*.png"):
        name.unlink()
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE tasks SET state = 'done' WHERE key LIKE 'line-2-%'")
        db.execute("""UPDATE tasks SET request = '{"prompt": ""}' WHERE key LIKE 'line-3-%'""")
    db.close()
    capsys.readouterr()
    assert main(["resume", "--journal", str(journal)]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert any(
        line.startswith(f"line 2: its row in {journal} cannot be read (")
        and "'done' is not one of" in line
        and line.endswith(": not resumed")
        for line in err
    ), err
    assert any(
        line.startswith("line 3: its recorded request no longer reads (prompt must be")
        for line in err
    ), err
    rows = {r["line"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows[1]["status"] == rows[3]["status"] == "succeeded"
    assert rows[3]["prompt"] is None
    assert rows[3]["model"] == "nano-banana-2"
    assert (out / rows[3]["files"][0]).read_bytes() == render("a fox", None)
    assert sim.stats.requests["create"] == 3
