"""The `nanobanana generate` command and the standalone simulator command."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from nanobanana_async.cli import main


def test_generate_writes_a_png_with_the_local_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no key set, `generate` uses the local simulator, says so, and writes the image."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    out = tmp_path / "sub" / "cat.png"
    code = main(["generate", "an orange cat", "--aspect-ratio", "16:9", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "local simulator" in captured.err
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(data[16:20], "big") > int.from_bytes(data[20:24], "big")
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_generate_bad_input_exits_2_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid input is a usage error (exit 2) naming the field; nothing is written."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    out = tmp_path / "x.png"
    code = main(["generate", "a cat", "--aspect-ratio", "7:5", "--output", str(out)])
    assert code == 2
    assert "$.aspect_ratio" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["generate", "a cat", "--aspect-ratio", "7:5"], "$.aspect_ratio"),
        (["generate", "a cat", "--model", "nano-banana-9"], "$.model"),
        (["generate", "   "], "$.prompt"),
        (["batch", "p.jsonl", "--out", "out"], "line 2: "),
        (["batch", "good.txt", "--out", "p.jsonl/out"], "--out p.jsonl/out: "),
        (["batch", "good.txt", "--out", "."], "journal.db: not a nanobanana journal"),
        (["status", "t-1", "--model", "nano-banana-2"], "no NANOBANANA_API_KEY set: set it"),
    ],
    ids=["ratio", "model", "prompt", "batch-row", "batch-out", "batch-journal", "status"],
)
def test_bad_input_on_the_default_local_simulator_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    """With no key set (the local simulator by default) a bad option, row or command is one
    line on stderr, the error, and exit 2: the 'using the built-in local simulator' notice is
    said only once the command goes ahead."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    monkeypatch.chdir(tmp_path)
    rows = '{"prompt": "a cat"}\n{"prompt": "a dog", "aspect_ratio": "7:5"}\n'
    (tmp_path / "p.jsonl").write_text(rows, encoding="utf-8")
    (tmp_path / "good.txt").write_text("a cat\n\n# a comment\n", encoding="utf-8")
    (tmp_path / "journal.db").write_text("not SQLite", encoding="utf-8")
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    assert said in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt", "journal.db", "p.jsonl"]


def test_simulator_command_serves_until_stopped() -> None:
    """`python -m nanobanana_async.testing` serves the chosen provider on 127.0.0.1."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nanobanana_async.testing",
            "--provider",
            "crun",
            "--port",
            "0",
            "--api-key",
            "dev-key",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split(" at ")[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        # The exports a user pastes, the key included (a random key is useless unseen).
        exports = [proc.stdout.readline().strip() for _ in range(3)]
        assert exports == [
            "export NANOBANANA_PROVIDER=crun",
            f"export NANOBANANA_BASE_URL={base_url}",
            "export NANOBANANA_API_KEY=dev-key",
        ]
        request = urllib.request.Request(  # noqa: S310  loopback http only
            base_url + "/api/v1/client/account/balance", headers={"x-api-key": "dev-key"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read())["data"]["balance"] > 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
