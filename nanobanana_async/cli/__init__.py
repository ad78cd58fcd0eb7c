"""``nanobanana`` / ``python -m nanobanana_async``: the command line (argument parsing and
display; all work goes through the public Client).

Exit codes: 0 all done, 1 some failed, 2 usage or configuration error, 130 interrupted.

This module is the console script's target and stays import-light (``signal`` and builtins):
the commands, aiohttp and the Client (about 0.3 s of imports) load only once
:func:`console_main` has made a Ctrl-C read as one line and exit 130.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import types

# _common.EXIT_INTERRUPTED, spelt out here: importing _common loads the Client.
_EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Leaves the process's signal handlers alone (it runs inside tests and other programs);
    :func:`console_main` is the command itself.
    """
    from ._main import main as run

    return run(argv)


def console_main() -> int:
    """The ``nanobanana`` command: :func:`main`, and a Ctrl-C at any moment is one line on
    stderr and exit 130, never a traceback.

    Only for the console script: it leaves Ctrl-C set up for the interpreter's exit (a Ctrl-C
    after it returns ends the process at once). A program that runs the command line inside
    itself calls :func:`main`, which leaves signal handlers alone.

    Returns:
        The exit code.
    """
    # First of all: until a command's work starts (imports, argument checks) nothing has been
    # sent or written, so a Ctrl-C ends the process at once; Python's KeyboardInterrupt would
    # print a traceback from whichever import it hit.
    signal.signal(signal.SIGINT, interrupted_before_work)
    code = _EXIT_INTERRUPTED
    try:
        code = main()
    except KeyboardInterrupt:
        # Only from the few bytecodes after a command's own handling returned; a second
        # Ctrl-C meanwhile changes nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("interrupted\n")
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    finally:
        # The outcome is decided and printed. A Ctrl-C while the interpreter shuts down must
        # not raise in its Python code (a traceback): while it joins threads, which may hang,
        # it exits at once with that outcome.
        signal.signal(signal.SIGINT, lambda signum, frame: _exit_now(code))
        # Registered last, so the first exit function to run. After the exit functions Python
        # resets a Python handler to the default, and a Ctrl-C while it tears the modules
        # down would end the process by SIGINT; ignored, the outcome stands.
        atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    return code


def start_work() -> None:
    """Hand Ctrl-C back to Python's KeyboardInterrupt, which the commands turn into their own
    one line (what goes on, how to resume); call it inside the ``try`` that catches it.

    A no-op unless :func:`console_main` installed its handler (tests call :func:`main`).
    """
    if signal.getsignal(signal.SIGINT) is interrupted_before_work:
        # default_int_handler also lets asyncio.run cancel the main task on the first Ctrl-C.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted_before_work(signum: int, frame: types.FrameType | None) -> None:
    # os.write and os._exit: safe from a handler that may run between any two bytecodes of an
    # import, and nothing was started that needs cleaning up.
    os.write(2, b"interrupted\n")
    os._exit(_EXIT_INTERRUPTED)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, broken pipe, or mid-write
            continue
    os._exit(code)
