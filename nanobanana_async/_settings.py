"""A client's configuration, resolved once: environment read, defaults applied, checked (pure,
apart from reading the environment)."""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import unquote

import aiohttp
import attrs

from ._clock import DEFAULT_CLOCK, Clock
from ._config import DEFAULT_TASK_TIMEOUT, Limits, RetryPolicy, Timeouts
from ._errors import ConfigurationError
from ._local import LOCAL_TASK_TIMEOUT, LocalTransport
from ._models import credentials_problem, is_http_url
from ._redact import UNAMBIGUOUS, Secret, without_userinfo
from ._scheduler import _redis
from ._transport import AiohttpTransport, Transport
from .events import _check_callback
from .providers import DRIVERS, PROVIDERS, ProviderDriver
from .providers._local import LocalDriver


@attrs.frozen(kw_only=True)
class Settings:
    """What a Client was told, with every default filled in.

    Attributes:
        journal_base_url: the base URL a journal records (None for ``local``, whose URL is
            new in every process, so a journal knows it by name only).
        task_timeout: seconds a task is tracked when its request sets none.
    """

    provider: str
    driver: ProviderDriver
    key: Secret | None
    base_url: str
    journal_base_url: str | None
    limits: Limits
    #: the caller passed ``limits``: the account's budget is known, not assumed.
    limits_known: bool
    retry: RetryPolicy
    timeouts: Timeouts
    task_timeout: float
    transport: Transport
    coordinator: str | None
    clock: Clock
    wall_clock: Callable[[], float]
    random: Callable[[], float]

    def ledger_factory(self) -> Callable[[], _redis.RedisLedger] | None:
        """Makes the account's shared ledger when a coordinator is set, else None."""
        if self.coordinator is None:
            return None
        key = self.key.reveal() if self.key is not None else None
        prefix = _redis.account_prefix(self.driver.name, self.base_url, key)
        wait = self.timeouts.coordinator
        return _redis.ledger_factory(self.coordinator, prefix, self.limits, self.clock, wait)


def check_type(name: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    """Refuse a ``Client`` argument of the wrong type by its name (None is always allowed).

    Raises:
        ConfigurationError: ``value`` is neither None nor an instance of ``kind``; the message
            names the argument and the type given, never the value (it may be a key).
    """
    if value is not None and not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be {what} or None, got {type(value).__name__}")


def check_parts(*, on_event: object, callbacks: object, journal: object) -> None:
    """Refuse a ``Client``'s ``on_event``, ``callbacks`` or ``journal`` of the wrong kind.

    Raises:
        ConfigurationError: ``on_event`` is not callable or is an ``async def``, ``callbacks``
            is not a ``CallbackReceiver``, or ``journal`` is not a path; named as ``check_type``.
    """
    if on_event is not None:
        _check_callback(on_event, "on_event")
    if callbacks is not None:
        # Imported only here: a client without callbacks never loads the receiver.
        from .webhooks import CallbackReceiver

        what = "a nanobanana_async.CallbackReceiver"
        check_type("callbacks", callbacks, CallbackReceiver, what)
    check_type("journal", journal, (str, os.PathLike), "a file path (str or Path)")


def _offers(value: object, *methods: str) -> bool:
    return all(callable(getattr(value, method, None)) for method in methods)


def resolve(
    provider: str,
    *,
    api_key: str | None,
    base_url: str | None,
    limits: Limits | None,
    session: aiohttp.ClientSession | None,
    retry: RetryPolicy | None,
    timeouts: Timeouts | None,
    transport: Transport | None,
    coordinator: str | None,
    clock: Clock | None,
    wall_clock: Callable[[], float],
    random: Callable[[], float],
) -> Settings:
    """The settings for ``Client(provider, ...)``; see ``Client`` for each argument.

    Raises:
        ConfigurationError: unknown provider, missing key, a base URL that is not http(s),
            holds a user name or password or the API key, or is given to ``local``, an argument
            of the wrong type, or a coordinator URL that is bad or needs the missing ``[redis]``
            extra.
    """
    # Checked here, before anything is built: a wrong type would otherwise be an
    # AttributeError from deep inside the first request, after the client had started.
    check_type("api_key", api_key, str, "a string")
    check_type("base_url", base_url, str, "a string")
    check_type("limits", limits, Limits, "a nanobanana_async.Limits")
    check_type("retry", retry, RetryPolicy, "a nanobanana_async.RetryPolicy")
    check_type("timeouts", timeouts, Timeouts, "a nanobanana_async.Timeouts")
    check_type("session", session, aiohttp.ClientSession, "an aiohttp.ClientSession")
    check_type("coordinator", coordinator, str, "a redis:// URL string")
    # Protocols, not classes: checked by what they must offer. clock=5 was accepted, and
    # clock=0 silently replaced by the real clock.
    if clock is not None and not _offers(clock, "now", "sleep_until"):
        raise ConfigurationError(
            "clock must be a Clock (now() and async sleep_until()) or None, "
            f"got {type(clock).__name__}"
        )
    for name, function in (("wall_clock", wall_clock), ("random", random)):
        if not callable(function):
            raise ConfigurationError(
                f"{name} must be a function returning a float, got {type(function).__name__}"
            )
    if provider not in PROVIDERS:
        raise ConfigurationError(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
    driver: ProviderDriver = LocalDriver() if provider == "local" else DRIVERS[provider]
    key = api_key if api_key is not None else os.environ.get("NANOBANANA_API_KEY")
    url = base_url if base_url is not None else os.environ.get("NANOBANANA_BASE_URL")
    timeouts = timeouts or Timeouts()
    task_timeout = timeouts.task or DEFAULT_TASK_TIMEOUT
    if provider == "local" and base_url is not None:
        # It was silently ignored: a request meant for the server at that URL went to a
        # fresh in-process simulator instead. (NANOBANANA_BASE_URL is still ignored here: it
        # may be set for another provider's client in the same process.)
        raise ConfigurationError(
            "base_url does not apply to local, which starts its own simulator; for a server "
            "at a URL, name the protocol it speaks (xingchao, crun, nanobananaapi, apixo)"
        )
    if provider == "local":
        # The simulator brings its own key and URL when it starts.
        key, url = None, None
        transport = transport or LocalTransport(
            connect_timeout=timeouts.connect, wall_clock=wall_clock
        )
        task_timeout = timeouts.task or LOCAL_TASK_TIMEOUT
    elif not key and transport is None:
        raise ConfigurationError(
            f"no API key for {provider}: pass api_key= or set NANOBANANA_API_KEY"
        )
    if url is not None and not is_http_url(url):
        raise ConfigurationError("base_url must be an absolute http(s) URL")
    header = "Authorization" if driver.auth_scheme == "bearer" else "x-api-key"
    if url is not None and key and len(key) >= UNAMBIGUOUS and (key in url or key in unquote(url)):
        # A key in the path or query (?key=...) went on the wire and into the journal, and
        # the CLI's "apixo at <url>" and the client's repr showed it. Not echoed either.
        raise ConfigurationError(
            f"base_url must not hold the API key for {provider}: it goes in the {header} header"
        )
    problem = None if url is None else credentials_problem(url, "base_url")
    if url is not None and problem is not None and without_userinfo(url) != url:
        # Refused for every provider, not kept for the wire and hidden: none of them reads
        # credentials from the URL (the key goes in a header), and a URL is stored in the
        # journal and shown in messages, reprs and the CLI, each a place a password could leak
        # from. A bearer key's provider also met aiohttp's bare ValueError at the first
        # request. The URL is not echoed: it holds the password.
        raise ConfigurationError(
            f"base_url must not hold a user name or password for {provider}: its API key "
            f"goes in the {header} header"
        )
    if problem is not None:
        # "https://user:pa/ss@host": never a usable URL; not echoed.
        raise ConfigurationError(problem)
    coordinator = coordinator or os.environ.get("NANOBANANA_COORDINATOR") or None
    if coordinator is not None:
        _redis.connect(coordinator)  # a missing extra or a bad URL fails here, not mid-run
    secret = Secret(key) if key else None
    resolved_url = (url or driver.default_base_url).rstrip("/")
    return Settings(
        provider=provider,
        driver=driver,
        key=secret,
        base_url=resolved_url,
        journal_base_url=None if provider == "local" else resolved_url,
        limits=limits or Limits(),
        limits_known=limits is not None,
        retry=retry or RetryPolicy(),
        timeouts=timeouts,
        task_timeout=task_timeout,
        transport=transport
        or AiohttpTransport(
            base_url=resolved_url,
            scheme=driver.auth_scheme,
            key=secret,
            session=session,
            connect_timeout=timeouts.connect,
            wall_clock=wall_clock,
        ),
        coordinator=coordinator,
        clock=clock or DEFAULT_CLOCK,
        wall_clock=wall_clock,
        random=random,
    )
