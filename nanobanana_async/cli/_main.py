"""The commands behind ``nanobanana`` (argument parsing and display; all work goes through the
public Client); :mod:`nanobanana_async.cli` loads this module once Ctrl-C is handled."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, NoReturn

from rich.console import Console

from .._client import Client
from .._download import IMAGE_KINDS, mismatches_said_by_caller
from .._errors import (
    InvalidRequestError,
    NanoBananaError,
    NotSupportedError,
    SubmitOutcomeUnknownError,
    TaskTimeoutError,
)
from .._models import ImageRequest, ImageResult, TaskRef
from .._router import Router
from .._scheduler._outcome import ending
from .._task import Task
from ..providers import PROVIDERS
from . import interrupted_before_work, start_work
from ._accounts import Accounts, several
from ._batch import _batch, _resume, open_router
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UnreachableError,
    accounts_named,
    announce_local,
    cannot_write_in,
    check_output,
    choose_provider,
    connection,
    defaulted,
    environment_warnings,
    fell_back,
    naming,
    status_command,
    unknown_outcome_hint,
)
from ._inputs import SUFFIXES, InputError, in_cli_terms

_SECRET_FLAG: Final = re.compile("key|token|secret|password", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not the whole usage; and
    an argument no command knows is said by that command, with the flag it likely meant."""

    commands: dict[str, argparse.ArgumentParser] | None = None

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(  # type: ignore[override]  # only the form main() calls
        self, args: list[str] | None = None
    ) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args)
        if extra:
            # argparse leaves them to the top parser, whose message names neither the
            # command nor its flags: --aspect-ration read "nanobanana: error: …".
            command = (self.commands or {}).get(getattr(parsed, "command", ""), self)
            flags = [f for f in command._option_string_actions if f.startswith("--")]
            close = [
                difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7)
                for word in extra
                if word.startswith("--")
            ]
            meant = next((c[0] for c in close if c), None)
            hint = f" (did you mean {meant}?)" if meant else ""
            command.error(f"unrecognized arguments: {' '.join(_masked(extra))}{hint}")
        return parsed


def _masked(words: list[str]) -> list[str]:
    # A key given by a flag the command lacks (--api-key: only simulate has it) is not
    # echoed: stderr often lands in a CI log.
    shown: list[str] = []
    hide = False
    for word in words:
        if hide and not word.startswith("-"):
            shown.append("***")
            hide = False
            continue
        flag, equals, _ = word.partition("=")
        hide = word.startswith("-") and _SECRET_FLAG.search(flag) is not None
        if hide and equals:
            word, hide = f"{flag}=***", False
        shown.append(word)
    return shown


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            # "--concurrent 1.5: not a number" read as a riddle: it is one, not a whole one
            # (only an int option refuses a text that float() reads).
            what = "a whole number" if _is_float(text) else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _providers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name not in PROVIDERS:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {name!r} (choose from {', '.join(PROVIDERS)}; "
                "several as apixo,crun)"
            )
    return names


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0-65535): {text}")
    return int(text)


_COORDINATOR_SCHEMES = ("redis://", "rediss://", "unix://")


def _coordinator(text: str) -> str:
    # The client's own check, made here so the message names the flag. The URL is not echoed:
    # it may hold the Redis password.
    if not text.startswith(_COORDINATOR_SCHEMES):
        raise argparse.ArgumentTypeError(
            "must be a redis://, rediss:// or unix:// URL, such as redis://localhost:6379/0"
        )
    return text


def _parser() -> _Parser:
    parser = _Parser(
        prog="nanobanana", description="Generate Nano Banana images from the command line."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on errors (for bug reports)"
    )
    # Also after the command (`nanobanana batch ... --debug`); SUPPRESS: a command that is
    # not given it leaves the one before the command as it was.
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def connection_options(
        p: argparse.ArgumentParser,
        url_default: str = "NANOBANANA_BASE_URL, else the documented one",
    ) -> None:
        p.add_argument(
            "--api-key-env",
            default=None,
            metavar="NAME",
            help="read the API key from the environment variable NAME (default NANOBANANA_API_KEY)",
        )
        p.add_argument(
            "--base-url",
            default=None,
            metavar="URL",
            help=f"the provider's base URL (default {url_default})",
        )

    def request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--provider",
            type=_providers,
            default=None,
            metavar="NAME[,NAME...]",
            help="default: $NANOBANANA_PROVIDER, else apixo if NANOBANANA_API_KEY is set, else "
            "local; several (apixo,crun) share the work, each with NANOBANANA_API_KEY_<NAME> "
            "(else NANOBANANA_API_KEY) and NANOBANANA_BASE_URL_<NAME> (else the documented "
            "URL; NANOBANANA_BASE_URL is one server's, so an account without its own is "
            "refused while it is set)",
        )
        p.add_argument(
            "--accounts",
            type=Path,
            default=None,
            metavar="FILE",
            help="a TOML file of accounts (provider, api_key_env, base_url, limits, weight) "
            "and a strategy; see the README",
        )
        connection_options(p)
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

    generate = commands.add_parser(
        "generate", parents=[common], help="generate one image and save it"
    )
    generate.add_argument("prompt", help="what to draw (- reads it from stdin)")
    request_options(generate)
    generate.add_argument(
        "--image-url",
        action="append",
        default=[],
        dest="image_urls",
        help="an input image URL (repeat for several)",
    )
    generate.add_argument(
        "--output-format",
        default=None,
        help="png or jpeg (jpg is the same) where the provider offers a choice",
    )
    generate.add_argument(
        "--google-search",
        action="store_true",
        default=None,
        help="ask for Google Search grounding where the model offers it",
    )
    generate.add_argument(
        "--output",
        "-o",
        default=None,
        type=Path,
        help="file to write, kept exactly as given (default image.png, image.jpg or "
        "image.webp: named by the image's real type; image/<task id>.png when a folder "
        "image is here)",
    )

    batch = commands.add_parser("batch", parents=[common], help="generate every prompt of a file")
    batch.add_argument(
        "prompts",
        type=Path,
        help=".txt (a prompt a line), .json (an array), .jsonl or .csv; - reads stdin",
    )
    batch.add_argument(
        "--input-format",
        choices=[suffix.lstrip(".") for suffix in SUFFIXES],
        default=None,
        help="the prompts' file type (default: the file name's suffix; txt for -)",
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
        "--progress",
        choices=("auto", "table", "plain", "json", "none"),
        default="auto",
        help="auto (default): table when stdout is a terminal, else plain; table: a live "
        "table on stderr; plain: a line every few seconds on stdout (counts, rate, ETA); "
        "json: the same as one JSON object a line; none",
    )
    batch.add_argument(
        "--quiet", "-q", action="store_true", help="no progress and no summary (errors only)"
    )
    batch.add_argument(
        "--coordinator",
        type=_coordinator,
        default=None,
        metavar="URL",
        help="redis://host:6379/0 shared by every worker on the key "
        "(default NANOBANANA_COORDINATOR)",
    )

    balance = commands.add_parser("balance", parents=[common], help="print the account's balance")
    balance.add_argument("--provider", choices=PROVIDERS, default=None, help="default as batch")
    connection_options(balance)

    status = commands.add_parser("status", parents=[common], help="check one task by id")
    status.add_argument("task_id", help="the provider's task id")
    status.add_argument(
        "--model", default=None, help="the task's model (needed for apixo; default nano-banana-2)"
    )
    status.add_argument("--provider", choices=PROVIDERS, default=None, help="default as batch")
    connection_options(status)
    status.add_argument(
        "--wait", type=_positive(float), default=30.0, help="seconds to wait for the end"
    )

    resume = commands.add_parser(
        "resume", parents=[common], help="wait for the unfinished tasks of a journal"
    )
    resume.add_argument(
        "--journal", type=Path, required=True, help="the batch's journal (OUT/journal.db)"
    )
    resume.add_argument(
        "--provider", choices=PROVIDERS, default=None, help="default: the journal's provider"
    )
    # The journal's tasks live at the URL it recorded; NANOBANANA_BASE_URL does not apply.
    connection_options(resume, url_default="the one the journal recorded")
    resume.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for images and manifest (default: the batch's --out, recorded in the journal)",
    )

    simulate = commands.add_parser(
        "simulate", parents=[common], help="serve a provider simulator on 127.0.0.1"
    )
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
    parser.commands = dict(commands.choices)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanobanana-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


async def _generate(args: argparse.Namespace) -> int:
    routed: Accounts | None = args.routed
    # No -o: named by the bytes' type (image.jpg for a JPEG); -o is used as given.
    dest: Path = args.output if args.output is not None else Path("image")
    submitting: asyncio.Future[Task] | None = None
    client: Client | Router | None = None
    try:
        if routed is not None:
            # Over several accounts the router picks one (failing over only when nothing was
            # created), and the messages name the account that took the task.
            request = _request(args)
            async with open_router(routed, journals=None) as (client, _):
                submitting = asyncio.ensure_future(client.submit(request))
                with accounts_named(client, routed):
                    task = await asyncio.shield(submitting)
                provider = task.attempts[-1].account.split(":")[0] if task.attempts else "?"
                return await _deliver(args, client, task, provider, request.model, dest)
        options = connection(args)
        provider = choose_provider(args.provider, key_env=args.api_key_env, announce=False)
        request = _request(args)
        chosen = not defaulted(args.provider, key_env=args.api_key_env)
        async with Client(provider, **options) as client:
            client.validate(request)
            announce_local(args.provider, key_env=args.api_key_env)
            with naming(client, chosen=chosen):
                submitting = asyncio.ensure_future(client.submit(request))
                task = await asyncio.shield(submitting)
            return await _deliver(args, client, task, provider, request.model, dest)
    except asyncio.CancelledError:
        # Ctrl-C. The submit was shielded, so the client's close settled it as for a caller
        # still waiting (no WARNING logged beside the one line): accepted, of unknown outcome
        # once sent, or never sent. That outcome is the line's end.
        if submitting is not None and client is not None and not _said(args):
            model = args.model or "nano-banana-2"
            args.interrupted_task = await _interrupted_submit(args, client, submitting, model)
        raise


def _said(args: argparse.Namespace) -> bool:
    return getattr(args, "interrupted_task", None) is not None


async def _interrupted_submit(
    args: argparse.Namespace,
    client: Client | Router,
    submitting: asyncio.Future[Task],
    model: str,
) -> str | None:
    """What the ``interrupted`` line says of a submit that the client's close ended."""
    # The close has stopped the create; the submit's own coroutine needs a turn to end.
    await asyncio.wait([submitting], timeout=5.0)
    if not submitting.done() or submitting.cancelled():
        return None
    error = submitting.exception()
    if error is None:
        task = submitting.result()
        if task.ref is None or task.ref.provider == "local":
            return None  # local's tasks end with this process
        fetch = f"'{status_command(args, client, task, model)}' fetches it"
        return f": {task.ref.provider} task {task.id} goes on; {fetch}"
    if isinstance(error, SubmitOutcomeUnknownError) and error.provider != "local":
        return (
            f": the create sent to {error.provider} may have been accepted and paid for, and "
            f"{unknown_outcome_hint(error.provider)}"
        )
    return None  # never sent, or refused: nothing was created


async def _deliver(
    args: argparse.Namespace,
    client: Client | Router,
    task: Task,
    provider: str,
    model: str,
    dest: Path,
) -> int:
    """Wait for an accepted (so paid) task and write its image to ``dest``; whatever goes
    wrong from here on, the way back to the task is printed."""
    fetch = f"'{status_command(args, client, task, model)}' fetches it"
    if provider != "local":  # local's tasks end with this process
        # Paid from here on: a Ctrl-C must leave the way back to it.
        args.interrupted_task = f": {provider} task {task.id} goes on; {fetch}"
    try:
        result = await task
        # A name of another type than the bytes is said once, here (not logged too).
        with mismatches_said_by_caller() as mismatched:
            paths = await client.download(result, dest)
    except NanoBananaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        if provider != "local":
            sys.stderr.write(f"{provider} task {task.id} was accepted: {fetch}\n")
        return EXIT_FAILED
    size = sum(p.stat().st_size for p in paths)
    _say_mismatched(mismatched)
    sys.stdout.write(f"{paths[0]} ({size} bytes) from {provider} task {result.task_id}\n")
    return EXIT_OK


def _request(args: argparse.Namespace) -> ImageRequest:
    return ImageRequest(
        prompt=args.prompt,
        model=args.model or "nano-banana-2",
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        image_urls=args.image_urls,
        output_format=args.output_format,
        google_search=args.google_search,
        num_images=args.num_images,
        watermark=args.watermark,
        callback_url=args.callback_url,
        provider_options=dict(args.option),
    )


def _say_mismatched(mismatched: list[tuple[Path, str]]) -> None:
    for path, real in mismatched:
        sys.stderr.write(
            f"warning: {path} holds {IMAGE_KINDS[real]} bytes (kept at the path given; name "
            f"it {path.stem}{real}, or ask for another type with --output-format)\n"
        )


async def _balance(args: argparse.Namespace) -> int:
    options = connection(args)
    provider = choose_provider(args.provider, key_env=args.api_key_env)
    chosen = not defaulted(args.provider, key_env=args.api_key_env)
    async with Client(provider, **options) as client:
        try:
            with naming(client, chosen=chosen):
                balance = await client.balance()
        except NotSupportedError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
    sys.stdout.write(f"{provider}: {balance.credits:g}\n")
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    options = connection(args)
    provider = choose_provider(args.provider, key_env=args.api_key_env, announce=False)
    if provider == "local":
        # A new process starts a new simulator: every id would read "not found".
        gone = "the local simulator's tasks end with the process that made them"
        if fell_back(args.provider, key_env=args.api_key_env):
            variable = args.api_key_env or "NANOBANANA_API_KEY"
            raise InputError(
                [
                    f"no {variable} set: set it and name the task's provider with --provider "
                    f"to check a task ({gone})"
                ]
            )
        raise InputError([f"{gone}: no task to check"])
    if args.model is None and provider == "apixo":
        raise InputError(["apixo needs the task's model to check it: pass --model"])
    model = args.model or "nano-banana-2"
    chosen = not defaulted(args.provider, key_env=args.api_key_env)
    async with Client(provider, **options) as client:
        # One check first: an unreachable provider is said at once, as generate says it,
        # not after --wait seconds of retries.
        with naming(client, chosen=chosen):
            first = await client._poll(args.task_id, model=model)
        ref = TaskRef(provider, args.task_id, model)
        now = time.time()
        end = ending(first, ref, None, submitted_wall=now, now_wall=now)
        if isinstance(end, ImageResult):
            sys.stdout.write(f"{args.task_id}: succeeded {' '.join(end.urls)}\n")
            return EXIT_OK
        if end is not None:
            sys.stdout.write(f"{args.task_id}: {first.raw_state} ({end})\n")
            return EXIT_FAILED
        task = client.resume(args.task_id, model=model)
        try:
            result = await task.result(timeout=args.wait)
        except TaskTimeoutError:
            # The resumed task may not have checked yet (its first check waits): the state
            # seen a moment ago is the one to show.
            state = (task.status or first).raw_state
            sys.stdout.write(
                f"{args.task_id}: {state} (not finished within {args.wait:g} s; run the same "
                "command again later)\n"
            )
            return EXIT_FAILED
        except NanoBananaError as exc:
            state = (task.status or first).raw_state
            sys.stdout.write(f"{args.task_id}: {state} ({exc})\n")
            return EXIT_FAILED
    sys.stdout.write(f"{args.task_id}: succeeded {' '.join(result.urls)}\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    from_env = os.environ.get("NANOBANANA_COORDINATOR")
    if (
        hasattr(args, "coordinator")
        and args.coordinator is None
        and from_env
        and not from_env.startswith(_COORDINATOR_SCHEMES)
    ):
        parser.error("NANOBANANA_COORDINATOR must be a redis://, rediss:// or unix:// URL")
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


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; the first Ctrl-C cancels it, which closes its client.

    asyncio.run would raise a second Ctrl-C as KeyboardInterrupt wherever the close happens
    to be (a journal write, a session's close), which can leave a task that never ends and
    the process waiting for ever, or print tracebacks. Here a second Ctrl-C while the command
    closes is ignored, and a third ends the process at once (exit 130, as a kill would: the
    journal is written to survive that). A Ctrl-C ignored by the caller stays ignored.

    Raises:
        KeyboardInterrupt: the command was cancelled by Ctrl-C.
    """
    previous = signal.getsignal(signal.SIGINT)
    # Signal handlers can only be set from the main thread (a test may run us elsewhere).
    handles = threading.current_thread() is threading.main_thread() and (
        previous is signal.default_int_handler or previous is interrupted_before_work
    )
    presses = 0

    def pressed(*_: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1 and not task.done():
            task.cancel()
        elif presses >= 3:
            os.write(2, b"interrupted\n")
            os._exit(EXIT_INTERRUPTED)

    try:
        with asyncio.Runner() as runner:
            loop = runner.get_loop()
            task = loop.create_task(work)
            if handles:
                loop.add_signal_handler(signal.SIGINT, pressed)
            try:
                return loop.run_until_complete(task)
            except asyncio.CancelledError:
                if presses:
                    raise KeyboardInterrupt from None
                raise
            finally:
                if handles:
                    loop.remove_signal_handler(signal.SIGINT)
                    # Until the loop is closed a press is only counted (a third still ends
                    # the process): it must neither cut the close short nor turn a decided
                    # outcome into an interruption.
                    signal.signal(signal.SIGINT, pressed)
    finally:
        if handles:
            signal.signal(signal.SIGINT, previous)


def _read_stdin(args: argparse.Namespace) -> None:
    """``-`` for the prompt (generate) or the prompts (batch): stdin, read before any work.

    Read here, not in a worker thread: until the command's work starts a Ctrl-C ends the
    process at once (nothing was sent), where a thread blocked on a read would keep it alive.
    """
    reads = args.prompt == "-" if args.command == "generate" else str(args.prompts) == "-"
    if not reads:
        args.stdin = None
        return
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError:
        raise InputError(["<stdin>: not UTF-8 text"]) from None
    if args.command == "generate":
        args.prompt = text.strip()
    args.stdin = text


def _main(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    for line in environment_warnings():
        sys.stderr.write(f"{line}\n")
    try:
        # Until a command's coroutine runs (_run), nothing is sent or written: the console
        # script's Ctrl-C handler (one line, exit 130 at once) stays.
        if args.command == "simulate":
            # Serving until Ctrl-C, which is its normal end: a KeyboardInterrupt it handles.
            start_work()
            from ..testing.__main__ import main as simulate

            extra = ["--api-key", args.api_key] if args.api_key else []
            port = ["--port", str(args.port), "--median", str(args.median)]
            return simulate(["--provider", args.provider, *port, *extra])
        if args.command in ("generate", "batch"):
            # The accounts file and the key variables are read before anything is sent.
            args.routed = several(args)
            _read_stdin(args)
        if args.command == "generate":
            # Checked before the task is paid for, as batch checks --out (the default's
            # folder too: the current one may be read-only).
            check_output(args.output if args.output is not None else Path("image.png"))
            return _run(_generate(args))
        if args.command in ("batch", "resume") and args.out is not None:
            if args.out.exists() and not args.out.is_dir():
                raise InputError([f"--out {args.out}: not a folder"])
            # Checked before anything is sent: the journal, the manifest and every image go
            # there (a read-only mount, a folder of another user).
            if args.out.is_dir() and cannot_write_in(args.out) is not None:
                raise InputError([f"--out {args.out}: not writable"])
        if args.command == "batch":
            return _run(_batch(args, console))
        if args.command == "status":
            return _run(_status(args))
        if args.command == "balance":
            return _run(_balance(args))
        return _run(_resume(args))
    except InputError as exc:
        for line in exc.lines:
            sys.stderr.write(f"error: {line}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted{_after_interrupt(args)}\n")
        return EXIT_INTERRUPTED
    except UnreachableError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except NanoBananaError as exc:
        if isinstance(exc, InvalidRequestError) and exc.missing:
            # A field the model requires, asked for by the command's flag (or batch column).
            exc = InvalidRequestError(in_cli_terms(exc, batch=args.command == "batch"))
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILED
