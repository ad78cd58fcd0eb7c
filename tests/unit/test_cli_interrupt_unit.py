"""Ctrl-C while a command runs: the first cancels it, and nothing interrupts its close."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from nanobanana_async.cli._main import _run


def test_a_second_ctrl_c_does_not_break_into_the_close() -> None:
    """The first Ctrl-C cancels the command; one pressed again while it closes (a journal
    written, sessions closed) is ignored, so the close finishes and the command reports the
    interruption once. asyncio.run would raise it in the middle of the close."""
    closed: list[bool] = []

    async def command() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            os.kill(os.getpid(), signal.SIGINT)  # pressed again while closing
            await asyncio.sleep(0.05)
            closed.append(True)
            raise
        return 0

    first = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    first.start()
    with pytest.raises(KeyboardInterrupt):
        _run(command())
    first.join()
    assert closed == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_command_that_ends_returns_its_code() -> None:
    """No Ctrl-C: the command's own exit code, and Ctrl-C handling as it was before."""

    async def command() -> int:
        await asyncio.sleep(0)
        return 1

    assert _run(command()) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_after_the_command_ended_changes_nothing() -> None:
    """A press while the loop closes down after the command decided its outcome (a task it
    left still finishing) is counted, not raised: the outcome stands."""
    left: list[asyncio.Task[None]] = []

    async def lingering() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            os.kill(os.getpid(), signal.SIGINT)  # pressed while the loop closes
            await asyncio.sleep(0.05)
            raise

    async def command() -> int:
        left.append(asyncio.get_running_loop().create_task(lingering()))
        await asyncio.sleep(0)
        return 0

    assert _run(command()) == 0


def test_a_ctrl_c_the_caller_ignores_stays_ignored() -> None:
    """A program that runs the command line with Ctrl-C ignored keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        async def command() -> int:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            return 0

        assert _run(command()) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
