"""``nanobanana batch`` and ``nanobanana resume``: prompts through the journal, the manifest and
the downloads (does I/O through the public Client)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs
from rich.console import Console, RenderableType
from rich.live import Live

from .._client import Client
from .._config import Limits
from .._download import safe_name
from .._errors import (
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    CoordinatorStateError,
    CoordinatorUnavailableError,
    InsufficientCreditsError,
    NanoBananaError,
    StorageError,
    SubmitOutcomeUnknownError,
    WrongAccountError,
)
from .._journal import JournalEntry, request_key
from .._models import ImageRequest, ImageResult
from .._router import Router
from .._routing import RouterStatistics
from .._task import Task
from ._accounts import Accounts
from ._common import (
    DEFAULTED_HINT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Connection,
    announce_local,
    choose_provider,
    connection,
    defaulted,
    input_problems,
    naming,
    request_defaults,
    status_command,
    status_words,
)
from ._inputs import InputError, read_requests
from ._progress import (
    PROGRESS_INTERVAL,
    AccountProgress,
    BatchState,
    progress_record,
    render_plain,
    render_progress,
    render_summary,
)


def _key(provider: str, line: int, request: ImageRequest) -> str:
    # The line and a digest of every request field: an edited prompt or a changed setting
    # (aspect ratio, model, ...) is a new task, never the old task's images.
    return f"line-{line}-{request_key(provider, request)[:16]}"


def image_base(out: Path, line: int, task_id: str) -> Path:
    """Where a line's image goes, before the suffix its bytes' type gives it (``.jpg`` …)."""
    # Task ids are the provider's, untrusted: only a sanitized form reaches a file name, and
    # without dots, so no part of an id reads as the file's type.
    return out / f"{line:05d}-{safe_name(task_id).replace('.', '_')}"


def manifest_row(
    line: int,
    request: ImageRequest | None,
    *,
    model: str | None = None,
    status: str,
    task_id: str | None,
    files: Sequence[str] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """One ``results.jsonl`` row; every row has the same fields whatever its status (a
    request that no longer reads from the journal: no prompt, the task's ``model``)."""
    return {
        "line": line,
        "prompt": request.prompt if request is not None else None,
        "model": request.model if request is not None else model,
        "status": status,
        "task_id": task_id,
        "files": list(files),
        "error": error,
    }


def account_journal(journal: Path, name: str) -> Path:
    """The journal of one account of a batch over several: ``journal-crun.db`` beside
    ``journal.db``. One per account: a journal belongs to one provider and URL."""
    return journal.with_name(f"{journal.stem}-{name}{journal.suffix}")


@contextlib.asynccontextmanager
async def open_router(
    routed: Accounts,
    *,
    journals: Path | None,
    limits: Limits | None = None,
    coordinator: str | None = None,
) -> AsyncIterator[tuple[Router, list[Client]]]:
    """A started Router over ``routed``'s accounts (each with its journal beside
    ``journals``, when given), closed with its clients on the way out."""
    router, clients = build_router(
        routed, journals=journals, limits=limits, coordinator=coordinator
    )
    async with router:
        yield router, clients


def build_router(
    routed: Accounts,
    *,
    journals: Path | None,
    limits: Limits | None = None,
    coordinator: str | None = None,
) -> tuple[Router, list[Client]]:
    """A Router (not started) that owns one Client per account."""
    clients: list[Client] = []
    for account in routed.accounts:
        journal = account_journal(journals, account.name) if journals is not None else None
        clients.append(
            account.client(limits=limits or Limits(), journal=journal, coordinator=coordinator)
        )
    weights = [a.weight for a in routed.accounts]
    router = Router(clients, strategy=routed.strategy, weights=weights, owns_clients=True)
    return router, clients


async def _batch(args: argparse.Namespace, console: Console) -> int:
    routed: Accounts | None = args.routed
    limits = Limits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent)
    journal = args.journal or args.out / "journal.db"
    client: Client | Router
    if routed is None:
        options = connection(args)
        provider = choose_provider(args.provider, key_env=args.api_key_env, announce=False)
        client = Client(
            provider,
            limits=limits,
            journal=journal,
            coordinator=args.coordinator,
            **options,
        )
        clients = [client]
        journals = [journal]
    else:
        # Keys shared by every account: a journaled prompt is found whichever account holds it.
        provider = "accounts"
        client, clients = build_router(
            routed, journals=journal, limits=limits, coordinator=args.coordinator
        )
        journals = [account_journal(journal, a.name) for a in routed.accounts]
        limits = client.statistics().limits
    stdin: str | None = args.stdin  # read by the command line before the work began
    source = Path("<stdin>") if stdin is not None else args.prompts
    kind = f".{args.input_format}" if args.input_format else ".txt" if stdin is not None else None
    try:
        requests = await anyio.to_thread.run_sync(
            functools.partial(
                read_requests,
                source,
                request_defaults(args),
                client.validate,
                kind=kind,
                stream=io.StringIO(stdin) if stdin is not None else None,
            )
        )
    except (InputError, OSError, UnicodeDecodeError) as exc:
        await client.aclose()
        raise InputError(input_problems(source, exc)) from None
    # From here the journal may hold this run's tasks: an interruption says how to resume.
    args.interrupted_journal, args.interrupted_provider = journal, provider
    if routed is not None and all(a.provider == "local" for a in routed.accounts):
        args.interrupted_provider = "local"
    lines: dict[str, tuple[int, ImageRequest]] = {}
    for n, r in requests:
        key = base = _key(provider, n, r)
        # The same request twice on one line (a .json array on one line) is two prompts.
        for repeat in itertools.count(2):
            if key not in lines:
                break
            key = f"{base}-{repeat}"
        lines[key] = (n, r)
    try:
        await anyio.to_thread.run_sync(lambda: args.out.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        await client.aclose()
        raise InputError([f"--out {args.out}: {exc.strerror or exc}"]) from None
    try:
        await _refuse_other_journals(journal, journals)
        earlier = known = 0
        for n, (path, each) in enumerate(zip(journals, clients, strict=True)):
            named = routed.accounts[n] if routed is not None else None
            dropped, held = await _prepare_journal(
                path,
                each.provider,
                list(lines),
                args.resubmit_unknown,
                out=args.out,
                key_env=named.key_env if named is not None else None,
            )
            earlier, known = earlier + dropped, known + held
    except BaseException:
        await client.aclose()
        raise
    if routed is None:  # the rows, --out and the journal are usable: the batch goes ahead
        announce_local(args.provider, key_env=args.api_key_env)
    unjournaled: list[str] = []
    state = BatchState(total=len(requests), started=time.monotonic(), request_limit=limits.requests)
    manifest = args.out / "results.jsonl"
    rows = Manifest(manifest)

    mode = progress_mode(args)

    def count() -> None:
        stats = client.statistics()
        state.requests_in_window, state.retries = stats.requests_in_window, stats.retries
        if isinstance(stats, RouterStatistics) and routed is not None:
            state.accounts = [
                AccountProgress(
                    name=account.name,
                    accepted=each.accepted,
                    running=each.client.in_flight,
                    circuit=each.circuit,
                    set_aside=each.set_aside is not None,
                )
                for account, each in zip(routed.accounts, stats.accounts, strict=True)
            ]

    def refresh() -> RenderableType:
        count()
        return render_progress(state, time.monotonic())

    def emit() -> None:
        # One line to stdout, flushed at once: a log or CI shows it as it comes.
        count()
        now = time.monotonic()
        if mode == "json":
            line = json.dumps(progress_record(state, now))
        else:
            line = render_plain(state, now)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def finish(line: int, request: ImageRequest, result: ImageResult) -> None:
        try:
            paths = await client.download(result, image_base(args.out, line, result.task_id))
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
        for each in clients if args.min_balance is not None else ():
            with naming(each):
                balance = await each.balance()
            if balance.credits < args.min_balance:
                raise InputError(
                    [
                        f"{each.provider} balance is {balance.credits:g}, below --min-balance "
                        f"{args.min_balance:g}: not started"
                    ]
                )

        def run(say: Callable[[str], None]) -> Coroutine[Any, Any, NanoBananaError | None]:
            return _run_batch(
                client,
                lines,
                state,
                rows,
                finish,
                concurrent=args.concurrent,
                note=unjournaled.append,
                say=say,
                fetch=functools.partial(status_command, args, client),
            )

        if mode != "table":
            ticker = asyncio.ensure_future(every(PROGRESS_INTERVAL, emit)) if mode else None
            try:
                stop = await run(lambda text: console.print(text, highlight=False, soft_wrap=True))
            finally:
                if ticker is not None:
                    ticker.cancel()
            if mode:
                emit()  # the final counts
        else:
            try:
                with Live(refresh(), console=console, auto_refresh=False) as live:
                    ticker = asyncio.ensure_future(tick(live))
                    try:
                        stop = await run(
                            lambda text: live.console.print(text, highlight=False, soft_wrap=True)
                        )
                    finally:
                        ticker.cancel()
                    live.update(refresh(), refresh=True)
            finally:
                if not console.is_terminal:
                    # Off a terminal (a log, CI) rich leaves the table's last line open: the
                    # summary or the "interrupted" line would run on after it.
                    console.line()
    try:
        await anyio.to_thread.run_sync(rows.finish)
    except OSError as exc:
        console.print(f"could not write {manifest} ({exc.strerror or exc}): results below only")
    if not args.quiet:
        console.print(render_summary(rows.rows))
    elif failed := [r for r in rows.rows if r["status"] == "failed"]:
        # The summary is the only other place failures show: without it an exit 1 said nothing.
        numbers = ", ".join(str(r["line"]) for r in failed[:20])
        more = ", …" if len(failed) > 20 else ""
        console.print(
            f"{len(failed)} prompt(s) failed (lines {numbers}{more}): {failed[0]['error']}; "
            f"see {manifest}",
            highlight=False,
            soft_wrap=True,
        )
    for text in unjournaled:
        # Again after the table: these ids are in no file if the disk stays full.
        console.print(text, highlight=False, soft_wrap=True)  # an id must stay whole
    if known and not args.quiet:
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
            key = args.api_key_env or "NANOBANANA_API_KEY"
            if routed is None and defaulted(args.provider, key_env=args.api_key_env):
                key += f" ({DEFAULTED_HINT})"
            why = (
                "the provider refused the API key (lines {}); fix " + key
                if routed is None
                else "every account's key or credits were refused (lines {}); fix them"
            )
        elif isinstance(stop, CoordinatorStateError):
            why = f"the coordinator (Redis) holds {stop.key or 'a key'} in a shape no client "
            why += "writes (lines {}); delete it"
        elif isinstance(stop, CoordinatorUnavailableError):
            why = "the coordinator (Redis) did not answer (lines {}); start it"
        elif isinstance(stop, StorageError):
            why = f"the journal {journal} could not be written (lines {{}}); free some space"
        else:
            why = (
                "the account ran out of credits (lines {}); top up"
                if routed is None
                else "every account's key or credits were refused (lines {}); fix them"
            )
        console.print(
            f"{len(skipped)} prompt(s) not submitted: {why.format(numbers + more)} and run "
            "the same command again"
        )
    if not args.quiet:  # errors only: the manifest is where --out says
        console.print(f"manifest: {manifest}")
    return EXIT_OK if state.failed == 0 and not skipped else EXIT_FAILED


def progress_mode(args: argparse.Namespace) -> str:
    """How the batch shows progress: ``table`` (a live table on the console), ``plain`` or
    ``json`` (a line every ``PROGRESS_INTERVAL`` seconds on stdout), or ``""`` (none).

    ``--progress auto`` (the default) is the table when stdout is a terminal, else plain
    lines: a table redrawn in place shows nothing in a file or a CI log until the end.
    """
    if args.quiet or args.progress == "none":
        return ""
    if args.progress == "auto":
        return "table" if sys.stdout.isatty() else "plain"
    return str(args.progress)


async def every(interval: float, emit: Callable[[], None]) -> None:
    """Call ``emit`` every ``interval`` seconds until cancelled."""
    loop = asyncio.get_running_loop()
    due = loop.time() + interval
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        emit()
        # The next line is due an interval after this one was, not after it was written:
        # a late loop does not push every later line later.
        due = max(due + interval, loop.time() + interval / 2)


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
        # A full disk loses no row: it is kept here, and finish() writes (or says) it all.
        with contextlib.suppress(OSError), self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def finish(self) -> None:
        """Rewrite the file in line order."""
        self.rows.sort(key=lambda row: row["line"])
        self.path.write_text("".join(json.dumps(row) + "\n" for row in self.rows))


async def _prepare_journal(
    journal: Path,
    provider: str,
    keys: list[str],
    resubmit: bool,
    *,
    out: Path,
    key_env: str | None = None,
) -> tuple[int, int]:
    """Refuse a ``local`` journal with unfinished tasks; with ``resubmit``, drop the unknown
    submits among ``keys``; record ``out`` (``resume`` writes there) and, for an account of
    several, ``key_env``: the name of the variable holding its key (never the key), which
    ``resume`` reads it from.

    Returns:
        how many were dropped, and how many of ``keys`` the journal then holds (their tasks
        are re-attached, not submitted again).
    """
    from .._journal import Journal

    book = Journal(journal)
    try:
        try:
            await book.note("out", str(await anyio.to_thread.run_sync(out.absolute)))
            if key_env is not None:
                await book.note("api_key_env", key_env)
        except ConfigurationError:
            raise
        except Exception:  # noqa: S110  only resume's default folder is lost
            # A journal that cannot be written (a full disk) stops the batch at its first
            # submit, before anything is sent, with the summary saying so.
            pass
        # A damaged row is skipped here: a submit of its key fails naming it (never resent).
        entries = await book.entries(unreadable=[])
        if not entries:
            return 0, 0
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


async def _refuse_other_journals(journal: Path, used: list[Path]) -> None:
    """Refuse a batch whose folder has a journal of accounts this run does not use (a plain
    ``journal.db`` beside a run over several accounts, or ``journal-crun.db`` of an account
    dropped since): the prompts it holds would be paid for again elsewhere.

    Raises:
        InputError: naming each such journal and how many tasks it holds.
    """
    from .._journal import Journal

    candidates = [journal, *sorted(journal.parent.glob(f"{journal.stem}-*{journal.suffix}"))]
    problems: list[str] = []
    for path in candidates:
        if path in used or not path.is_file():
            continue
        book = Journal(path, create=False)
        try:
            held = len(await book.entries())
        finally:
            await book.aclose()
        if held:
            problems.append(
                f"{path} holds {held} task(s) of an account this run does not use: run with "
                "that account again (or the same --provider/--accounts), or use another --out"
            )
    if problems:
        raise InputError(problems)


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
    client: Client | Router,
    lines: dict[str, tuple[int, ImageRequest]],
    state: BatchState,
    rows: Manifest,
    finish: Callable[[int, ImageRequest, ImageResult], Coroutine[Any, Any, None]],
    *,
    concurrent: int,
    note: Callable[[str], None] = lambda text: None,
    say: Callable[[str], None] = lambda text: None,
    fetch: Callable[[Task, str], str] | None = None,
) -> NanoBananaError | None:
    """Run every prompt; returns the refusal that stopped the submits (no credits, a bad
    key, no coordinator, a journal that cannot be written), if one did.

    ``say`` prints a line at once and ``note`` keeps it for the summary: the id of a task
    accepted but not journaled, which no file holds; ``fetch(task, model)`` is the
    ``nanobanana status`` command that fetches such a task (default: without the command's
    ``--api-key-env`` and ``--base-url``).
    """
    if fetch is None:
        fetch = functools.partial(status_command, argparse.Namespace(), client)
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
            except StorageError as exc:
                if exc.task is None:
                    # The intent could not be written, so nothing was sent; every further
                    # submit would fail the same way (a full disk).
                    stopped.append(exc)
                    not_submitted(line, request)
                    return
                # Accepted (paid) but not journaled: tracked in memory, its id said now and
                # in the summary. No further prompt is sent: its task would be in no file.
                task = exc.task
                if not stopped:
                    stopped.append(
                        StorageError(
                            f"the journal {exc.path} could not record a task: not submitted",
                            task_id=None,
                            path=exc.path,
                        )
                    )
                text = (
                    f"line {line}: task {task.id} was accepted but is not in the journal "
                    f"({exc.path}): if this run stops, '{fetch(task, request.model)}' fetches it"
                )
                say(text)
                note(text)
            except NanoBananaError as exc:
                state.refused(time.monotonic())
                status = "unknown" if isinstance(exc, SubmitOutcomeUnknownError) else "failed"
                # WrongAccountError: another account's task, whose id must not be lost.
                task_id = getattr(exc, "task_id", None)
                rows.append(
                    manifest_row(line, request, status=status, task_id=task_id, error=str(exc))
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


def account_journals(journal: Path) -> list[Path]:
    """The journals ``resume --journal PATH`` reads: PATH itself, or, when a batch over
    several accounts wrote one per account beside it (``journal-apixo.db`` …), those."""
    if journal.exists():
        return [journal]
    found = sorted(journal.parent.glob(f"{journal.stem}-*{journal.suffix}"))
    return found or [journal]


#: An image host's answers to a URL the provider gave that has expired (or was withdrawn):
#: fetching it again will not help.
_EXPIRED: Final = (403, 404, 410)


@attrs.frozen
class _Held:
    """One journal ``resume`` reads: its account and its rows."""

    path: Path
    provider: str
    base_url: str | None
    entries: list[JournalEntry]
    out: str | None
    key_env: str | None


async def _resume(args: argparse.Namespace) -> int:
    from .._journal import DamagedRowError, Journal

    paths = account_journals(args.journal)
    several = len(paths) > 1 or paths[0] != args.journal
    found: list[_Held] = []
    unreadable: list[DamagedRowError] = []
    for path in paths:
        journal = Journal(path, create=False)
        damaged_here: list[DamagedRowError] = []
        try:
            provider, base_url = await journal.owner()
            # A damaged row is said and skipped: it must not keep every other task from
            # resuming.
            entries = await journal.entries(unreadable=damaged_here)
            noted = await journal.noted("out")
            key_env = await journal.noted("api_key_env")
        finally:
            await journal.aclose()
        for damaged in damaged_here:
            sys.stderr.write(
                f"line {_line_of(damaged.key)}: its row in {path} cannot be read "
                f"({damaged.why}): not resumed\n"
            )
        unreadable += damaged_here
        if provider is None:
            if several:
                continue  # created, never used: that account took no prompt
            provider = choose_provider(args.provider, key_env=args.api_key_env)
        elif args.provider is not None and args.provider != provider and not several:
            sys.stderr.write(f"error: {path} is a {provider} journal, not {args.provider}\n")
            return EXIT_USAGE
        found.append(_Held(path, provider, base_url, entries, noted, key_env))
    if several and args.provider is not None:
        # One account of several: the others' tasks are left for a later resume.
        found = [held for held in found if held.provider == args.provider]
    # The batch's --out, recorded in the journal (older journals: the journal's folder).
    recorded_out = next((Path(held.out) for held in found if held.out), None)
    unknown = [e for held in found for e in held.entries if e.state in ("intent", "unknown")]
    running = 0
    for held in found:
        count = sum(1 for e in held.entries if e.state == "submitted")
        running += count
        if held.provider == "local" and count:
            raise InputError([_local_gone(held.path, count)])
    for entry in unknown:
        sys.stderr.write(
            f"line {_line_of(entry.key)}: submit outcome unknown, not resubmitted "
            "(batch --resubmit-unknown submits it again, at the risk of paying twice)\n"
        )
    for held in found:
        for entry in held.entries:
            if entry.state == "submitted" and entry.request is None:
                sys.stderr.write(
                    f"line {_line_of(entry.key)}: its recorded request no longer reads "
                    f"({entry.request_error}): resumed by its task id {entry.task_id}\n"
                )
    out = args.out if args.out is not None else recorded_out or args.journal.parent
    rows: dict[int, dict[str, Any]] = {}
    manifest = out / "results.jsonl"
    if manifest.is_file():
        for text in (await anyio.to_thread.run_sync(manifest.read_text)).splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, RecursionError):
                row = json.loads(text)
                rows[int(row["line"])] = row
    # A batch killed after the journal recorded a task's end but before its image and row
    # were written: that paid task is delivered from the journal (never submitted again).
    ended = {
        held.path: await anyio.to_thread.run_sync(_undelivered, held, rows, out) for held in found
    }
    if not running and not any(ended.values()):
        sys.stdout.write(f"nothing to resume: no task of {args.journal} is still running\n")
        return EXIT_OK if not unknown and not unreadable else EXIT_FAILED
    try:
        await anyio.to_thread.run_sync(lambda: out.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        raise InputError([f"--out {out}: {exc.strerror or exc}"]) from None
    failed = 0
    args.interrupted_journal = args.journal
    args.interrupted_provider = found[0].provider if len(found) == 1 else "accounts"
    for held in found:
        open_entries = [e for e in held.entries if e.state == "submitted"] + ended[held.path]
        if not open_entries:
            continue
        # The journal's own URL unless --base-url says otherwise (the journal then refuses a
        # URL that is not its own: its task ids mean nothing elsewhere).
        options = connection(args)
        if held.key_env is not None and "api_key" not in options:
            # An account of several: its key from the variable its batch read it from (the
            # name is recorded, never the key).
            key = os.environ.get(held.key_env)
            if not key:
                raise InputError([f"{held.path}: its key variable {held.key_env} is not set"])
            options["api_key"] = key
        options.setdefault("base_url", held.base_url)
        key_env = args.api_key_env or held.key_env
        failed += await _resume_journal(held, open_entries, options, rows, out, key_env=key_env)
    text = "".join(json.dumps(rows[n]) + "\n" for n in sorted(rows))
    await anyio.to_thread.run_sync(manifest.write_text, text)
    sys.stdout.write(f"manifest: {manifest}\n")
    return EXIT_OK if not failed and not unknown and not unreadable else EXIT_FAILED


def _undelivered(held: _Held, rows: dict[int, dict[str, Any]], out: Path) -> list[JournalEntry]:
    """The batch lines of ``held`` that ended in the journal but were not delivered: a
    success without a succeeded manifest row whose files are all in ``out``, a failure
    without any row."""
    if held.provider == "local":
        return []  # its images lived in the process that ran it
    found = []
    for entry in held.entries:
        line = _line_of(entry.key)
        row = rows.get(line)
        if line == 0 or entry.state not in ("succeeded", "failed"):
            continue
        if entry.state == "failed":
            if row is None:
                found.append(entry)
            continue
        files = row.get("files") if row is not None else None
        delivered = (
            row is not None
            and row.get("status") == "succeeded"
            and row.get("task_id") == entry.task_id
            and isinstance(files, list)
            and bool(files)
            and all(isinstance(f, str) and (out / f).is_file() for f in files)
        )
        if not delivered:
            found.append(entry)
    return found


async def _resume_journal(
    held: _Held,
    open_entries: list[JournalEntry],
    options: Connection,
    rows: dict[int, dict[str, Any]],
    out: Path,
    *,
    key_env: str | None = None,
) -> int:
    """Wait for one journal's running tasks (and take its ended, undelivered ones as
    recorded) and download them; returns how many failed. ``key_env`` names the variable the
    key came from, for the commands it prints (None: ``NANOBANANA_API_KEY``)."""
    failed = 0
    url = options.get("base_url")
    by_key = {e.key: e for e in open_entries}

    async def settle(client: Client, task: Task) -> None:
        nonlocal failed
        assert task.key is not None
        line, entry = _line_of(task.key), by_key[task.key]
        request, model = entry.request, entry.model
        try:
            result = await task
            try:
                paths = await client.download(result, image_base(out, line, result.task_id))
            except BadResponseError as exc:
                if exc.status not in _EXPIRED:
                    raise
                # The journal's URLs of a task that ended long ago: the task is paid and
                # done, only its link is gone. Say so, and how to see what the provider
                # gives now.
                failed += 1
                rows[line] = manifest_row(
                    line,
                    request,
                    model=model,
                    status="failed",
                    task_id=result.task_id,
                    error=f"the task succeeded, but its image URL has expired (HTTP {exc.status})",
                )
                fetch = status_words(
                    result.task_id,
                    held.provider,
                    model or result.model,
                    key_env=key_env,
                    base_url=url,
                )
                sys.stdout.write(
                    f"line {line}: {held.provider} task {result.task_id} succeeded, but its "
                    f"image URL has expired (HTTP {exc.status}; result URLs last about a day on "
                    f"some providers): '{fetch}' shows the URLs it gives now; generating the "
                    "prompt again pays again\n"
                )
                return
        except WrongAccountError as exc:
            # Another key's task: not checked with this key; its manifest row stays.
            failed += 1
            sys.stdout.write(f"line {line}: not resumed ({exc})\n")
            return
        except NanoBananaError as exc:
            failed += 1
            task_id = getattr(exc, "task_id", None) or task.id
            rows[line] = manifest_row(
                line, request, model=model, status="failed", task_id=task_id, error=str(exc)
            )
            sys.stdout.write(f"line {line}: failed ({exc})\n")
            return
        rows[line] = manifest_row(
            line,
            request,
            model=model,
            status="succeeded",
            task_id=result.task_id,
            files=[p.name for p in paths],
        )
        sys.stdout.write(f"line {line}: {paths[0]}\n")

    async with Client(held.provider, journal=held.path, **options) as client:
        # Rows whose request no longer reads are rejoined by key: never sent again.
        rejoined: list[Task] = []
        for entry in open_entries:
            if entry.request is None:
                try:
                    rejoined.append(await client._rejoin(entry.key))
                except NanoBananaError as exc:
                    failed += 1
                    sys.stdout.write(f"line {_line_of(entry.key)}: not resumed ({exc})\n")
        readable = ((e.key, e.request) for e in open_entries if e.request is not None)
        async for task in client.as_completed(readable):
            await settle(client, task)
        for task in rejoined:
            await settle(client, task)
    return failed
