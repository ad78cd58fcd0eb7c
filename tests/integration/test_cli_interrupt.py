"""Ctrl-C at any moment of a `nanobanana` run, the start-up imports included: one line on
stderr, exit 130, no traceback and no file; once the outcome is printed, that outcome."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Loaded by Python's site module in the CLI's process (through PYTHONPATH), before any of the
# package's code: when the import of NB_TEST_AT begins it sends the process SIGINT (so the
# KeyboardInterrupt lands inside that import, on any machine at any speed), or, with
# NB_TEST_MARK set, creates that file so the test can time a SIGINT from that moment. With
# NB_TEST_AT=threads, atexit or teardown the SIGINT comes while the interpreter shuts down: from
# a thread once the main thread waits to join it, from the last exit function to run, or as
# the interpreter clears the modules.
_HOOK = """
import atexit
import os
import signal
import sys
import threading
import time


class _SigintAt:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == os.environ["NB_TEST_AT"]:
            sys.meta_path.remove(_SigintAt)
            mark = os.environ.get("NB_TEST_MARK")
            if mark:
                open(mark, "x").close()
            else:
                os.kill(os.getpid(), signal.SIGINT)
        return None


def _sigint_at_exit():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here


class _SigintWhenDeleted:
    def __del__(self):  # as the interpreter clears this module, after the exit functions
        _sigint_at_exit()


def _sigint_at_join():
    threading.main_thread().join()  # returns once the interpreter is shutting down
    _sigint_at_exit()


if os.environ["NB_TEST_AT"] == "atexit":
    atexit.register(_sigint_at_exit)
elif os.environ["NB_TEST_AT"] == "threads":
    threading.Thread(target=_sigint_at_join).start()
elif os.environ["NB_TEST_AT"] == "teardown":
    _sigint_when_deleted = _SigintWhenDeleted()
else:
    sys.meta_path.insert(0, _SigintAt)
"""

_BIN = Path(sys.executable).parent
ENTRIES = {
    "script": [str(_BIN / "nanobanana")],
    "module": [sys.executable, "-m", "nanobanana_async"],
}


def _start(
    tmp_path: Path, entry: str, at: str, *, mark: Path | None = None, argv: list[str] | None = None
) -> subprocess.Popen[bytes]:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_HOOK)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NANOBANANA_")},
        # Named, so the local simulator's notice does not add a line to stderr.
        "NANOBANANA_PROVIDER": "local",
        "PYTHONPATH": str(hook_dir),
        "NB_TEST_AT": at,
        **({"NB_TEST_MARK": str(mark)} if mark else {}),
    }
    if argv is None:
        argv = ["generate", "a cat", "--output", str(tmp_path / "cat.png")]
    return subprocess.Popen(
        [*ENTRIES[entry], *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _assert_interrupted(proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    out, err = proc.communicate(timeout=30)
    assert err.decode() == "interrupted\n"  # one line: no traceback, no "Fatal Python error"
    assert proc.returncode == 130
    assert out == b""
    assert not (tmp_path / "cat.png").exists()


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize(
    "at",
    [
        # From the first heavy import to the last one before the run: aiohttp loads inside
        # the Client's import, rich with the commands.
        "nanobanana_async._client",
        "aiohttp",
        "nanobanana_async.cli._batch",
    ],
)
def test_ctrl_c_while_the_cli_imports_is_one_line_and_exit_130(
    tmp_path: Path, entry: str, at: str
) -> None:
    """A Ctrl-C while Python imports the library, aiohttp or the commands: exit 130, one line."""
    _assert_interrupted(_start(tmp_path, entry, at), tmp_path)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3])
def test_ctrl_c_at_any_moment_after_start_up_is_one_line_and_exit_130(
    tmp_path: Path, entry: str, delay: float
) -> None:
    """A Ctrl-C from the first import of aiohttp on, during the imports or the run: the same."""
    mark = tmp_path / "aiohttp-import-began"
    proc = _start(tmp_path, entry, "aiohttp", mark=mark)
    deadline = time.monotonic() + 30
    while not mark.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    assert mark.exists()
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc, tmp_path)


_BALANCE = (["balance", "--provider", "local"], 0, r"local: \d+\n", "")


@pytest.mark.parametrize(
    ("at", "argv", "code", "out", "err"),
    [
        ("threads", *_BALANCE),
        ("atexit", *_BALANCE),
        ("teardown", *_BALANCE),
        ("atexit", ["generate", "a cat", "--aspect-ratio", "7:5"], 2, "", r"error: .*ratio.*\n"),
        ("atexit", ["--version"], 0, r"nanobanana \S+\n", ""),
    ],
    ids=["threads", "atexit", "teardown", "usage-error", "version"],
)
def test_ctrl_c_while_the_interpreter_exits_keeps_the_outcome(
    tmp_path: Path, at: str, argv: list[str], code: int, out: str, err: str
) -> None:
    """A Ctrl-C once the outcome is printed (thread joins, exit functions): that exit code and
    output, no traceback."""
    proc = _start(tmp_path, "script", at, argv=argv)
    stdout, stderr = proc.communicate(timeout=30)
    assert re.fullmatch(err, stderr.decode())
    assert re.fullmatch(out, stdout.decode())
    assert proc.returncode == code


def test_the_console_script_target_imports_almost_nothing() -> None:
    """Importing the command's module loads neither aiohttp, rich, typing nor the Client: the
    moments before Ctrl-C is handled stay the interpreter's own start-up."""
    code = (
        "import sys; before = set(sys.modules); import nanobanana_async.cli; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    # signal and atexit: what the handlers need (a site hook may have loaded them before).
    assert set(loaded) - {"atexit", "signal"} == {"nanobanana_async", "nanobanana_async.cli"}
