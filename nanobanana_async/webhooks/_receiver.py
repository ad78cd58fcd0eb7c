"""CallbackReceiver: an aiohttp.web app that turns verified provider callbacks into immediate
status checks (does I/O).

A callback is a hint, never the truth: a verified one makes its task's check due now and only
that check resolves the task. Forged, foreign, oversized and malformed callbacks change nothing.
"""

from __future__ import annotations

import collections
import logging
import secrets
import time
from typing import TYPE_CHECKING, Final, Self

import attrs
from aiohttp import web

from .._errors import BadResponseError, ConfigurationError, WebhookVerificationError
from .._models import is_http_url
from ._verify import mint, verify

if TYPE_CHECKING:
    from .._scheduler._plan import Entry
    from .._scheduler._runner import Scheduler, Tracked
    from ..providers import ProviderDriver

_log = logging.getLogger("nanobanana_async.webhooks")

DEFAULT_PATH: Final = "/nanobanana/callback"


@attrs.define
class _Binding:
    driver: ProviderDriver
    scheduler: Scheduler | None = None
    entry: Entry[Tracked] | None = None
    early: list[bytes] = attrs.field(factory=list)
    prepared_at: float = 0.0


@attrs.frozen(kw_only=True)
class CallbackStatistics:
    """What the receiver has seen.

    Attributes:
        accepted: verified callbacks that made a check due.
        duplicates: verified callbacks for tasks already due, checking or finished.
        early: callbacks held because they came before the submit returned.
        rejected: forged, foreign, malformed or oversized callbacks.
    """

    accepted: int
    duplicates: int
    early: int
    rejected: int


class CallbackReceiver:
    """Receives provider callbacks for a ``Client(callbacks=receiver)``.

    Standalone: ``await receiver.start("0.0.0.0", 8080, public_url="https://example.com")``.
    Mounted in your aiohttp app: ``app.add_subapp("/hooks", receiver.app)`` and set
    ``receiver.public_url = "https://example.com/hooks"``. Each submit gets its own callback
    URL ``{public_url}/{token}``; the token is an HMAC only this receiver can mint.

    Args:
        secret: key of the token HMAC; random per receiver by default (tokens then do not
            survive a restart, and callbacks for earlier tasks are answered 404).
        public_url: the URL at which providers reach ``app``; see :meth:`start` for the
            standalone default.
        max_body: callbacks larger than this many bytes are refused with 413 unread.
        early_ttl: seconds an unbound or finished task's token is remembered.

    Raises:
        ConfigurationError: ``public_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        public_url: str | None = None,
        max_body: int = 256 * 1024,
        early_ttl: float = 60.0,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._public_url: str | None = None
        if public_url is not None:
            self.public_url = public_url
        self._max_body = max_body
        self._early_ttl = early_ttl
        self._bindings: collections.OrderedDict[str, _Binding] = collections.OrderedDict()
        self._runner: web.AppRunner | None = None
        self._counts = collections.Counter[str]()
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post("/{token}", self._handle)

    def __repr__(self) -> str:
        return f"CallbackReceiver(public_url={self._public_url!r})"

    @property
    def public_url(self) -> str | None:
        """Where providers reach :attr:`app` (callback URLs are ``{public_url}/{token}``)."""
        return self._public_url

    @public_url.setter
    def public_url(self, value: str) -> None:
        if not is_http_url(value):
            raise ConfigurationError("public_url must be an absolute http(s) URL")
        self._public_url = value.rstrip("/")

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None
    ) -> None:
        """Serve the receiver on its own at ``{host}:{port}{DEFAULT_PATH}``.

        ``public_url`` defaults to ``http://{host}:{port}/nanobanana/callback``, right for
        tests and for providers on the same network only.
        """
        root = web.Application(client_max_size=self._max_body)
        root.add_subapp(DEFAULT_PATH, self.app)
        self._runner = web.AppRunner(root, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]  # asyncio.Server
        self.public_url = public_url or f"http://{host}:{bound}{DEFAULT_PATH}"

    async def aclose(self) -> None:
        """Stop a receiver started with :meth:`start`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        if self._runner is None and self._public_url is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def statistics(self) -> CallbackStatistics:
        """Counts of what the receiver has seen."""
        return CallbackStatistics(
            accepted=self._counts["accepted"],
            duplicates=self._counts["duplicates"],
            early=self._counts["early"],
            rejected=self._counts["rejected"],
        )

    # ----------------------------------------------------------------- used by the client

    def _prepare(self, driver: ProviderDriver) -> tuple[str, str]:
        """A fresh nonce and its callback URL, for one submit."""
        if self._public_url is None:
            raise ConfigurationError(
                "the callback receiver has no public_url: start() it or set public_url"
            )
        self._expire_early()
        nonce = secrets.token_urlsafe(12)
        self._bindings[nonce] = _Binding(driver=driver, prepared_at=time.monotonic())
        return nonce, f"{self._public_url}/{mint(self._secret, nonce)}"

    def _bind(self, nonce: str, scheduler: Scheduler, entry: Entry[Tracked]) -> None:
        """The provider accepted the submit: callbacks for ``nonce`` now mean ``entry``."""
        binding = self._bindings.get(nonce)
        if binding is None:
            return
        binding.scheduler, binding.entry = scheduler, entry
        for body in binding.early:
            self._apply(binding, body)
        binding.early.clear()

    def _discard(self, nonce: str) -> None:
        """The submit failed: forget the nonce."""
        self._bindings.pop(nonce, None)

    def _expire_early(self) -> None:
        # Nonces whose submit never bound them (crashed caller) and finished tasks are dropped
        # after the TTL, oldest first, so the table stays bounded on long runs.
        horizon = time.monotonic() - self._early_ttl
        while self._bindings:
            binding = next(iter(self._bindings.values()))
            unbound = binding.entry is None
            finished = binding.entry is not None and binding.entry.done
            if binding.prepared_at > horizon or not (unbound or finished):
                break
            self._bindings.popitem(last=False)

    # ----------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            nonce = verify(self._secret, request.match_info["token"])
        except WebhookVerificationError:
            self._counts["rejected"] += 1
            return web.Response(status=401, text="invalid callback token")
        if request.content_length is not None and request.content_length > self._max_body:
            self._counts["rejected"] += 1
            return web.Response(status=413, text="callback body too large")
        # read(n) returns what is buffered: a body sent in several writes (chunked, or slow)
        # needs more than one read, else a valid callback looks cut and an oversize one
        # gets 400 instead of 413.
        body = b""
        while len(body) <= self._max_body:
            more = await request.content.read(self._max_body + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > self._max_body:
            self._counts["rejected"] += 1
            return web.Response(status=413, text="callback body too large")
        binding = self._bindings.get(nonce)
        if binding is None:
            # Signed by us, but not (or no longer) known: a restart, or a long-finished task.
            self._counts["rejected"] += 1
            return web.Response(status=404, text="unknown callback")
        if binding.entry is None:
            # The callback beat the submit's answer: hold it until the task id is known.
            if len(binding.early) < 4:
                binding.early.append(body)
            self._counts["early"] += 1
            return web.Response(text="ok")
        return self._apply(binding, body)

    def _apply(self, binding: _Binding, body: bytes) -> web.Response:
        entry, scheduler = binding.entry, binding.scheduler
        assert entry is not None
        assert scheduler is not None
        if entry.done:
            self._counts["duplicates"] += 1
            return web.Response(text="ok")  # a replay after the end changes nothing
        try:
            hint = binding.driver.parse_callback(body)
        except BadResponseError:
            self._counts["rejected"] += 1
            return web.Response(status=400, text="unreadable callback")
        if hint.task_id != entry.payload.ref.task_id:
            # A valid token for one task carrying another task's body.
            self._counts["rejected"] += 1
            _log.warning("callback token for one task named another; ignored")
            return web.Response(status=404, text="callback does not match its token")
        if entry.in_flight or entry.due <= scheduler.clock.now():
            self._counts["duplicates"] += 1
        else:
            self._counts["accepted"] += 1
        scheduler.hint(entry)
        return web.Response(text="ok")
