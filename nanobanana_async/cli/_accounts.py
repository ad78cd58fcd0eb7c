"""The accounts a command runs on: ``--provider apixo,crun`` or ``--accounts FILE`` (TOML), each
with its key read from an environment variable the file names (reads the file and the
environment; no network)."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

import attrs

from .._client import Client
from .._config import Limits
from .._redact import without_userinfo
from .._structure import RecordError, structure_record
from ..providers import PROVIDERS
from ._inputs import InputError, unset_variable

# Fields that would hold a key itself: a key is never written in a file, only its variable.
_KEY_FIELDS: Final = ("api_key", "key", "token", "secret")

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@attrs.frozen(kw_only=True)
class AccountEntry:
    """One ``[[accounts]]`` table of an accounts file (as written; checked by ``_check``)."""

    provider: str
    name: str | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    requests: int | None = None
    per: float | None = None
    concurrent_tasks: int | None = None
    weight: float = 1.0


@attrs.frozen(kw_only=True)
class AccountsFile:
    """An accounts file: the accounts in priority order and the router's strategy."""

    accounts: tuple[AccountEntry, ...]
    strategy: Literal["soonest", "priority", "weighted"] = "soonest"


@attrs.frozen(kw_only=True)
class Account:
    """One account a command runs on, resolved: its key read, never shown.

    Attributes:
        name: how progress, the journal's file name and messages name it (``apixo``, or the
            file's ``name``).
        provider: the provider's name.
        key_env: the environment variable the key came from (recorded in the journal so
            ``resume`` reads it again); None for ``local``.
        base_url: the URL given for it, else None (the provider's documented one).
        requests, per, concurrent_tasks: its own limits, where given (else the command's
            ``--requests``, ``--per``, ``--concurrent``).
        weight: its share under ``strategy = "weighted"``.
    """

    name: str
    provider: str
    key_env: str | None
    api_key: str | None = attrs.field(repr=False)
    base_url: str | None
    requests: int | None = None
    per: float | None = None
    concurrent_tasks: int | None = None
    weight: float = 1.0

    def limits(self, default: Limits) -> Limits:
        """Its own limits, each one not given taken from ``default`` (the command's)."""
        return attrs.evolve(
            default,
            requests=self.requests or default.requests,
            per=self.per or default.per,
            concurrent_tasks=self.concurrent_tasks or default.concurrent_tasks,
        )

    def client(self, *, limits: Limits, journal: Path | None, coordinator: str | None) -> Client:
        """A Client on this account (``limits``: the command's, for what it does not set)."""
        return Client(
            self.provider,
            api_key=self.api_key,
            base_url=self.base_url,
            limits=self.limits(limits),
            journal=journal,
            coordinator=coordinator,
        )


def env_suffix(name: str) -> str:
    """``apixo-2`` → ``APIXO_2``: the end of ``NANOBANANA_API_KEY_<NAME>``."""
    return name.upper().replace("-", "_")


def from_providers(providers: Sequence[str]) -> list[Account]:
    """The accounts of ``--provider apixo,crun``: each key from ``NANOBANANA_API_KEY_<NAME>``,
    else ``NANOBANANA_API_KEY``; each URL from ``NANOBANANA_BASE_URL_<NAME>``, else the
    provider's documented one (``NANOBANANA_BASE_URL`` is one server's: see :func:`several`).

    Raises:
        InputError: a provider named twice, or one with no key variable set.
    """
    repeated = sorted({p for p in providers if providers.count(p) > 1})
    if repeated:
        raise InputError(
            [
                f"--provider names {', '.join(repeated)} twice; two accounts of one provider "
                "need --accounts FILE"
            ]
        )
    accounts: list[Account] = []
    for provider in providers:
        own = f"NANOBANANA_API_KEY_{env_suffix(provider)}"
        key_env = own if os.environ.get(own) else "NANOBANANA_API_KEY"
        key = os.environ.get(key_env) or None
        if key is None and provider != "local":
            raise InputError([f"--provider {provider}: set {own} (or NANOBANANA_API_KEY)"])
        url = os.environ.get(f"NANOBANANA_BASE_URL_{env_suffix(provider)}")
        accounts.append(
            Account(
                name=provider,
                provider=provider,
                key_env=key_env if key is not None else None,
                api_key=key,
                base_url=url or None,
            )
        )
    return accounts


def read_accounts(
    path: Path,
) -> tuple[list[Account], Literal["soonest", "priority", "weighted"]]:
    """The accounts of an accounts file and its strategy; every problem named as
    ``FILE: accounts[N].field: problem``, before anything is sent.

    The file (TOML)::

        strategy = "priority"          # soonest (default), priority or weighted
        [[accounts]]
        provider = "apixo"
        api_key_env = "APIXO_KEY"      # the variable holding the key; never the key itself
        base_url = "https://..."       # optional: else NANOBANANA_BASE_URL_<NAME>
        requests = 600                 # optional limits: requests per `per` seconds,
        per = 10                       #   tasks at once (default: the command's)
        concurrent_tasks = 50
        weight = 2                     # its share under strategy = "weighted"
        name = "apixo-main"            # optional: how progress and the journal name it

    Raises:
        InputError: the file cannot be read, is not TOML, or any field is wrong (a literal
            key included), or a key variable is not set.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError([f"--accounts {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise InputError([f"{path}: not a UTF-8 text file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError([f"{path}: not TOML ({exc})"]) from None
    problems = _literal_keys(data)
    if problems:
        # Said before anything else, and the value never: it is a secret in a file.
        raise InputError([f"{path}: {p}" for p in problems])
    try:
        parsed = structure_record(data, AccountsFile)
    except RecordError as exc:
        raise InputError([f"{path}: {_where(e)}" for e in exc.errors]) from None
    found: list[str] = []
    accounts: list[Account] = []
    names: dict[str, int] = {}
    for n, entry in enumerate(parsed.accounts):
        where = f"accounts[{n}]"
        account, wrong = _check(entry, where, names)
        found += wrong
        names.setdefault(account.name, n)
        accounts.append(account)
    if not parsed.accounts:
        found.append("accounts: at least one [[accounts]] table is needed")
    if found:
        raise InputError([f"{path}: {p}" for p in found])
    return accounts, parsed.strategy


def _literal_keys(data: Mapping[str, object]) -> list[str]:
    found = [
        f"{name}: a key is never written in the file; name its environment variable with "
        "api_key_env"
        for name in _KEY_FIELDS
        if name in data
    ]
    tables = data.get("accounts")
    if isinstance(tables, list):
        for n, table in enumerate(tables):
            if isinstance(table, Mapping):
                found += [
                    f"accounts[{n}].{name}: a key is never written in the file; name its "
                    "environment variable with api_key_env"
                    for name in _KEY_FIELDS
                    if name in table
                ]
    return found


def _where(error: str) -> str:
    # "expected text, got int @ $.accounts[0].provider" → "accounts[0].provider: expected …"
    text, _, path = error.rpartition(" @ ")
    if not _:
        return error
    return f"{path.removeprefix('$.').removeprefix('$')}: {text}"


def _check(entry: AccountEntry, where: str, names: Mapping[str, int]) -> tuple[Account, list[str]]:
    found: list[str] = []
    if entry.provider not in PROVIDERS:
        found.append(f"{where}.provider: {entry.provider!r} is not one of {', '.join(PROVIDERS)}")
    name = entry.name if entry.name is not None else entry.provider
    if not _NAME.fullmatch(name):
        found.append(f"{where}.name: {name!r}: use lower-case letters, digits, - and _")
    elif name in names:
        found.append(
            f"{where}.name: {name!r} is also accounts[{names[name]}]'s name; give each "
            "account its own name"
        )
    key: str | None = None
    key_env = entry.api_key_env
    if key_env is None and entry.provider != "local":
        key_env = f"NANOBANANA_API_KEY_{env_suffix(name)}"
        if not os.environ.get(key_env):
            key_env = "NANOBANANA_API_KEY"
    if key_env is not None:
        key = os.environ.get(key_env) or None
        if key is None:
            found.append(unset_variable(f"{where}.api_key_env", key_env))
    if entry.base_url is not None and not entry.base_url.startswith(("http://", "https://")):
        shown = without_userinfo(entry.base_url)
        # No scheme, no authority to cut the user part from ("user:pw@host"): not echoed.
        said = "(not shown: it may hold a password)" if "@" in shown else repr(shown)
        found.append(f"{where}.base_url: {said} is not an http(s) URL")
    elif entry.base_url is not None and without_userinfo(entry.base_url) != entry.base_url:
        # Not echoed: it holds the password. Client() refuses it too; said here with the
        # file's other problems, before anything is sent.
        found.append(f"{where}.base_url: must not hold a user name or password")
    for field, value in (
        ("requests", entry.requests),
        ("per", entry.per),
        ("concurrent_tasks", entry.concurrent_tasks),
        ("weight", entry.weight),
    ):
        if value is not None and not value > 0:
            found.append(f"{where}.{field}: must be positive, got {value}")
    # As --provider reads it: the file's URL, else NANOBANANA_BASE_URL_<NAME>, else the
    # provider's documented URL (several() refuses a shared NANOBANANA_BASE_URL standing in).
    url = entry.base_url or os.environ.get(f"NANOBANANA_BASE_URL_{env_suffix(name)}") or None
    account = Account(
        name=name,
        provider=entry.provider,
        key_env=key_env,
        api_key=key,
        base_url=url,
        requests=entry.requests,
        per=entry.per,
        concurrent_tasks=entry.concurrent_tasks,
        weight=entry.weight,
    )
    return account, found


@attrs.frozen
class Accounts:
    """Several accounts for one command, and how the router chooses among them."""

    accounts: tuple[Account, ...]
    strategy: Literal["soonest", "priority", "weighted"] = "soonest"


def several(args: argparse.Namespace) -> Accounts | None:
    """The accounts of ``--accounts FILE`` or of ``--provider a,b``; None for one provider,
    which then runs exactly as before (``args.provider`` is left as that one name, or None).

    ``NANOBANANA_BASE_URL`` names one server, so it applies to one provider only: with several
    accounts each URL comes from the file's ``base_url`` or ``NANOBANANA_BASE_URL_<NAME>``,
    else the provider's documented one, and while ``NANOBANANA_BASE_URL`` is set an account
    with no URL of its own is refused (the client would send its key to that one server).

    Raises:
        InputError: both given, ``--api-key-env``/``--base-url`` with several accounts (they
            name one), any problem of the file or of the key variables, or an account that
            would fall back to ``NANOBANANA_BASE_URL``.
    """
    chosen: tuple[str, ...] | None = args.provider
    args.provider = chosen[0] if chosen is not None and len(chosen) == 1 else None
    file: Path | None = args.accounts
    if file is None and (chosen is None or len(chosen) == 1):
        return None
    if file is not None and chosen is not None:
        raise InputError(["--accounts and --provider: give one of them"])
    for option in ("api_key_env", "base_url"):
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            raise InputError(
                [f"{flag} names one account: with several, the file or NANOBANANA_*_<NAME> does"]
            )
    if file is not None:
        accounts, strategy = read_accounts(file)
    else:
        assert chosen is not None
        accounts, strategy = from_providers(chosen), "soonest"
    if len(accounts) > 1 and os.environ.get("NANOBANANA_BASE_URL"):
        bare = [a for a in accounts if a.base_url is None and a.provider != "local"]
        if bare:
            names = ", ".join(f"NANOBANANA_BASE_URL_{env_suffix(a.name)}" for a in bare)
            raise InputError(
                [
                    f"NANOBANANA_BASE_URL is one server's URL, not every account's: set {names} "
                    f"(or base_url in an accounts file), or unset NANOBANANA_BASE_URL to use "
                    f"the documented URL"
                ]
            )
    return Accounts(tuple(accounts), strategy)
