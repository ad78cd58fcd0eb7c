"""The command line's word on NANOBANANA_* variables it does not read (misspelt names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanobanana_async.cli import main
from nanobanana_async.cli._common import environment_warnings


def test_a_misspelt_variable_is_named_with_the_one_meant() -> None:
    """NANOBANANA_PROVIDR=crun would silently leave the default provider: it is named, with
    the variable it resembles, and its value (maybe a key) is never printed."""
    lines = environment_warnings(
        {"NANOBANANA_PROVIDR": "crun", "NANOBANANA_APIKEY": "sk-canary-misspelt", "HOME": "/"}
    )
    assert lines == [
        "warning: NANOBANANA_APIKEY is set but not read by nanobanana "
        "(did you mean NANOBANANA_API_KEY?)",
        "warning: NANOBANANA_PROVIDR is set but not read by nanobanana "
        "(did you mean NANOBANANA_PROVIDER?)",
    ]


def test_variables_read_and_per_account_ones_raise_no_warning() -> None:
    """Every variable the library reads, and any NANOBANANA_API_KEY_<NAME> or
    NANOBANANA_BASE_URL_<NAME>, is quiet."""
    environ = {
        "NANOBANANA_API_KEY": "k",
        "NANOBANANA_BASE_URL": "http://127.0.0.1:1",
        "NANOBANANA_PROVIDER": "crun",
        "NANOBANANA_COORDINATOR": "redis://127.0.0.1:1/0",
        "NANOBANANA_LOG": "DEBUG",
        "NANOBANANA_API_KEY_APIXO_MAIN": "k",
        "NANOBANANA_BASE_URL_CRUN": "http://127.0.0.1:2",
    }
    assert environment_warnings(environ) == []


def test_a_log_level_other_than_debug_or_info_is_named() -> None:
    """NANOBANANA_LOG=verbose logged nothing without a word."""
    assert environment_warnings({"NANOBANANA_LOG": "verbose"}) == [
        "warning: NANOBANANA_LOG is set but is neither debug nor info: no logging"
    ]


def test_the_command_warns_on_stderr_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`NANOBANANA_PROVIDR=crun nanobanana generate ...` says so on stderr once; the warning
    changes neither the command nor its exit code."""
    for name in ("NANOBANANA_PROVIDER", "NANOBANANA_API_KEY", "NANOBANANA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NANOBANANA_PROVIDR", "crun")
    out = tmp_path / "cat.png"
    assert main(["generate", "a cat", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("NANOBANANA_PROVIDR is set but not read") == 1
    assert "crun" not in err
    assert out.exists()


@pytest.mark.parametrize("command", [["generate", "a cat"], ["balance"], ["status", "t-1"]])
def test_a_provider_without_its_key_says_which_variable_to_set(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--provider crun` with no key set: one line in the command line's terms (the variable,
    --api-key-env), not the library's `pass api_key=`; exit 2."""
    for name in ("NANOBANANA_PROVIDER", "NANOBANANA_API_KEY", "NANOBANANA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main([*command, "--provider", "crun"]) == 2
    assert capsys.readouterr().err == (
        "error: no API key for crun: set NANOBANANA_API_KEY, "
        "or name the variable holding it with --api-key-env\n"
    )
    monkeypatch.setenv("NANOBANANA_PROVIDER", "crun")
    monkeypatch.setenv("TEAM_KEY", "")
    assert main([*command, "--api-key-env", "TEAM_KEY"]) == 2
    assert "TEAM_KEY" in capsys.readouterr().err


def test_generate_without_output_beside_a_folder_named_image_writes_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a folder ./image, `generate "a cat"` writes image/<task id>.png (a download into
    a folder) and says where; nothing lands beside it."""
    monkeypatch.setenv("NANOBANANA_PROVIDER", "local")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "image").mkdir()
    assert main(["generate", "a cat"]) == 0
    written = list((tmp_path / "image").iterdir())
    assert len(written) == 1
    assert written[0].suffix == ".png"
    assert f"{Path('image') / written[0].name} (" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image"]


def test_base_url_on_the_local_fallback_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate --base-url URL` with no key set fell back to the local simulator and ignored
    the URL: now one line, exit 2, no image written."""
    for name in ("NANOBANANA_PROVIDER", "NANOBANANA_API_KEY", "NANOBANANA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a cat", "--base-url", "http://127.0.0.1:18431"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: base_url does not apply to local")
    assert list(tmp_path.iterdir()) == []


def test_a_coordinator_that_is_not_a_redis_url_names_the_flag_or_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--coordinator foo://x` (or NANOBANANA_COORDINATOR=foo://x) is a usage error naming
    the flag (or the variable), never the URL (it may hold the Redis password); exit 2,
    nothing written."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.delenv("NANOBANANA_COORDINATOR", raising=False)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--out", str(out), "-q"]
    with pytest.raises(SystemExit) as flag:
        main([*argv, "--coordinator", "foo://:hunter2@x"])
    err = capsys.readouterr().err
    assert "argument --coordinator: must be a redis://, rediss:// or unix:// URL" in err
    monkeypatch.setenv("NANOBANANA_COORDINATOR", "foo://:hunter2@x")
    with pytest.raises(SystemExit) as variable:
        main(argv)
    err += capsys.readouterr().err
    assert "NANOBANANA_COORDINATOR must be a redis://, rediss:// or unix:// URL" in err
    assert (flag.value.code, variable.value.code) == (2, 2)
    assert "hunter2" not in err
    assert not out.exists()
