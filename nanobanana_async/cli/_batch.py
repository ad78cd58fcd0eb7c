"""``nanobanana batch`` and ``nanobanana resume``: prompts through the journal, the manifest and
the downloads (does I/O through the public Client)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from rich.console import Console, RenderableType
from rich.live import Live

from .._client import Client
from .._config import Limits
from .._download import safe_name
from .._errors import (
    AuthenticationError,
    CoordinatorStateError,
    CoordinatorUnavailableError,
    InsufficientCreditsError,
    NanoBananaError,
    SubmitOutcomeUnknownError,
)
from .._journal import request_key
from .._models import ImageRequest, ImageResult
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    choose_provider,
    input_problems,
    naming,
    request_defaults,
)
from ._inputs import InputError, read_requests
from ._progress import BatchState, render_progress, render_summary


def _key(provider: str, line: int, request: ImageRequest) -> str:
    # The line and a digest of every request field: an edited prompt or a changed setting
    # (aspect ratio, model, ...) is a new task, never the old task's images.
    return f"line-{line}-{request_key(provider, request)[:16]}"


def manifest_row(
    line: int,
    request: ImageRequest,
    *,
    status: str,
    task_id: str | None,
    files: Sequence[str] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """One ``results.jsonl`` row; every row has the same fields whatever its status."""
    return {
        "line": line,
        "prompt": request.prompt,
        "model": request.model,
        "status": status,
        "task_id": task_id,
        "files": list(files),
        "error": error,
    }


async def _batch(args: argparse.Namespace, console: Console) -> int:
    provider = choose_provider(args.provider)
    limits = Limits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent)
    journal = args.journal or args.out / "journal.db"
    client = Client(provider, limits=limits, journal=journal, coordinator=args.coordinator)
    args.interrupted_journal, args.interrupted_provider = journal, provider
    try:
        requests = await anyio.to_thread.run_sync(
            read_requests, args.prompts, request_defaults(args), client.validate
        )
    except (InputError, OSError, UnicodeDecodeError) as exc:
        await client.aclose()
        raise InputError(input_problems(args.prompts, exc)) from None
    lines = {_key(provider, n, r): (n, r) for n, r in requests}
    try:
        await anyio.to_thread.run_sync(lambda: args.out.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        await client.aclose()
        raise InputError([f"--out {args.out}: {exc.strerror or exc}"]) from None
    try:
        earlier, known = await _prepare_journal(
            journal, provider, list(lines), args.resubmit_unknown
        )
    except BaseException:
        await client.aclose()
        raise
    state = BatchState(total=len(requests), started=time.monotonic(), request_limit=limits.requests)
    manifest = args.out / "results.jsonl"
    rows = Manifest(manifest)

    def refresh() -> RenderableType:
        stats = client.statistics()
        state.requests_in_window, state.retries = stats.requests_in_window, stats.retries
        return render_progress(state, time.monotonic())

    async def finish(line: int, request: ImageRequest, result: ImageResult) -> None:
        # Task ids are the provider's, untrusted: only a sanitized form reaches a file name.
        dest = args.out / f"{line:05d}-{safe_name(result.task_id)}.png"
        try:
            paths = await client.download(result, dest)
        except NanoBananaError as exc:
            # A full disk or an expired URL fails this row only; the batch goes on.
            state.saved(time.monotonic(), ok=False)
            rows.append(
                manifest_row(line, request, status="failed", task_id=result.task_id, error=str(exc))
            )
            return
        state.saved(time.monotonic(), ok=True)
        rows.append(
            manifest_row(
                line,
                request,
                status="succeeded",
                task_id=result.task_id,
                files=[p.name for p in paths],
            )
        )

    async def tick(live: Live) -> None:
        # Refreshed from the event loop: the client's statistics are not thread-safe.
        while True:
            live.update(refresh(), refresh=True)
            await asyncio.sleep(0.25)

    async with client:
        if args.min_balance is not None:
            with naming(client):
                balance = await client.balance()
            if balance.credits < args.min_balance:
                raise InputError(
                    [
                        f"{provider} balance is {balance.credits:g}, below --min-balance "
                        f"{args.min_balance:g}: not started"
                    ]
                )
        try:
            with Live(refresh(), console=console, auto_refresh=False) as live:
                ticker = asyncio.ensure_future(tick(live))
                try:
                    stop = await _run_batch(
                        client, lines, state, rows, finish, concurrent=args.concurrent
                    )
                finally:
                    ticker.cancel()
                live.update(refresh(), refresh=True)
        finally:
            if not console.is_terminal:
                # Off a terminal (a log, CI) rich leaves the table's last line open: the
                # summary or the "interrupted" line would run on after it.
                console.line()
    await anyio.to_thread.run_sync(rows.finish)
    console.print(render_summary(rows.rows))
    if known:
        # A changed setting (aspect ratio, model …) is a new key: this says it was.
        console.print(f"{len(lines) - known} new prompt(s); {known} from the journal {journal}")
    if earlier:
        console.print(f"resubmitted {earlier} prompt(s) of unknown outcome (--resubmit-unknown)")
    unknown = [r for r in rows.rows if r["status"] == "unknown"]
    if unknown:
        numbers = ", ".join(str(r["line"]) for r in unknown[:20])
        console.print(
            f"{len(unknown)} prompt(s) of unknown submit outcome (lines {numbers}): not "
            "resubmitted; --resubmit-unknown sends them again, at the risk of paying twice"
        )
    skipped = [r for r in rows.rows if r["status"] == "not_submitted"]
    if skipped:
        numbers = ", ".join(str(r["line"]) for r in skipped[:20])
        more = ", …" if len(skipped) > 20 else ""
        if isinstance(stop, AuthenticationError):
            why = "the provider refused the API key (lines {}); fix NANOBANANA_API_KEY"
        elif isinstance(stop, CoordinatorStateError):
            why = f"the coordinator (Redis) holds {stop.key or 'a key'} in a shape no client "
            why += "writes (lines {}); delete it"
        elif isinstance(stop, CoordinatorUnavailableError):
            why = "the coordinator (Redis) did not answer (lines {}); start it"
        else:
            why = "the account ran out of credits (lines {}); top up"
        console.print(
            f"{len(skipped)} prompt(s) not submitted: {why.format(numbers + more)} and run "
            "the same command again"
        )
    console.print(f"manifest: {manifest}")
    return EXIT_OK if state.failed == 0 and not skipped else EXIT_FAILED


class Manifest:
    """``results.jsonl``, written a row at a time (an interrupted run leaves a valid file),
    then rewritten in line order at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def append(self, row: dict[str, Any]) -> None:
        """Add one row (written and flushed at once: a few hundred bytes)."""
        self.rows.append(row)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def finish(self) -> None:
        """Rewrite the file in line order."""
        self.rows.sort(key=lambda row: row["line"])
        self.path.write_text("".join(json.dumps(row) + "\n" for row in self.rows))


async def _prepare_journal(
    journal: Path, provider: str, keys: list[str], resubmit: bool
) -> tuple[int, int]:
    """Refuse a ``local`` journal with unfinished tasks; with ``resubmit``, drop the unknown
    submits among ``keys``.

    Returns:
        how many were dropped, and how many of ``keys`` the journal then holds (their tasks
        are re-attached, not submitted again).
    """
    from .._journal import Journal

    if not await anyio.to_thread.run_sync(journal.is_file):
        return 0, 0
    book = Journal(journal, create=False)
    try:
        entries = await book.entries()
        if provider == "local":
            # The local simulator lives in its process: its unfinished tasks died with it, and
            # re-attaching would poll them (404) forever. Refused rather than silently redone.
            open_ = [e for e in entries if e.state not in ("succeeded", "failed")]
            if open_:
                raise InputError([_local_gone(journal, len(open_))])
        dropped = await book.drop_unknown(keys) if resubmit else 0
        known = {e.key for e in await book.entries()} if dropped else {e.key for e in entries}
        return dropped, len(known.intersection(keys))
    finally:
        await book.aclose()


def _local_gone(journal: Path, count: int) -> str:
    return (
        f"{journal} holds {count} unfinished task(s) of the local simulator, which ended with "
        "its process: they cannot be resumed; remove the journal (local costs nothing) or use "
        "another --out"
    )


# Submits in progress at once: enough to keep the ledger's pace, few enough that when the
# account runs out of credits only these few creates are sent and refused (none is paid).
# as_completed would pull up to --concurrent prompts at once and send every one of them.

SUBMIT_WINDOW: Final = 64


async def _run_batch(
    client: Client,
    lines: dict[str, tuple[int, ImageRequest]],
    state: BatchState,
    rows: Manifest,
    finish: Callable[[int, ImageRequest, ImageResult], Coroutine[Any, Any, None]],
    *,
    concurrent: int,
) -> NanoBananaError | None:
    """Run every prompt; returns the refusal that stopped the submits (no credits, a bad
    key, no coordinator), if one did."""
    stopped: list[NanoBananaError] = []
    gate = asyncio.Semaphore(min(SUBMIT_WINDOW, concurrent))

    def not_submitted(line: int, request: ImageRequest) -> None:
        state.not_submitted()
        rows.append(
            manifest_row(line, request, status="not_submitted", task_id=None, error=str(stopped[0]))
        )

    async def one(key: str, line: int, request: ImageRequest) -> None:
        async with gate:
            if stopped:
                not_submitted(line, request)
                return
            try:
                task = await client.submit(request, key=key)
            except (
                InsufficientCreditsError,
                AuthenticationError,
                CoordinatorUnavailableError,
            ) as exc:
                # Refused before acceptance: nothing created, a rerun submits it. Every further
                # create would be refused the same way, so none is sent.
                stopped.append(exc)
                not_submitted(line, request)
                return
            except NanoBananaError as exc:
                state.refused(time.monotonic())
                status = "unknown" if isinstance(exc, SubmitOutcomeUnknownError) else "failed"
                rows.append(
                    manifest_row(line, request, status=status, task_id=None, error=str(exc))
                )
                return
        state.accepted(line, time.monotonic())
        try:
            result = await task
        except NanoBananaError as exc:
            state.task_failed(line, time.monotonic())
            task_id = getattr(exc, "task_id", None) or task.id
            rows.append(
                manifest_row(line, request, status="failed", task_id=task_id, error=str(exc))
            )
            return
        state.finished(line, time.monotonic())
        await finish(line, request, result)

    async with asyncio.TaskGroup() as group:
        for key, (line, request) in lines.items():
            group.create_task(one(key, line, request))
    return stopped[0] if stopped else None


def _line_of(key: str) -> int:
    # Batch keys are "line-N-<digest>"; a key of another shape sorts first.
    parts = key.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "line" and parts[1].isdigit() else 0


async def _resume(args: argparse.Namespace) -> int:
    from .._journal import Journal

    journal = Journal(args.journal, create=False)
    try:
        provider, base_url = await journal.owner()
        entries = await journal.entries()
    finally:
        await journal.aclose()
    if provider is None:
        provider = choose_provider(args.provider)
    elif args.provider is not None and args.provider != provider:
        sys.stderr.write(f"error: {args.journal} is a {provider} journal, not {args.provider}\n")
        return EXIT_USAGE
    open_entries = [e for e in entries if e.state == "submitted"]
    unknown = [e for e in entries if e.state in ("intent", "unknown")]
    if provider == "local" and open_entries:
        raise InputError([_local_gone(args.journal, len(open_entries))])
    for entry in unknown:
        sys.stderr.write(
            f"line {_line_of(entry.key)}: submit outcome unknown, not resubmitted "
            "(batch --resubmit-unknown submits it again, at the risk of paying twice)\n"
        )
    if not open_entries:
        sys.stdout.write(f"nothing to resume: no task of {args.journal} is still running\n")
        return EXIT_OK if not unknown else EXIT_FAILED
    out = args.journal.parent
    rows: dict[int, dict[str, Any]] = {}
    manifest = out / "results.jsonl"
    if manifest.is_file():
        for text in (await anyio.to_thread.run_sync(manifest.read_text)).splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, RecursionError):
                row = json.loads(text)
                rows[int(row["line"])] = row
    failed = 0
    args.interrupted_journal, args.interrupted_provider = args.journal, provider
    async with Client(provider, base_url=base_url, journal=args.journal) as client:
        async for task in client.as_completed((e.key, e.request) for e in open_entries):
            assert task.key is not None
            line = _line_of(task.key)
            request = next(e.request for e in open_entries if e.key == task.key)
            try:
                result = await task
                dest = out / f"{line:05d}-{safe_name(result.task_id)}.png"
                paths = await client.download(result, dest)
            except NanoBananaError as exc:
                failed += 1
                task_id = getattr(exc, "task_id", None) or task.id
                rows[line] = manifest_row(
                    line, request, status="failed", task_id=task_id, error=str(exc)
                )
                sys.stdout.write(f"line {line}: failed ({exc})\n")
                continue
            rows[line] = manifest_row(
                line,
                request,
                status="succeeded",
                task_id=result.task_id,
                files=[p.name for p in paths],
            )
            sys.stdout.write(f"line {line}: {paths[0]}\n")
    text = "".join(json.dumps(rows[n]) + "\n" for n in sorted(rows))
    await anyio.to_thread.run_sync(manifest.write_text, text)
    sys.stdout.write(f"manifest: {manifest}\n")
    return EXIT_OK if not failed and not unknown else EXIT_FAILED
