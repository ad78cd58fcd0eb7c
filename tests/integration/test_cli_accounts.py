"""The command line over several accounts (issue 21 item 6): ``--provider apixo,crun``,
``--accounts FILE``, one journal per account, resume and reruns that never pay twice, and
per-account progress. Small real-time runs against simulators in threads."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from nanobanana_async import Limits
from nanobanana_async.cli import main
from nanobanana_async.cli._accounts import read_accounts
from nanobanana_async.cli._progress import (
    AccountProgress,
    BatchState,
    render_plain,
    render_progress,
)
from nanobanana_async.testing import Latency, Outage, Simulator

FAST = Latency(median=0.3, sigma=0.2)


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Simulator]]:
    """An apixo and a crun simulator, each account's key and URL in its own variables."""
    started = {
        "apixo": Simulator("apixo", latency=FAST, seed=21).start_in_thread(),
        "crun": Simulator("crun", latency=FAST, seed=22).start_in_thread(),
    }
    for name in ("NANOBANANA_API_KEY", "NANOBANANA_BASE_URL", "NANOBANANA_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    for name, sim in started.items():
        monkeypatch.setenv(f"NANOBANANA_API_KEY_{name.upper()}", sim.api_key)
        monkeypatch.setenv(f"NANOBANANA_BASE_URL_{name.upper()}", sim.base_url)
    yield started
    for sim in started.values():
        sim.stop_thread()


def _rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _on_several(sims: dict[str, Simulator]) -> set[str]:
    apixo, crun = (set(sims[name].created_prompts()) for name in ("apixo", "crun"))
    return apixo & crun


def test_batch_over_two_providers_uses_both_and_shows_each_account(
    tmp_path: Path, sims: dict[str, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    """Keys from NANOBANANA_API_KEY_<NAME>: both accounts take prompts, every image is saved,
    one journal per account, and the progress line names each account's counts."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"two accounts {i}\n" for i in range(24)))
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--out", str(out), "--provider", "apixo,crun"]
    assert main([*argv, "--progress", "plain", "--concurrent", "4"]) == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["succeeded"] * 24
    creates = {name: sim.stats.creates for name, sim in sims.items()}
    assert creates["apixo"] > 0
    assert creates["crun"] > 0
    assert sum(creates.values()) == 24
    assert not _on_several(sims)
    assert (out / "journal-apixo.db").is_file()
    assert (out / "journal-crun.db").is_file()
    assert not (out / "journal.db").exists()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"apixo {creates['apixo']} accepted" in last
    assert f"crun {creates['crun']} accepted" in last


def test_accounts_file_limits_weights_and_strategy(
    tmp_path: Path, sims: dict[str, Simulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file naming each key's variable: "priority" keeps every prompt on the first account
    while it has room (its limits come from the file), and a rerun pays for nothing."""
    monkeypatch.setenv("MY_APIXO", sims["apixo"].api_key)
    monkeypatch.setenv("MY_CRUN", sims["crun"].api_key)
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        'strategy = "priority"\n'
        "[[accounts]]\n"
        f'provider = "crun"\napi_key_env = "MY_CRUN"\nbase_url = "{sims["crun"].base_url}"\n'
        "requests = 500\nper = 10\nconcurrent_tasks = 20\n"
        "[[accounts]]\n"
        f'provider = "apixo"\napi_key_env = "MY_APIXO"\nbase_url = "{sims["apixo"].base_url}"\n'
        "weight = 2\n"
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"from a file {i}\n" for i in range(10)))
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--out", str(out), "--accounts", str(accounts), "-q"]
    assert main(argv) == 0
    assert sims["crun"].stats.creates == 10
    assert sims["apixo"].stats.creates == 0
    assert main(argv) == 0  # the rerun re-attaches to crun's tasks
    assert sims["crun"].stats.creates == 10
    assert sims["apixo"].stats.creates == 0
    assert [r["status"] for r in _rows(out)] == ["succeeded"] * 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[accounts]]\nprovider = "apixo"\napi_key = "sk-do-not-print"\n',
            "accounts[0].api_key: a key is never written in the file; name its environment "
            "variable with api_key_env",
        ),
        (
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "K"\nrequests = "many"\n',
            "accounts[0].requests: expected an integer, got str",
        ),
        (
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "K"\n'
            '[[accounts]]\nprovider = "kie"\napi_key_env = "K"\n',
            "accounts[1].provider: 'kie' is not one of",
        ),
        (
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "NOT_SET_ANYWHERE"\n',
            "accounts[0].api_key_env: no environment variable NOT_SET_ANYWHERE is set",
        ),
        (
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "K"\nper = -1\n',
            "accounts[0].per: must be positive, got -1",
        ),
        (
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "K"\n'
            '[[accounts]]\nprovider = "apixo"\napi_key_env = "K"\n',
            "accounts[1].name: 'apixo' is also accounts[0]'s name",
        ),
        ('strategy = "fastest"\n', "strategy: 'fastest' is not one of"),
        ("[[accounts]\n", "not TOML"),
    ],
)
def test_bad_accounts_file_exits_2_naming_the_field_and_sends_nothing(
    tmp_path: Path,
    sims: dict[str, Simulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    expected: str,
) -> None:
    monkeypatch.setenv("K", sims["apixo"].api_key)
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(text)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    argv = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--accounts", str(accounts)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {accounts}: {expected}" in err
    assert "sk-do-not-print" not in err
    assert sims["apixo"].stats.total_requests == sims["crun"].stats.total_requests == 0


def test_generate_over_two_providers_names_the_account(
    tmp_path: Path, sims: dict[str, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "one.png"
    argv = ["generate", "a lighthouse", "--provider", "crun,apixo", "-o", str(output)]
    assert main([*argv, "--model", "nano-banana"]) == 0
    printed = capsys.readouterr().out
    (taker,) = [name for name, sim in sims.items() if sim.stats.creates == 1]
    assert f"from {taker} task" in printed
    assert output.stat().st_size > 0


def test_generate_over_two_providers_prints_a_status_command_for_the_account_that_took_it(
    tmp_path: Path, sims: dict[str, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    """A routed generate whose task fails prints the status command with the key variable and
    URL of the account that took it, and that command reaches the task as printed (it used
    NANOBANANA_API_KEY and the documented URL)."""
    output = tmp_path / "one.png"
    argv = ["generate", "a lighthouse [[fail]]", "--provider", "crun,apixo", "-o", str(output)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    (taker,) = [name for name, sim in sims.items() if sim.stats.creates == 1]
    task_id = next(iter(sims[taker]._book.tasks))
    (command,) = re.findall(r"'(nanobanana status [^']+)' fetches it", err)
    assert command == (
        f"nanobanana status {task_id} --provider {taker} --api-key-env "
        f"NANOBANANA_API_KEY_{taker.upper()} --base-url {sims[taker].base_url} "
        "--model nano-banana-2"
    )
    assert main(shlex.split(command)[1:]) == 1  # reaches the task: it failed
    assert f"{task_id}: failed" in capsys.readouterr().out
    assert not output.exists()


def test_generate_over_two_providers_whose_keys_are_refused_is_one_line_naming_each(
    tmp_path: Path,
    sims: dict[str, Simulator],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both accounts refuse their key: one line naming each account, the variable its key came
    from and what it answered (it was a WARNING per account set aside, then the last
    account's refusal alone); exit 1, nothing created, no file."""
    monkeypatch.setenv("NANOBANANA_API_KEY_APIXO", "wrong-apixo-key")
    monkeypatch.setenv("NANOBANANA_API_KEY_CRUN", "wrong-crun-key")
    output = tmp_path / "one.png"
    argv = ["generate", "a lighthouse", "--provider", "apixo,crun", "-o", str(output)]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: no account took the prompt: apixo:")
    assert "(key from NANOBANANA_API_KEY_APIXO): key refused: " in err[0]
    assert "(key from NANOBANANA_API_KEY_CRUN): key refused: " in err[0]
    assert "wrong-" not in err[0]
    # Nor logged: a WARNING reaches the terminal beside the line.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sims["apixo"].stats.creates == sims["crun"].stats.creates == 0
    assert not output.exists()


def test_several_providers_refuse_a_missing_key_or_a_single_account_flag(
    tmp_path: Path,
    sims: dict[str, Simulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    argv = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--provider", "apixo,crun"]
    assert main([*argv, "--api-key-env", "NANOBANANA_API_KEY_APIXO"]) == 2
    assert "--api-key-env names one account" in capsys.readouterr().err
    monkeypatch.delenv("NANOBANANA_API_KEY_CRUN")
    assert main(argv) == 2
    assert "--provider crun: set NANOBANANA_API_KEY_CRUN" in capsys.readouterr().err
    assert sims["apixo"].stats.total_requests == sims["crun"].stats.total_requests == 0


def test_several_accounts_never_share_nanobanana_base_url(
    tmp_path: Path,
    sims: dict[str, Simulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """NANOBANANA_BASE_URL is one server: with several accounts, one that has no URL of its own
    would send its key there. The command stops with one line naming its variable (exit 2,
    nothing sent); with every account's own URL set, the shared one is simply not used."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    argv = ["batch", str(prompts), "--out", str(tmp_path / "out"), "-q"]
    monkeypatch.setenv("NANOBANANA_BASE_URL", sims["apixo"].base_url)
    monkeypatch.delenv("NANOBANANA_BASE_URL_CRUN")
    assert main([*argv, "--provider", "apixo,crun"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "NANOBANANA_BASE_URL_CRUN" in line
    assert "unset NANOBANANA_BASE_URL" in line
    # An accounts file's account without base_url reads the same way.
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        textwrap.dedent(
            """
            [[accounts]]
            provider = "apixo"
            api_key_env = "NANOBANANA_API_KEY_APIXO"
            [[accounts]]
            provider = "crun"
            api_key_env = "NANOBANANA_API_KEY_CRUN"
            """
        )
    )
    assert main([*argv, "--accounts", str(accounts)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "NANOBANANA_BASE_URL_CRUN" in line
    assert sims["apixo"].stats.total_requests == sims["crun"].stats.total_requests == 0
    # One provider: the shared variable is its URL, as it always was.
    monkeypatch.setenv("NANOBANANA_API_KEY", sims["apixo"].api_key)
    assert main([*argv, "--provider", "apixo", "--out", str(tmp_path / "one")]) == 0
    assert sims["apixo"].stats.creates == 1
    # Each account with its own URL: the shared one is not used, and the batch runs.
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9/not-used")
    monkeypatch.setenv("NANOBANANA_BASE_URL_CRUN", sims["crun"].base_url)
    assert main([*argv, "--provider", "apixo,crun", "--out", str(tmp_path / "both")]) == 0


def test_progress_line_shows_an_open_circuit_and_a_set_aside_account() -> None:
    state = BatchState(total=10, started=0.0)
    state.accounts = [
        AccountProgress(name="apixo", accepted=7, running=2, circuit="closed", set_aside=False),
        AccountProgress(name="crun", accepted=1, running=0, circuit="open", set_aside=False),
        AccountProgress(name="apixo-2", accepted=0, running=0, circuit="closed", set_aside=True),
    ]
    line = render_plain(state, 1.0)
    assert line.endswith(
        "| apixo 7 accepted, 2 running; crun 1 accepted, 0 running (circuit open); "
        "apixo-2 0 accepted, 0 running (set aside)"
    )


def _kill_when(
    proc: subprocess.Popen[bytes],
    sims: dict[str, Simulator],
    target: int,
    settle: float = 0.0,
    each: int = 0,
) -> int:
    """SIGKILL ``proc`` once the simulators saw ``target`` creates, and each one ``each``."""

    def reached() -> bool:
        counts = [s.stats.creates for s in sims.values()]
        return sum(counts) >= target and min(counts) >= each

    deadline = time.monotonic() + 30
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(settle)  # let the last answers reach the journals
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    return sum(s.stats.creates for s in sims.values())


def test_f19_killed_two_account_batch_rerun_pays_for_nothing_either_holds(
    tmp_path: Path, sims: dict[str, Simulator]
) -> None:
    """SIGKILL twice mid-run, then a full rerun: each journaled prompt goes back to the account
    that holds it, none is created on both providers or twice on one."""
    n = 40
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"killed twice {i}\n" for i in range(n)))
    out = tmp_path / "out"
    # Both accounts must hold tasks when killed. "soonest" gave crun none at all once apixo had
    # learned the simulator's 0.3 s (crun still at its 10 s advice), which under load came
    # before apixo's queue made crun worth it; "weighted" 1:1 alternates new prompts from the
    # first one. Caps above the 16 creates two kills leave in flight: an account's rerun never
    # waits for the slots its own submits of unknown outcome hold.
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        'strategy = "weighted"\n'
        + "".join(
            f'[[accounts]]\nprovider = "{name}"\n'
            f'api_key_env = "NANOBANANA_API_KEY_{name.upper()}"\nconcurrent_tasks = 24\n'
            for name in ("apixo", "crun")
        )
    )
    command = [sys.executable, "-m", "nanobanana_async", "batch", str(prompts), "--out", str(out)]
    command += ["--accounts", str(accounts), "--concurrent", "8"]
    rng = random.Random(21)
    at_kill = []
    for _ in range(2):
        target = sum(s.stats.creates for s in sims.values()) + rng.randint(4, 10)
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
        )
        at_kill.append(_kill_when(proc, sims, target, each=1))
        assert all(s.stats.creates > 0 for s in sims.values())
    assert 0 < at_kill[0] < at_kill[1] < n
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False
    )
    rows = _rows(out)
    assert len(rows) == n
    unknown = [r for r in rows if r["status"] == "unknown"]
    assert all("may have been accepted" in str(r["error"]) for r in unknown)
    assert done.returncode == (1 if unknown else 0), done.stderr
    assert not _on_several(sims)
    assert all(s.stats.duplicate_creates == 0 for s in sims.values())
    assert n - len(unknown) <= sum(s.stats.creates for s in sims.values()) <= n
    assert sims["apixo"].stats.creates > 0
    assert sims["crun"].stats.creates > 0


def test_resume_over_a_two_account_journal_follows_each_account(
    tmp_path: Path, sims: dict[str, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch killed mid-run; ``resume --journal OUT/journal.db`` reads both accounts'
    journals, polls each task with its own account's key and pays for nothing new."""
    n = 16
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"resume me {i}\n" for i in range(n)))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nanobanana_async", "batch", str(prompts), "--out", str(out)]
    # Eight tasks at once per account: sixteen prompts fill both.
    command += ["--provider", "apixo,crun", "--concurrent", "8"]
    for sim in sims.values():
        # Still running when the batch is killed (a second after the last create) and resume
        # starts; seen ended at the resume's check 2.5 s after each create, not at its 5 s one.
        sim.latency = Latency(median=2.2, sigma=0.05)
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    created = _kill_when(proc, sims, n, settle=1.0)
    assert created == n
    assert main(["resume", "--journal", str(out / "journal.db")]) == 0
    rows = _rows(out)
    # Every line, even one whose end the killed batch journaled but never downloaded.
    assert [r["status"] for r in rows] == ["succeeded"] * n
    assert all((out / r["files"][0]).is_file() for r in rows)
    assert sum(s.stats.creates for s in sims.values()) == n
    assert sims["apixo"].stats.creates > 0
    assert sims["crun"].stats.creates > 0
    assert "line " in capsys.readouterr().out  # resume itself fetched some of them


def test_a_rerun_without_an_account_holding_tasks_is_refused_before_sending(
    tmp_path: Path,
    sims: dict[str, Simulator],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropping an account, or going from one provider to several, would pay again for what
    the other journal holds: refused (exit 2), naming that journal, nothing sent."""
    # One provider runs as it always did: NANOBANANA_API_KEY and NANOBANANA_BASE_URL.
    monkeypatch.setenv("NANOBANANA_API_KEY", sims["apixo"].api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", sims["apixo"].base_url)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"kept apart {i}\n" for i in range(6)))
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--out", str(out), "-q", "--concurrent", "3"]
    # crun first: with both idle, ties follow the order given, so crun holds some prompts.
    assert main([*argv, "--provider", "crun,apixo"]) == 0
    held = sims["crun"].stats.creates
    assert held > 0
    capsys.readouterr()
    sent = {name: sim.stats.total_requests for name, sim in sims.items()}
    assert main([*argv, "--provider", "apixo"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    journal = out / "journal-crun.db"
    assert f"{journal} holds {held} task(s) of an account this run does not use" in err
    assert {name: sim.stats.total_requests for name, sim in sims.items()} == sent

    single = tmp_path / "single"
    one = ["batch", str(prompts), "--out", str(single), "-q", "--provider", "apixo"]
    assert main(one) == 0
    capsys.readouterr()
    sent = {name: sim.stats.total_requests for name, sim in sims.items()}
    assert main([*one[:-1], "apixo,crun"]) == 2
    assert f"{single / 'journal.db'} holds 6 task(s)" in capsys.readouterr().err
    assert {name: sim.stats.total_requests for name, sim in sims.items()} == sent


def test_the_readme_accounts_file_reads_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text()
    block = text[text.index("```toml\n") + len("```toml\n") :]
    block = textwrap.dedent(block[: block.index("```")])
    path = tmp_path / "accounts.toml"
    path.write_text(block.replace("https://...", "https://apixo.example"))
    monkeypatch.setenv("CRUN_KEY", "k1")
    monkeypatch.setenv("APIXO_KEY", "k2")
    accounts, strategy = read_accounts(path)
    assert strategy == "priority"
    assert [(a.name, a.provider, a.key_env) for a in accounts] == [
        ("crun", "crun", "CRUN_KEY"),
        ("apixo-main", "apixo", "APIXO_KEY"),
    ]
    assert accounts[0].limits(Limits()) == Limits(requests=600, per=10, concurrent_tasks=50)
    assert accounts[1].weight == 2
    assert "k1" not in repr(accounts)
    assert "k2" not in repr(accounts)


def test_crun_in_maintenance_fails_over_to_apixo_and_progress_shows_its_open_circuit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """crun answers every create with its 455 maintenance refusal: each prompt moves on to
    apixo (nothing was created on crun), and the last progress line shows crun's circuit."""
    crun = Simulator("crun", latency=FAST, seed=5, outages=[Outage(start=0, end=600)])
    apixo = Simulator("apixo", latency=FAST, seed=6)
    for sim in (crun, apixo):
        sim.start_in_thread()
    try:
        monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
        monkeypatch.delenv("NANOBANANA_BASE_URL", raising=False)
        for name, sim in (("CRUN", crun), ("APIXO", apixo)):
            monkeypatch.setenv(f"NANOBANANA_API_KEY_{name}", sim.api_key)
            monkeypatch.setenv(f"NANOBANANA_BASE_URL_{name}", sim.base_url)
        prompts = tmp_path / "p.txt"
        prompts.write_text("".join(f"during maintenance {i}\n" for i in range(12)))
        argv = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--progress", "plain"]
        assert main([*argv, "--provider", "crun,apixo", "--concurrent", "2"]) == 0
        assert crun.stats.creates == 0
        assert crun.stats.refused >= 5
        assert apixo.stats.creates == 12
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert "crun 0 accepted, 0 running (circuit open)" in last
        assert "apixo 12 accepted" in last
    finally:
        for sim in (crun, apixo):
            sim.stop_thread()


def test_progress_table_has_a_row_per_account_with_its_circuit() -> None:
    state = BatchState(total=4, started=0.0)
    state.accounts = [
        AccountProgress(name="apixo", accepted=3, running=1, circuit="closed", set_aside=False),
        AccountProgress(name="crun", accepted=0, running=0, circuit="half-open", set_aside=False),
    ]
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(render_progress(state, 1.0))
    text = console.export_text()
    assert re.search(r"apixo\s*│\s*3\s*│\s*1\s*│\s*closed", text)
    assert re.search(r"crun\s*│\s*0\s*│\s*0\s*│\s*half-open", text)
    assert "account" in text


def test_every_key_refused_stops_the_batch_and_says_so(
    tmp_path: Path,
    sims: dict[str, Simulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    canary: str,
) -> None:
    """Both accounts refuse their keys: nothing is created, the prompts are listed as not
    submitted (a rerun submits them), and no key reaches the output."""
    monkeypatch.setenv("NANOBANANA_API_KEY_APIXO", canary)
    monkeypatch.setenv("NANOBANANA_API_KEY_CRUN", canary + "-crun")
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"refused {i}\n" for i in range(5)))
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--out", str(out), "--provider", "apixo,crun", "-q"]
    assert main([*argv, "--concurrent", "1"]) == 1
    assert [r["status"] for r in _rows(out)] == ["not_submitted"] * 5
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert "5 prompt(s) not submitted: every account's key or credits were refused" in text
    assert canary not in captured.out + captured.err
    assert sims["apixo"].stats.creates == sims["crun"].stats.creates == 0


def test_two_keys_of_one_provider_from_a_file_each_keep_their_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two apixo accounts named in the file: keys from NANOBANANA_API_KEY_<NAME>, a journal
    each, and --progress json lists both accounts."""
    first = Simulator("apixo", latency=FAST, seed=7).start_in_thread()
    second = Simulator("apixo", latency=FAST, seed=8).start_in_thread()
    try:
        for name, sim in (("APIXO_A", first), ("APIXO_B", second)):
            monkeypatch.setenv(f"NANOBANANA_API_KEY_{name}", sim.api_key)
            monkeypatch.setenv(f"NANOBANANA_BASE_URL_{name}", sim.base_url)
        accounts = tmp_path / "accounts.toml"
        accounts.write_text(
            'strategy = "weighted"\n'
            '[[accounts]]\nprovider = "apixo"\nname = "apixo-a"\n'
            '[[accounts]]\nprovider = "apixo"\nname = "apixo-b"\n'
        )
        prompts = tmp_path / "p.txt"
        prompts.write_text("".join(f"two keys {i}\n" for i in range(20)))
        out = tmp_path / "out"
        argv = ["batch", str(prompts), "--out", str(out), "--accounts", str(accounts)]
        assert main([*argv, "--progress", "json"]) == 0
        assert first.stats.creates > 0
        assert second.stats.creates > 0
        assert first.stats.creates + second.stats.creates == 20
        assert (out / "journal-apixo-a.db").is_file()
        assert (out / "journal-apixo-b.db").is_file()
        record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert [(a["name"], a["accepted"]) for a in record["accounts"]] == [
            ("apixo-a", first.stats.creates),
            ("apixo-b", second.stats.creates),
        ]
    finally:
        first.stop_thread()
        second.stop_thread()
