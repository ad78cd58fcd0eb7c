"""What every command shares: exit codes, the provider choice, request defaults and how a
failure to reach the provider reads (no I/O beyond stderr)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict

from .._client import Client
from .._dispatch import SET_ASIDE
from .._errors import (
    APIError,
    AuthenticationError,
    NanoBananaError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from .._router import Router
from .._task import Task
from ..providers import PROVIDERS
from ._inputs import InputError, unset_variable

if TYPE_CHECKING:
    from ._accounts import Accounts

EXIT_OK: Final = 0

EXIT_FAILED: Final = 1

EXIT_USAGE: Final = 2

EXIT_INTERRUPTED: Final = 130


#: The variables the library and the command line read (the test suite's loop choice too).
KNOWN_VARIABLES: Final = (
    "NANOBANANA_API_KEY",
    "NANOBANANA_BASE_URL",
    "NANOBANANA_PROVIDER",
    "NANOBANANA_COORDINATOR",
    "NANOBANANA_LOG",
    "NANOBANANA_TEST_LOOP",
)
#: ``NANOBANANA_API_KEY_<NAME>`` and ``NANOBANANA_BASE_URL_<NAME>``: one account's, any name.
_PER_ACCOUNT: Final = ("NANOBANANA_API_KEY_", "NANOBANANA_BASE_URL_")


def environment_warnings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line for each ``NANOBANANA_*`` variable set that nothing reads (a misspelt name
    otherwise leaves the default in force without a word: ``NANOBANANA_PROVIDR=crun`` ran the
    local simulator) and for a ``NANOBANANA_LOG`` that is neither ``debug`` nor ``info``.

    Never the value of a variable: a misspelt key variable holds the key.
    """
    lines = []
    for name in sorted(environ):
        if not name.startswith("NANOBANANA_") or name in KNOWN_VARIABLES:
            continue
        if name.startswith(_PER_ACCOUNT) and name not in _PER_ACCOUNT:
            continue
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"warning: {name} is set but not read by nanobanana{hint}")
    log = environ.get("NANOBANANA_LOG", "").strip().lower()
    if log not in ("", "debug", "info"):
        lines.append("warning: NANOBANANA_LOG is set but is neither debug nor info: no logging")
    return lines


def choose_provider(
    chosen: str | None, *, key_env: str | None = None, announce: bool = True
) -> str:
    """The provider from ``--provider``, else ``NANOBANANA_PROVIDER``, else apixo with a key
    set, else ``local`` (said on stderr by :func:`announce_local`, at once unless
    ``announce`` is false: a command whose input may still be refused says it once that
    input is checked, so a refusal stays one line).

    Raises:
        InputError: ``NANOBANANA_PROVIDER`` names no provider, or the provider needs a key and
            its variable is not set (in the command line's terms, not the Client's
            ``api_key=``).
    """
    if chosen is not None:
        return _keyed(chosen, key_env)
    named = os.environ.get("NANOBANANA_PROVIDER")
    if named:
        if named not in PROVIDERS:
            raise InputError(
                [f"NANOBANANA_PROVIDER={named!r} is not one of {', '.join(PROVIDERS)}"]
            )
        return _keyed(named, key_env)
    if os.environ.get(key_env or "NANOBANANA_API_KEY"):
        return "apixo"
    if announce:
        announce_local(chosen, key_env=key_env)
    return "local"


def fell_back(chosen: str | None, *, key_env: str | None = None) -> bool:
    """Whether :func:`choose_provider` chose ``local`` for want of a key (no provider named)."""
    return (
        chosen is None
        and not os.environ.get("NANOBANANA_PROVIDER")
        and not os.environ.get(key_env or "NANOBANANA_API_KEY")
    )


def announce_local(chosen: str | None, *, key_env: str | None = None) -> None:
    """Say on stderr that the built-in simulator runs, when no provider was named and no key
    is set (a user expecting their provider learns why nothing is paid)."""
    if fell_back(chosen, key_env=key_env):
        sys.stderr.write(
            f"no {key_env or 'NANOBANANA_API_KEY'} set: using the built-in local simulator\n"
        )


def _keyed(provider: str, key_env: str | None) -> str:
    variable = key_env or "NANOBANANA_API_KEY"
    if provider != "local" and not os.environ.get(variable):
        raise InputError(
            [
                f"no API key for {provider}: set {variable}"
                + ("" if key_env else ", or name the variable holding it with --api-key-env")
            ]
        )
    return provider


class Connection(TypedDict, total=False):
    """The Client's ``api_key`` and ``base_url``, where the command line sets them."""

    api_key: str
    base_url: str | None


def connection(args: argparse.Namespace) -> Connection:
    """``api_key`` and ``base_url`` for the Client from ``--api-key-env NAME`` and
    ``--base-url URL``; unset ones are left to the Client (its environment variables).

    Raises:
        InputError: ``--api-key-env`` names a variable that is not set (the message names the
            variable, never a value).
    """
    options: Connection = {}
    name: str | None = getattr(args, "api_key_env", None)
    if name is not None:
        key = os.environ.get(name)
        if not key:
            raise InputError([unset_variable("--api-key-env", name, flag=True)])
        options["api_key"] = key
    url: str | None = getattr(args, "base_url", None)
    if url is not None:
        options["base_url"] = url
    return options


def request_defaults(args: argparse.Namespace) -> dict[str, object]:
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


#: Said with a refused key when apixo was not named but taken as the default.
DEFAULTED_HINT: Final = (
    "apixo is the default with a key set: name the key's provider with --provider or "
    "NANOBANANA_PROVIDER"
)


def defaulted(chosen: str | None, *, key_env: str | None = None) -> bool:
    """Whether :func:`choose_provider` took apixo for want of a provider named (a key is
    set): another provider's key then reaches apixo, which refuses it."""
    return (
        chosen is None
        and not os.environ.get("NANOBANANA_PROVIDER")
        and bool(os.environ.get(key_env or "NANOBANANA_API_KEY"))
    )


def unknown_outcome_hint(provider: str) -> str:
    """What to do about a create of unknown outcome that no journal holds."""
    return f"no task id is known: look for it in {provider}'s task list before generating it again"


@contextlib.contextmanager
def naming(client: Client, *, chosen: bool = True) -> Iterator[None]:
    """A failure to reach the provider names the provider and the URL tried; a refused key,
    when the provider was not ``chosen`` but the default, says how to name it."""
    try:
        yield
    except (TransportError, APIError) as exc:
        # "apixo: HTTP 404 …" from a crun server: the URL says where it went.
        text = str(exc).removeprefix(f"{client.provider}: ")
        if not chosen and isinstance(exc, AuthenticationError):
            text += f" ({DEFAULTED_HINT})"
        if isinstance(exc, SubmitOutcomeUnknownError):
            text += f"; {unknown_outcome_hint(client.provider)}"
        raise UnreachableError(f"{client.provider} at {client.base_url}: {text}") from None


class UnreachableError(Exception):
    """The provider could not be reached, or refused the call (exit 1)."""


def input_problems(path: Path, exc: InputError | OSError | UnicodeDecodeError) -> list[str]:
    if isinstance(exc, InputError):
        return [f"{path}: {line}" for line in exc.lines]
    if isinstance(exc, UnicodeDecodeError):
        return [f"{path}: not a UTF-8 text file"]
    return [f"{path}: {exc.strerror or type(exc).__name__}"]


def check_output(output: Path) -> None:
    """Refuse ``--output`` before anything is paid for: a folder, a file as a parent, or a
    folder this process cannot create a file in (read-only, no permission).

    Raises:
        InputError: naming the path and why.
    """
    if output.is_dir():
        raise InputError([f"--output {output}: not a file path"])
    folder = output.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the download creates the missing folders below it
    if not folder.is_dir():
        raise InputError([f"--output {output}: not a file path"])
    problem = cannot_write_in(folder)
    if problem is not None:
        raise InputError([f"--output {output}: {folder} is not writable ({problem})"])


def cannot_write_in(folder: Path) -> str | None:
    """Why this process cannot create a file in ``folder``, or None when it can.

    A real file is made and removed: permission bits lie to root and on read-only mounts.
    """
    probe = folder / f".nanobanana-{secrets.token_hex(4)}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def status_command(
    args: argparse.Namespace, client: Client | Router, task: Task, model: str
) -> str:
    """The ``nanobanana status`` command that fetches an accepted task, quoted for a POSIX
    shell: it reaches the task's own account, with the key variable and URL that account was
    reached with (copied without them, it used ``NANOBANANA_API_KEY`` and the documented URL).

    Neither is a secret: the key is named by its variable, and a ``base_url`` holding the key
    or a password was refused before anything was sent.
    """
    provider, key_env, base_url = _account_of(args, client, task)
    return status_words(str(task.id), provider, model, key_env=key_env, base_url=base_url)


def status_words(
    task_id: str, provider: str, model: str, *, key_env: str | None, base_url: str | None
) -> str:
    """``nanobanana status TASK_ID --provider P [--api-key-env K] [--base-url U] --model M``,
    quoted for a POSIX shell."""
    words = ["nanobanana", "status", task_id, "--provider", provider]
    if key_env is not None:
        words += ["--api-key-env", key_env]
    if base_url is not None:
        words += ["--base-url", base_url]
    return shlex.join([*words, "--model", model])


def _account_of(
    args: argparse.Namespace, client: Client | Router, task: Task
) -> tuple[str, str | None, str | None]:
    # (provider, key variable, base URL) of the account holding the task.
    if isinstance(client, Client):
        return client.provider, getattr(args, "api_key_env", None), getattr(args, "base_url", None)
    # The router records the account that took the task ("crun:1a2b3c4d"); the command's
    # accounts are its clients, in order.
    taken = task.attempts[-1].account if task.attempts else None
    routed = getattr(args, "routed", None)
    accounts = routed.accounts if routed is not None else ()
    for name, account in zip(client.accounts, accounts, strict=False):
        if name == taken:
            return account.provider, account.key_env, account.base_url
    return (taken or "?").split(":")[0], None, None


class _SetAside(logging.Filter):
    # The router's WARNING that an account is set aside (its key or credits refused): under
    # accounts_named the error line names every account and why, once.
    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, SET_ASIDE)


@contextlib.contextmanager
def accounts_named(router: Router, routed: Accounts) -> Iterator[None]:
    """A submit over several accounts that none took becomes one line naming each account
    tried, the variable its key came from and what it answered (the error alone named the
    last account; a WARNING per account set aside came before it).

    Raises:
        UnreachableError: in place of a NanoBananaError that carries the accounts tried.
    """
    logger = logging.getLogger("nanobanana_async")
    quiet = _SetAside()
    logger.addFilter(quiet)
    try:
        yield
    except NanoBananaError as exc:
        attempts = getattr(exc, "attempts", ())
        if not attempts or isinstance(exc, ValueError):
            raise  # refused before any account was asked: its own line says why
        named = dict(zip(router.accounts, routed.accounts, strict=False))
        tried = []
        for attempt in attempts:
            account = named.get(attempt.account)
            source = f" (key from {account.key_env})" if account and account.key_env else ""
            tried.append(f"{attempt.account}{source}: {attempt.outcome}")
        raise UnreachableError(f"no account took the prompt: {'; '.join(tried)}") from None
    finally:
        logger.removeFilter(quiet)
