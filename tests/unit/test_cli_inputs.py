"""The CLI's input handling, in-process: file types, real line numbers, one line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async.cli import main
from nanobanana_async.cli._batch import _key, manifest_row
from nanobanana_async.cli._inputs import InputError, in_cli_terms, read_requests


def _check(request: nb.ImageRequest) -> None:
    nb.Client("local").validate(request)


def _read(path: Path, **defaults: object) -> list[tuple[int, nb.ImageRequest]]:
    return read_requests(path, defaults, _check)


def test_json_array_is_read_as_prompts(tmp_path: Path) -> None:
    """A .json array is two prompts, not one per text line (8 paid tasks for 2 prompts), each
    numbered by the line it starts on, as in every other format."""
    path = tmp_path / "p.json"
    path.write_text('[\n  {"prompt": "a cat", "aspect_ratio": "16:9"},\n\n  "a dog"\n]\n')
    rows = _read(path)
    assert [(n, r.prompt, r.aspect_ratio) for n, r in rows] == [
        (2, "a cat", "16:9"),
        (4, "a dog", None),
    ]


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    """A .md (or any other) file is refused, naming the types that are read."""
    path = tmp_path / "p.md"
    path.write_text("a cat\n")
    with pytest.raises(InputError, match=r"\.txt, \.json, \.jsonl, \.csv"):
        _read(path)


def test_csv_line_numbers_are_real(tmp_path: Path) -> None:
    """Blank lines and multi-line quoted prompts do not shift the reported line numbers."""
    path = tmp_path / "p.csv"
    path.write_text('prompt,aspect_ratio\n\n"a cat\non two lines",1:1\n\nan owl,7:5\n')
    with pytest.raises(InputError) as info:
        _read(path)
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith("line 6: ")


def test_one_message_per_distinct_problem(tmp_path: Path) -> None:
    """A bad default on 200 prompts is one line listing the allowed values, not 200."""
    path = tmp_path / "p.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(200)))
    with pytest.raises(InputError) as info:
        _read(path, aspect_ratio="7:5")
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith("every prompt (200): aspect ratio '7:5' not supported")
    assert (
        "(allowed: 1:8, 1:4, 9:16, 2:3, 3:4, 4:5, 1:1, 5:4, 4:3, 3:2, 16:9" in info.value.lines[0]
    )


def test_a_problem_of_some_rows_names_them(tmp_path: Path) -> None:
    """A problem shared by some rows names the first five of them and counts the rest."""
    path = tmp_path / "p.csv"
    rows = [f"prompt {i},{'7:5' if i % 2 else '1:1'}\n" for i in range(20)]
    path.write_text("prompt,aspect_ratio\n" + "".join(rows))
    with pytest.raises(InputError) as info:
        _read(path)
    assert info.value.lines[0].startswith("lines 3, 5, 7, 9, 11 and 5 more: aspect ratio '7:5'")


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({"model": "nano-banana-pro"}, "(offered: nano-banana, nano-banana-2)"),
        ({"output_format": "gif"}, "(allowed: jpeg, png)"),
        ({"resolution": "8K"}, "(allowed: 1K, 2K, 4K)"),
    ],
)
def test_validation_errors_list_the_allowed_values(fields: dict[str, str], allowed: str) -> None:
    """Every refused value comes with the values this provider and model accept."""
    with pytest.raises(nb.InvalidRequestError) as info:
        _check(nb.ImageRequest.from_mapping({"prompt": "a cat", **fields}))
    assert allowed in info.value.errors[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.txt", None, "missing.txt: No such file or directory"),
        ("binary.txt", b"\xff\xfe\x00bad", "binary.txt: not a UTF-8 text file"),
        ("empty.txt", b"", "empty.txt: no prompts found"),
        (
            "notes.md",
            b"a cat\n",
            "notes.md: unknown file type .md: use .txt, .json, .jsonl, .csv, or say which with "
            "--input-format (--input-format txt for a prompt a line)",
        ),
    ],
)
def test_bad_input_files_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    content: bytes | None,
    expected: str,
) -> None:
    """No traceback: one line on stderr (the local simulator's notice is not said), exit 2,
    nothing written."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["batch", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[-1].startswith("error: ")
    assert expected in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["images", "prompts.txt"])
def test_a_folder_given_as_the_prompt_file_is_named_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """`nanobanana batch images --out images` (the folder for the prompt file): one line that
    says it is a folder, exit 2, nothing written in it (it said "unknown file type (none)")."""
    folder = tmp_path / name
    folder.mkdir()
    assert main(["batch", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {folder}: a folder, not a prompt file (.txt, .json, .jsonl, .csv)"
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_a_changed_setting_is_a_new_journal_key() -> None:
    """Rerunning with another aspect ratio or model never returns the old images."""
    base = nb.ImageRequest(prompt="a cat")
    keys = {
        _key("apixo", 1, base),
        _key("apixo", 1, nb.ImageRequest(prompt="a cat", aspect_ratio="16:9")),
        _key("apixo", 1, nb.ImageRequest(prompt="a cat", model="nano-banana-pro")),
        _key("apixo", 2, base),
    }
    assert len(keys) == 4
    assert _key("apixo", 1, base) == _key("apixo", 1, nb.ImageRequest(prompt="a cat"))


def test_manifest_rows_have_one_shape() -> None:
    """Succeeded and failed rows carry the same fields (prompt and model included)."""
    request = nb.ImageRequest(prompt="a cat")
    ok = manifest_row(1, request, status="succeeded", task_id="t1", files=["a.png"])
    bad = manifest_row(2, request, status="failed", task_id=None, error="boom")
    assert (
        list(ok) == list(bad) == ["line", "prompt", "model", "status", "task_id", "files", "error"]
    )


def test_resume_of_a_missing_journal_is_exit_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume --journal nonexistent.db` used to create an empty database and exit 0."""
    path = tmp_path / "nonexistent.db"
    assert main(["resume", "--journal", str(path)]) == 2
    assert "no such journal" in capsys.readouterr().err
    assert not path.exists()


def test_resume_of_a_prompts_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume --journal prompts.txt`: one line naming the file, no traceback."""
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n")
    assert main(["resume", "--journal", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "prompts.txt: not a nanobanana journal" in err[0]


async def test_resume_with_nothing_left_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished journal: 'nothing to resume', exit 0 (it used to print nothing)."""
    from nanobanana_async._journal import Journal

    path = tmp_path / "journal.db"
    journal = Journal(path, provider="apixo", base_url="https://api.apixo.test")
    await journal.record_intent("line-1-x", "apixo", nb.ImageRequest(prompt="a cat"))
    await journal.record_submitted("line-1-x", "t1", "nano-banana-2")
    await journal.record_end("line-1-x", "succeeded", urls=("https://x.test/a.png",))
    await journal.aclose()
    # Delivered: its row and its image are in the batch's folder.
    (tmp_path / "00001-t1.png").write_bytes(b"\x89PNG")
    row = {"line": 1, "status": "succeeded", "task_id": "t1", "files": ["00001-t1.png"]}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    assert await _main_in_thread(["resume", "--journal", str(path)]) == 0
    assert "nothing to resume" in capsys.readouterr().out


async def _main_in_thread(argv: list[str]) -> int:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(main, argv)


def test_generate_into_a_folder_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`generate -o SOMEDIR` used to fail after the task ran and was paid."""
    monkeypatch.setenv("NANOBANANA_PROVIDER", "apixo")
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9")  # nothing may be sent
    assert main(["generate", "a cat", "-o", str(tmp_path)]) == 2
    assert "not a file path" in capsys.readouterr().err


def test_unknown_nanobanana_provider_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NANOBANANA_PROVIDER picks the provider; a wrong value lists the valid ones."""
    monkeypatch.setenv("NANOBANANA_PROVIDER", "bogus")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(tmp_path / "out")]) == 2
    assert "is not one of" in capsys.readouterr().err


async def test_local_batch_with_unfinished_tasks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process simulator's tasks die with it: a rerun says so instead of 404s forever."""
    from nanobanana_async._journal import Journal

    monkeypatch.setenv("NANOBANANA_PROVIDER", "local")
    out = tmp_path / "out"
    journal = Journal(out / "journal.db", provider="local")
    await journal.record_intent("line-1-x", "local", nb.ImageRequest(prompt="a cat"))
    await journal.record_submitted("line-1-x", "t1", "nano-banana-2")
    await journal.aclose()
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert await _main_in_thread(["batch", str(prompts), "--out", str(out)]) == 2
    assert "unfinished task(s) of the local simulator" in capsys.readouterr().err
    # resume says the same instead of polling a simulator that is gone (404 for each task).
    assert await _main_in_thread(["resume", "--journal", str(out / "journal.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unfinished task(s) of the local simulator" in err[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["batch", "p.txt", "--out", "o", "--requests", "0"], "argument --requests: must be"),
        (["batch", "p.txt", "--out", "o", "--per", "abc"], "argument --per: not a number"),
        (["batch", "p.txt", "--out", "o", "--concurrent", "-5"], "argument --concurrent: must"),
        (
            ["batch", "p.txt", "--out", "o", "--concurrent", "1.5"],
            "argument --concurrent: not a whole number: '1.5'",
        ),
        (["batch", "p.txt", "--out", "o", "--requests", "1e3"], "--requests: not a whole number"),
        (["batch", "p.txt", "--out", "o", "--provider", "nope"], "argument --provider: invalid"),
        (["status", "t1", "--wait", "-1"], "argument --wait: must be positive"),
        (["simulate", "--port", "70000"], "argument --port: not a port (0-65535)"),
        (["simulate", "--median", "0"], "argument --median: must be positive"),
        (["generate"], "the following arguments are required: prompt"),
        ([], "the following arguments are required: command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """A bad option value is one line naming the option (not the whole usage), exit 2."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert expected in err[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["generate", "a cat", "--aspect-ration", "16:9"],
            "nanobanana generate: error: unrecognized arguments: --aspect-ration 16:9 (did you "
            "mean --aspect-ratio?) (see nanobanana generate --help)",
        ),
        (
            ["batch", "p.txt", "--out", "o", "--concurency", "4"],
            "nanobanana batch: error: unrecognized arguments: --concurency 4 (did you mean "
            "--concurrent?) (see nanobanana batch --help)",
        ),
        (
            ["status", "t1", "extra"],
            "nanobanana status: error: unrecognized arguments: extra "
            "(see nanobanana status --help)",
        ),
    ],
)
def test_an_unknown_flag_names_the_command_and_the_flag_meant(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """A misspelt flag: one line from the command's own parser, with the closest flag it has
    and its --help (it said 'nanobanana: error: …' and pointed to the top-level help)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [expected]


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "a cat", "--api-key", "{key}"],
        ["generate", "a cat", "--api-key={key}"],
        ["batch", "p.txt", "--out", "o", "--token", "{key}"],
    ],
)
def test_an_unknown_key_flag_never_echoes_its_value(
    capsys: pytest.CaptureFixture[str], canary: str, argv: list[str]
) -> None:
    """A key given by a flag the command does not have (``--api-key``: only ``simulate`` has
    it; argparse reads it as ``--api-key-env``, whose value is a variable's name) is refused
    in one line that hides it: the key never reaches stderr (or the CI log it lands in)."""
    try:
        code = main([word.replace("{key}", canary) for word in argv])
    except SystemExit as usage:  # the parser's own refusal
        code = usage.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert canary not in err[0]
    assert "not shown" in err[0] or "unrecognized arguments: --token ***" in err[0]


def test_out_that_is_a_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batch --out FILE` is one line and exit 2 (it was a FileExistsError, exit 1)."""
    monkeypatch.setenv("NANOBANANA_PROVIDER", "local")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(prompts)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --out {prompts}: not a folder"]
    # A folder that cannot be made (under a file): one line too, not a FileNotFoundError.
    assert main(["batch", str(prompts), "--out", str(prompts / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {prompts / 'out'}: Not a directory"]


def test_an_unreachable_provider_is_named_with_its_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection failure says which provider and URL were tried; exit 1."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert main(["balance", "--provider", "crun"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: crun at http://127.0.0.1:9: could not connect")


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (None, "interrupted"),
        ("apixo", "interrupted: run the same command again to resume from the journal"),
        ("local", "interrupted: the local simulator's unfinished tasks ended with it; remove"),
    ],
)
def test_the_interrupted_line_says_what_a_rerun_does(provider: str | None, expected: str) -> None:
    """Ctrl-C's one line promises a resume only where a rerun resumes (not local, not generate)."""
    import argparse

    from nanobanana_async.cli._main import _after_interrupt

    args = argparse.Namespace()
    if provider is not None:
        args.interrupted_journal, args.interrupted_provider = Path("out/journal.db"), provider
    assert f"interrupted{_after_interrupt(args)}".startswith(expected)


def test_an_unknown_column_lists_the_known_fields(tmp_path: Path) -> None:
    """A misspelt column or key names the fields a row may set."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a cat", "colour": "red"}\n')
    with pytest.raises(InputError) as info:
        _read(path)
    assert info.value.lines[0].startswith("line 1: unknown field (known: aspect_ratio, ")
    assert info.value.lines[0].endswith(" @ $.colour")


def test_status_on_the_local_simulator_says_why_it_cannot(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status ID` without a key (local) is exit 2 and one line, not a 404 'unknown'."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    monkeypatch.delenv("NANOBANANA_PROVIDER", raising=False)
    assert main(["status", "0a5d2f346baa9455000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: no NANOBANANA_API_KEY set: set it and name the task's provider with --provider "
        "to check a task (the local simulator's tasks end with the process that made them)"
    ]
    assert main(["status", "0a5d2f346baa9455000000", "--provider", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: the local simulator's tasks end with the process that made them: no task to check"
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.csv", 'prompt,num_images,aspect_ratio\nok,1,\n"",0,1:1\nok,x,\n'),
        (
            "p.json",
            '[\n"ok",\n{"prompt": "", "num_images": 0, "aspect_ratio": "1:1"},\n'
            '{"prompt": "ok", "num_images": "x"}\n]',
        ),
        (
            "p.jsonl",
            '\n"ok"\n{"prompt": "", "num_images": 0, "aspect_ratio": "1:1"}\n'
            '{"prompt": "ok", "num_images": "x"}\n',
        ),
    ],
)
def test_every_format_names_a_problem_the_same_way(tmp_path: Path, name: str, text: str) -> None:
    """An empty prompt (a raw `ImageRequest.__init__() missing` in .json) and a bad count read
    the same in .csv, .json and .jsonl: `line N: problem @ $.field`, every problem listed."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        _read(path)
    assert info.value.lines == [
        "line 3: prompt must be a non-empty string @ $.prompt",
        "lines 3, 4: num_images must be a positive integer @ $.num_images",
    ]


def test_a_json_object_without_a_prompt_names_the_field(tmp_path: Path) -> None:
    """A missing prompt is `required field missing @ $.prompt`, not a TypeError's text."""
    path = tmp_path / "p.json"
    path.write_text('[{"aspect_ratio": "1:1"}]')
    with pytest.raises(InputError) as info:
        _read(path)
    assert info.value.lines == ["line 1: required field missing @ $.prompt"]


def test_a_spreadsheets_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: its first column is still `prompt`."""
    path = tmp_path / "p.csv"
    path.write_bytes("prompt,aspect_ratio\r\na cat,1:1\r\n".encode("utf-8-sig"))
    assert [(n, r.prompt) for n, r in _read(path)] == [(2, "a cat")]


def test_out_that_is_not_writable_is_exit_2_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batch --out RO_DIR` is one line and exit 2 (it was a raw PermissionError, exit 1).

    The suite runs as root, whom permission bits do not stop, so creating a file there is
    what is made to fail, as on a read-only mount (tests/integration has the real mount)."""
    import errno
    import os

    import nanobanana_async.cli._common as cli_common

    out = tmp_path / "out"
    out.mkdir()
    real = os.open

    def refuse(path: Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).parent == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, flags, mode)

    monkeypatch.setattr(cli_common.os, "open", refuse)
    monkeypatch.setenv("NANOBANANA_PROVIDER", "apixo")
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9")  # nothing may be sent
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --out {out}: not writable"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "debug"),
    [
        (["batch", "p.txt", "--out", "o", "--debug"], True),
        (["--debug", "batch", "p.txt", "--out", "o"], True),
        (["batch", "p.txt", "--out", "o"], False),
        (["status", "t1", "--debug"], True),
    ],
)
def test_debug_is_accepted_after_the_command_too(argv: list[str], debug: bool) -> None:
    """`nanobanana batch ... --debug` shows tracebacks (it was a usage error, exit 2)."""
    from nanobanana_async.cli._main import _parser

    assert _parser().parse_args(argv).debug is debug


async def test_a_rerun_reads_the_journal_once_and_past_a_damaged_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun's check of the journal reads it once (it read every row twice), and a row that
    does not read does not stop the batch: its own submit fails naming it."""
    import sqlite3

    from nanobanana_async._journal import Journal
    from nanobanana_async.cli._batch import _prepare_journal

    path = tmp_path / "journal.db"
    journal = Journal(path)
    for key in ("line-1-a", "line-2-b"):
        await journal.record_intent(key, "apixo", nb.ImageRequest(prompt=key))
        await journal.record_submitted(key, f"t-{key}", "nano-banana-2")
    await journal.aclose()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET state = 'done' WHERE key = 'line-2-b'")
    db.close()
    reads = 0
    entries = Journal.entries

    async def counted(self: Journal, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await entries(self, **kwargs)  # type: ignore[arg-type]  # passed through

    monkeypatch.setattr(Journal, "entries", counted)
    known = await _prepare_journal(path, "apixo", ["line-1-a", "line-3-c"], False, out=tmp_path)
    assert known == (0, 1)
    assert reads == 1


def test_a_required_callback_url_is_asked_for_in_the_command_lines_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nanobananaapi's nano-banana needs a callback URL: generate and batch name
    --callback-url (and batch the callback_url column), not the library's callbacks=
    receiver, which the command line does not have; one line, exit 2, nothing sent."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "k" * 16)
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9/")  # never reached
    argv = ["--provider", "nanobananaapi", "--model", "nano-banana"]
    assert main(["generate", "a cat", "-o", str(tmp_path / "x.png"), *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "requires a callback URL (--callback-url URL) @ $.callback_url" in err[0]
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["batch", str(prompts), "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert (
        "requires a callback URL (--callback-url URL, or a callback_url column) @ $.callback_url"
    ) in err[0]
    assert "callbacks=" not in err[0]


def test_a_required_field_is_asked_for_from_the_errors_missing_not_its_words() -> None:
    """The command line asks for a required callback URL from the error's ``missing`` and the
    line's path, whatever words the library used; other lines pass as they are."""
    error = nb.InvalidRequestError(
        ["the library's own words for it @ $.callback_url", "prompt too long @ $.prompt"],
        missing={"callback_url": "nanobananaapi nano-banana"},
    )
    assert in_cli_terms(error, batch=False) == [
        "nanobananaapi nano-banana requires a callback URL (--callback-url URL) @ $.callback_url",
        "prompt too long @ $.prompt",
    ]
    (line, _) = in_cli_terms(error, batch=True)
    assert line.endswith("(--callback-url URL, or a callback_url column) @ $.callback_url")
    plain = nb.InvalidRequestError(["it says so @ $.callback_url"])  # nothing missing
    assert in_cli_terms(plain, batch=False) == ["it says so @ $.callback_url"]
