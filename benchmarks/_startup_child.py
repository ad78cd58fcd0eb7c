"""One ``nanobanana batch`` with time stamps at each step of its start, for
``benchmarks.startup`` (not part of the package; does I/O).

Run as ``python -m benchmarks._startup_child STAMPS.json batch …``: the command line itself,
with a few of its steps wrapped to note when they began and ended (monotonic seconds, which
every process on the host shares). The stamps are written once the first request is sent.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # before any import of ours: the interpreter's own start is before

import functools  # noqa: E402  after the first stamp on purpose
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

_stamps: dict[str, float] = {"interpreter_up": STARTED}
_out = Path(sys.argv[1])


def _note(name: str) -> None:
    _stamps.setdefault(name, time.monotonic())


def _write() -> None:
    _out.write_text(json.dumps(_stamps))


def _wrap_async(owner: Any, attr: str, name: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attr)

    @functools.wraps(inner)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        _note(f"{name}_start")
        try:
            return await inner(*args, **kwargs)
        finally:
            _note(f"{name}_end")

    setattr(owner, attr, wrapped)


def _wrap_sync(owner: Any, attr: str, name: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attr)

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _note(f"{name}_start")
        try:
            return inner(*args, **kwargs)
        finally:
            _note(f"{name}_end")

    setattr(owner, attr, wrapped)


def main() -> int:
    from nanobanana_async.cli import _main as cli

    _note("cli_imported")
    # Already loaded by the command line's modules: importing them here costs nothing.
    from nanobanana_async import _client, _journal, _transport
    from nanobanana_async._scheduler import _redis, _redis_store
    from nanobanana_async.cli import _batch

    _wrap_sync(cli, "_main", "command")
    _wrap_async(_batch, "_prepare_journal", "prepare_journal")
    _wrap_sync(_batch, "read_requests", "read_prompts")
    _wrap_async(_client.Client, "__aenter__", "client_start")
    _wrap_async(_client.Client, "submit", "first_submit")
    _wrap_async(_journal.Journal, "record_intent", "journal_intent")
    _wrap_async(_redis_store.RedisStore, "book", "redis_book")
    _wrap_async(_redis_store.RedisStore, "admit", "redis_admit")
    _wrap_async(_redis.RedisLedger, "acquire_request", "acquire_request")
    _wrap_async(_redis.RedisSlots, "admit", "slots_admit")
    send = _transport.AiohttpTransport.send

    async def first_send(self: Any, request: Any, *, timeout: float) -> Any:
        if "first_send" not in _stamps:
            _note("first_send")
            # CPU seconds the process used until now: what the start costs, whatever the load.
            _stamps["cpu_to_first_send_s"] = time.process_time()
            _write()
        return await send(self, request, timeout=timeout)

    _transport.AiohttpTransport.send = first_send  # type: ignore[method-assign]
    try:
        return cli.main(sys.argv[2:])
    finally:
        _note("exit")
        _write()


if __name__ == "__main__":
    sys.exit(main())
