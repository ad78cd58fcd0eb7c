"""``nanobanana`` / ``python -m nanobanana_async``: the command line (argument parsing and
display; all work goes through the public Client).

Exit codes: 0 all done, 1 some failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio
import anyio.to_thread
import attrs
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from .._client import Client
from .._config import Limits
from .._download import safe_name
from .._errors import (
    APIError,
    AuthenticationError,
    CoordinatorUnavailableError,
    InsufficientCreditsError,
    NanoBananaError,
    NotSupportedError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from .._journal import request_key
from .._models import ImageRequest, ImageResult
from ..providers import PROVIDERS
from ._inputs import InputError, lines_text, read_requests

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0-65535): {text}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nanobanana", description="Generate Nano Banana images from the command line."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on errors (for bug reports)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--provider",
            choices=PROVIDERS,
            default=None,
            help="default: $NANOBANANA_PROVIDER, else apixo if NANOBANANA_API_KEY is set, else local",  # noqa: E501
        )
        p.add_argument("--model", default=None, help="default nano-banana-2")
        p.add_argument("--resolution", default=None, help="e.g. 1K, 2K, 4K (provider's default)")
        p.add_argument("--aspect-ratio", default=None, help="e.g. 1:1, 16:9 (provider's default)")
        p.add_argument(
            "--num-images",
            type=_positive(int),
            default=None,
            help="images per task where the model makes several (nanobananaapi nano-banana: 1-4)",
        )
        p.add_argument(
            "--watermark", default=None, help="watermark text (nanobananaapi nano-banana)"
        )
        p.add_argument(
            "--callback-url", default=None, help="URL the provider POSTs to when a task ends"
        )
        p.add_argument(
            "--option",
            type=_option,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="an option only this provider has, e.g. --option provider=official on apixo",
        )

    generate = commands.add_parser("generate", help="generate one image and save it")
    generate.add_argument("prompt", help="what to draw")
    request_options(generate)
    generate.add_argument(
        "--image-url",
        action="append",
        default=[],
        dest="image_urls",
        help="an input image URL (repeat for several)",
    )
    generate.add_argument(
        "--output", "-o", default="image.png", type=Path, help="file to write (image.png)"
    )

    batch = commands.add_parser("batch", help="generate every prompt of a file")
    batch.add_argument(
        "prompts", type=Path, help=".txt (a prompt a line), .json (an array), .jsonl or .csv"
    )
    batch.add_argument("--out", type=Path, required=True, help="folder for images and manifest")
    batch.add_argument("--journal", type=Path, default=None, help="default OUT/journal.db")
    batch.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="submit again the prompts whose earlier submit has an unknown outcome "
        "(they may be paid twice)",
    )
    request_options(batch)
    batch.add_argument(
        "--min-balance",
        type=float,
        default=None,
        metavar="N",
        help="refuse to start when the account's balance is below N (crun, apixo, local)",
    )
    batch.add_argument(
        "--requests", type=_positive(int), default=10_000, help="requests per window (10000)"
    )
    batch.add_argument("--per", type=_positive(float), default=60.0, help="window in seconds (60)")
    batch.add_argument(
        "--concurrent", type=_positive(int), default=1_000, help="tasks at once (1000)"
    )
    batch.add_argument(
        "--coordinator",
        default=None,
        metavar="URL",
        help="redis://host:6379/0 shared by every worker on the key "
        "(default NANOBANANA_COORDINATOR)",
    )

    balance = commands.add_parser("balance", help="print the account's balance")
    balance.add_argument("--provider", choices=PROVIDERS, default=None, help="default as batch")

    status = commands.add_parser("status", help="check one task by id")
    status.add_argument("task_id", help="the provider's task id")
    status.add_argument(
        "--model", default=None, help="the task's model (needed for apixo; default nano-banana-2)"
    )
    status.add_argument("--provider", choices=PROVIDERS, default=None, help="default as batch")
    status.add_argument(
        "--wait", type=_positive(float), default=30.0, help="seconds to wait for the end"
    )

    resume = commands.add_parser("resume", help="wait for the unfinished tasks of a journal")
    resume.add_argument(
        "--journal", type=Path, required=True, help="the batch's journal (OUT/journal.db)"
    )
    resume.add_argument(
        "--provider", choices=PROVIDERS, default=None, help="default: the journal's provider"
    )

    simulate = commands.add_parser("simulate", help="serve a provider simulator on 127.0.0.1")
    simulate.add_argument(
        "--provider",
        default="apixo",
        choices=[p for p in PROVIDERS if p != "local"],
        help="wire protocol to serve (apixo)",
    )
    simulate.add_argument("--port", type=_port, default=8080, help="port on 127.0.0.1 (8080)")
    simulate.add_argument("--api-key", default=None, help="key to accept (random if unset)")
    simulate.add_argument(
        "--median", type=_positive(float), default=2.0, help="median task seconds (2)"
    )
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanobanana-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _provider(chosen: str | None) -> str:
    if chosen is not None:
        return chosen
    named = os.environ.get("NANOBANANA_PROVIDER")
    if named:
        if named not in PROVIDERS:
            raise InputError(
                [f"NANOBANANA_PROVIDER={named!r} is not one of {', '.join(PROVIDERS)}"]
            )
        return named
    if os.environ.get("NANOBANANA_API_KEY"):
        return "apixo"
    sys.stderr.write("no NANOBANANA_API_KEY set: using the built-in local simulator\n")
    return "local"


def _defaults(args: argparse.Namespace) -> dict[str, object]:
    fields = {
        "model": args.model,
        "resolution": args.resolution,
        "aspect_ratio": args.aspect_ratio,
        "num_images": args.num_images,
        "watermark": args.watermark,
        "callback_url": args.callback_url,
        "provider_options": dict(args.option) or None,
    }
    return {name: value for name, value in fields.items() if value is not None}


async def _generate(args: argparse.Namespace) -> int:
    provider = _provider(args.provider)
    request = ImageRequest(
        prompt=args.prompt,
        model=args.model or "nano-banana-2",
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        image_urls=args.image_urls,
        num_images=args.num_images,
        watermark=args.watermark,
        callback_url=args.callback_url,
        provider_options=dict(args.option),
    )
    async with Client(provider) as client:
        with _naming(client):
            task = await client.submit(request)
        if provider != "local":  # local's tasks end with this process
            # Paid from here on: a Ctrl-C must leave the way back to it.
            args.interrupted_task = (
                f": {provider} task {task.id} goes on; 'nanobanana status {task.id} "
                f"--provider {provider} --model {request.model}' fetches it"
            )
        result = await task
        paths = await client.download(result, args.output)
    size = sum(p.stat().st_size for p in paths)
    sys.stdout.write(f"{paths[0]} ({size} bytes) from {provider} task {result.task_id}\n")
    return EXIT_OK


@attrs.define
class BatchState:
    """What the progress display shows, counted from the batch's own events (pure: every
    time is passed in).

    Each prompt moves forward only: waiting → running (accepted) → downloading (finished)
    → done, or → failed / not submitted from any step; so ``submitted``, ``done`` and
    ``failed`` never go backwards.
    """

    total: int
    started: float
    submitted: int = 0
    running: int = 0
    downloading: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    requests_in_window: int = 0
    request_limit: int = 0
    retries: int = 0
    _accepted_at: dict[int, float] = attrs.field(factory=dict)
    _last_accept: float = attrs.field(default=-math.inf)
    _ended: collections.deque[float] = attrs.field(factory=lambda: collections.deque(maxlen=500))
    _durations: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=200)
    )

    def accepted(self, line: int, now: float) -> None:
        """The provider accepted the prompt's task (or the journal re-attached it)."""
        self.submitted += 1
        self.running += 1
        self._accepted_at[line] = now
        self._last_accept = now

    def finished(self, line: int, now: float) -> None:
        """Its task succeeded; its images are downloading."""
        self.running -= 1
        self.downloading += 1
        accepted = self._accepted_at.pop(line, None)
        if accepted is not None:
            self._durations.append(now - accepted)

    def saved(self, now: float, *, ok: bool) -> None:
        """Its download ended: done, or failed (a full disk, an expired URL)."""
        self.downloading -= 1
        self._end(now, ok=ok)

    def task_failed(self, line: int, now: float) -> None:
        """Its task failed or timed out after it was accepted."""
        self.running -= 1
        self._accepted_at.pop(line, None)
        self._end(now, ok=False)

    def refused(self, now: float) -> None:
        """Its submit failed (refused, or of unknown outcome)."""
        self._end(now, ok=False)

    def not_submitted(self) -> None:
        """Not sent: the account ran out of credits."""
        self.skipped += 1

    def _end(self, now: float, *, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self._ended.append(now)

    def eta(self, now: float) -> str:
        """Time left: the prompts left at the rate they recently ended, and never less than
        a typical task's duration after the last accept (the tail still running).

        ``-`` before any prompt ended and once none is left.
        """
        left = self.total - self.done - self.failed - self.skipped
        if left <= 0 or not self._ended:
            return "-"
        recent = [t for t in self._ended if t > now - ETA_WINDOW]
        if len(recent) >= 2:
            # Measured from the first recent end, not the start: the first tasks' latency
            # (no end at all for a while) would read as a rate near zero (20m for 30 s).
            seconds = left * max(now - recent[0], 1e-9) / (len(recent) - 1)
        else:  # one end or none lately: the whole run's rate
            seconds = left * max(now - self.started, 1e-9) / (self.done + self.failed)
        if self._durations and self.running:
            typical = statistics.median(self._durations)
            seconds = max(seconds, self._last_accept + typical - now)
        seconds = max(1.0, seconds)  # something is left: never 0m00s
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# Seconds of recent ends the ETA's rate is measured over.
ETA_WINDOW: Final = 60.0


def render_progress(state: BatchState, now: float) -> RenderableType:
    """The live progress table (also rendered to a string in tests)."""
    table = Table(title="nanobanana batch", show_header=True, header_style="bold")
    cells = {
        "submitted": f"{state.submitted}/{state.total}",
        "running": str(state.running),
        "downloading": str(state.downloading),
        "done": str(state.done),
        "failed": str(state.failed),
        "requests/window": f"{state.requests_in_window}/{state.request_limit}",
    }
    if state.retries:
        # Only once there are any: climbing, it is the sign of a provider that is down.
        cells["retries"] = str(state.retries)
    cells["ETA"] = state.eta(now)
    for column in cells:
        table.add_column(column, justify="right")
    table.add_row(*cells.values())
    return table


def render_summary(rows: list[dict[str, Any]]) -> RenderableType:
    """The end-of-run summary: counts by status and the first failures."""
    table = Table(title="summary")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in ("succeeded", "failed", "unknown", "not_submitted"):
        table.add_row(status, str(sum(1 for r in rows if r["status"] == status)))
    # One row per distinct problem (a bad key is one row for 120 prompts, not ten alike).
    problems: dict[str, list[int]] = {}
    for row in rows:
        if row["status"] != "succeeded":
            problems.setdefault(str(row["error"]), []).append(row["line"])
    for error, numbers in list(problems.items())[:10]:
        table.add_row(lines_text(numbers), error[:80])
    return table


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
    provider = _provider(args.provider)
    limits = Limits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent)
    journal = args.journal or args.out / "journal.db"
    client = Client(provider, limits=limits, journal=journal, coordinator=args.coordinator)
    args.interrupted_journal, args.interrupted_provider = journal, provider
    try:
        requests = await anyio.to_thread.run_sync(
            read_requests, args.prompts, _defaults(args), client.validate
        )
    except (InputError, OSError, UnicodeDecodeError) as exc:
        await client.aclose()
        raise InputError(_input_problems(args.prompts, exc)) from None
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
            with _naming(client):
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


async def _balance(args: argparse.Namespace) -> int:
    provider = _provider(args.provider)
    async with Client(provider) as client:
        try:
            with _naming(client):
                balance = await client.balance()
        except NotSupportedError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
    sys.stdout.write(f"{provider}: {balance.credits:g}\n")
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    provider = _provider(args.provider)
    if provider == "local":
        # A new process starts a new simulator: every id would read "not found".
        raise InputError(
            ["the local simulator's tasks end with the process that made them: no task to check"]
        )
    if args.model is None and provider == "apixo":
        raise InputError(["apixo needs the task's model to check it: pass --model"])
    async with Client(provider) as client:
        task = client.resume(args.task_id, model=args.model or "nano-banana-2")
        try:
            result = await task.result(timeout=args.wait)
        except NanoBananaError as exc:
            state = task.status.raw_state if task.status else "unknown"
            sys.stdout.write(f"{args.task_id}: {state} ({exc})\n")
            return EXIT_FAILED
    sys.stdout.write(f"{args.task_id}: succeeded {' '.join(result.urls)}\n")
    return EXIT_OK


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
        provider = _provider(args.provider)
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


@contextlib.contextmanager
def _naming(client: Client) -> Iterator[None]:
    """A failure to reach the provider names the provider and the URL tried."""
    try:
        yield
    except (TransportError, APIError) as exc:
        # "apixo: HTTP 404 …" from a crun server: the URL says where it went.
        text = str(exc).removeprefix(f"{client.provider}: ")
        raise _UnreachableError(f"{client.provider} at {client.base_url}: {text}") from None


class _UnreachableError(Exception):
    """The provider could not be reached, or refused the call (exit 1)."""


def _input_problems(path: Path, exc: InputError | OSError | UnicodeDecodeError) -> list[str]:
    if isinstance(exc, InputError):
        return [f"{path}: {line}" for line in exc.lines]
    if isinstance(exc, UnicodeDecodeError):
        return [f"{path}: not a UTF-8 text file"]
    return [f"{path}: {exc.strerror or type(exc).__name__}"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except Exception as exc:
        if args.debug:
            raise
        # Last resort: a bug must still read as one line, not a traceback.
        sys.stderr.write(f"error: {type(exc).__name__}: {exc} (run with --debug for details)\n")
        return EXIT_FAILED


def _after_interrupt(args: argparse.Namespace) -> str:
    # What a rerun does; set by the commands that keep a journal, once it is open.
    task: str | None = getattr(args, "interrupted_task", None)
    if task is not None:
        return task
    journal: Path | None = getattr(args, "interrupted_journal", None)
    if journal is None:
        return ""
    if getattr(args, "interrupted_provider", None) == "local":
        return (
            ": the local simulator's unfinished tasks ended with it; "
            f"remove {journal} to start again"
        )
    return ": run the same command again to resume from the journal"


def _main(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        from ..testing.__main__ import main as simulate

        extra = ["--api-key", args.api_key] if args.api_key else []
        port = ["--port", str(args.port), "--median", str(args.median)]
        return simulate(["--provider", args.provider, *port, *extra])
    console = Console(stderr=True)
    try:
        if args.command == "generate":
            output: Path = args.output
            # Checked before the task is paid for: a folder, or a file as parent, cannot be written.
            if output.is_dir() or (output.parent.exists() and not output.parent.is_dir()):
                raise InputError([f"--output {output}: not a file path"])
            return asyncio.run(_generate(args))
        if args.command == "batch":
            if args.out.exists() and not args.out.is_dir():
                raise InputError([f"--out {args.out}: not a folder"])
            return asyncio.run(_batch(args, console))
        if args.command == "status":
            return asyncio.run(_status(args))
        if args.command == "balance":
            return asyncio.run(_balance(args))
        return asyncio.run(_resume(args))
    except InputError as exc:
        for line in exc.lines:
            sys.stderr.write(f"error: {line}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted{_after_interrupt(args)}\n")
        return EXIT_INTERRUPTED
    except _UnreachableError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except NanoBananaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILED
