"""CallbackReceiver: an aiohttp.web app that turns verified provider callbacks into immediate
status checks (does I/O).

A callback is a hint, never the truth: a verified one makes its task's check due now and only
that check resolves the task. Forged, foreign, oversized, slow and malformed callbacks change
nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import urlsplit

import attrs
from aiohttp import web

from .._errors import BadResponseError, ConfigurationError, WebhookVerificationError
from .._models import credentials_problem, is_http_url
from ._guard import CappedSite
from ._registration import Registration, _Table, _Timeline
from ._verify import mint, verify

if TYPE_CHECKING:
    from .._clock import Clock
    from ..providers import ProviderDriver

_log = logging.getLogger("nanobanana_async.webhooks")

DEFAULT_PATH: Final = "/nanobanana/callback"
# A provider POSTs when the task ends (PROTOCOLS.md 2-4; apixo retries a failed delivery up to
# 3 times within about 30 s). Polling sees an end at or after it, so a task seen ended this long
# ago with not one callback having reached us means callbacks are not getting through.
_CALLBACK_GRACE: Final = 10.0
_UNHEARD_TO_WARN: Final = 3
_EARLY_BODIES: Final = 4


@attrs.frozen(kw_only=True)
class CallbackStatistics:
    """What the receiver has seen.

    Attributes:
        accepted: verified callbacks that made a check due.
        duplicates: verified callbacks for tasks already due, checking or finished.
        early: callbacks held because they came before the submit returned.
        rejected: forged, foreign, malformed, oversized or too slow callbacks.
        remembered: callback tokens held now: one per running task, plus those of tasks that
            ended (or submits that never returned) less than ``early_ttl`` seconds ago.
    """

    accepted: int
    duplicates: int
    early: int
    rejected: int
    remembered: int


class CallbackReceiver:
    """Receives provider callbacks for a ``Client(callbacks=receiver)``.

    Standalone: ``await receiver.start("0.0.0.0", 8080, public_url="https://example.com/cb")``
    serves at the path of ``public_url`` (here ``/cb``), so a reverse proxy that forwards that
    URL unchanged reaches it. Mounted in your aiohttp app: ``app.add_subapp("/hooks",
    receiver.app)`` and set ``receiver.public_url = "https://example.com/hooks"``. Each submit
    gets its own callback URL ``{public_url}/{token}``; the token is an HMAC only this receiver
    can mint.

    If three tasks were seen ended by polling and no callback at all has reached the receiver
    ten seconds later, one WARNING names ``public_url``: the provider cannot reach it. (It is
    noticed at the next submit or task end through this receiver.) From then on, until a
    callback reaches it, its clients poll their tasks as if they expected no callback.

    Args:
        secret: key of the token HMAC; random per receiver by default (tokens then do not
            survive a restart, and callbacks for earlier tasks are answered 404).
        public_url: the URL at which providers reach ``app``; see :meth:`start` for the
            standalone default.
        max_body: callbacks larger than this many bytes are refused with 413.
        early_ttl: seconds the token of an ended task, or of a submit that has not returned,
            is remembered, on the clock of the client that submitted it (clients on different
            clocks, such as ``testing.FakeClock`` and the real one, may share a receiver).
        header_timeout: seconds a connection to a started receiver has to send its request
            head before it is closed (a mounted ``app`` follows its own server's settings).
        body_timeout: seconds a callback's body may take to arrive; slower ones get 408.
        max_connections: connections a started receiver holds at once; more are closed at
            once, so memory stays bounded whatever peers do.

    Raises:
        ConfigurationError: ``public_url`` is not an http(s) URL or holds a user name or
            password (not echoed), or ``secret`` is not non-empty bytes.
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        public_url: str | None = None,
        max_body: int = 256 * 1024,
        early_ttl: float = 60.0,
        header_timeout: float = 10.0,
        body_timeout: float = 10.0,
        max_connections: int = 1024,
    ) -> None:
        given: object = secret  # checked as what a caller may really pass
        if given is not None and (not isinstance(given, bytes) or not given):
            # A str (read from the environment) failed as hmac's TypeError at the first
            # submit, after the client had started; b"" silently became a random secret.
            raise ConfigurationError(
                f"secret must be non-empty bytes or None, got {type(given).__name__}"
                + (" (encode it: secret=text.encode())" if isinstance(given, str) else "")
            )
        self._secret = secret or secrets.token_bytes(32)
        self._public_url: str | None = None
        if public_url is not None:
            self.public_url = public_url
        self._max_body = max_body
        self._early_ttl = early_ttl
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._max_connections = max_connections
        # One table per stage, each in time order, so expiry only ever looks at the oldest:
        # a task that runs for hours cannot hold back the expiry of those that ended. Running
        # tasks never expire by time; the stages that do are kept per clock (see _Timeline),
        # keyed by id() like the schedulers, as a clock need not be hashable.
        self._running: _Table = collections.OrderedDict()
        self._lines: dict[int, _Timeline] = {}
        self._reached = False
        self._unheard = 0
        # Set by the WARNING that no callback reaches this receiver, cleared by the next one
        # that does: meanwhile tasks are polled as if they expected no callback.
        self._unheard_warned = False
        self._runner: web.AppRunner | None = None
        self._lifecycle: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # True while public_url is the one start() chose, so the next start() chooses again.
        self._chosen_url = False
        self._counts = collections.Counter[str]()
        self.app = self._new_app()

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
        if problem := credentials_problem(value, "public_url"):
            # Sent to the provider with every create and shown in the repr; not echoed.
            raise ConfigurationError(problem)
        self._public_url = value.rstrip("/")
        self._chosen_url = False

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None
    ) -> None:
        """Serve the receiver on its own at ``{host}:{port}``, at the path of ``public_url``.

        ``public_url`` defaults to ``http://{host}:{port}/nanobanana/callback``, right for
        tests and for providers on the same network only; a URL chosen so is chosen again by
        the next ``start()`` (port 0 then picks a new port).

        A receiver stopped with :meth:`aclose` can be started again. It still knows the tasks
        it was told of: a callback for a task that is still running, arriving at the same URL
        after the restart, makes that task's check due as before. Callbacks sent while it was
        stopped are lost, and polling finds those tasks.

        Raises:
            ConfigurationError: ``public_url`` is not an http(s) URL or holds a user name or
                password, or the receiver is already started (``aclose()`` it first).
            OSError: ``{host}:{port}`` cannot be listened on (in use, not local).
        """
        # One start or close at a time: a close while a start awaits its socket would clean
        # up a runner not yet serving, and the socket opened next would listen for ever.
        async with self._lock():
            await self._start(host, port, public_url)

    async def _start(self, host: str, port: int, public_url: str | None) -> None:
        if self._runner is not None:
            raise ConfigurationError(
                "the callback receiver is already started: aclose() it before starting it again"
            )
        if public_url is not None:
            self.public_url = public_url
        elif self._chosen_url:
            self._public_url = None
        path = DEFAULT_PATH if self._public_url is None else urlsplit(self._public_url).path
        # A fresh application per start: aiohttp freezes an application for good once it has
        # served, and self.app stays free for the caller to mount.
        root = inner = self._new_app()
        if path:
            root = web.Application(client_max_size=self._max_body)
            root.add_subapp(path, inner)
        # aiohttp closes a connection whose head has not come within keepalive_timeout (the
        # first head too, since 3.14.4). After a refusal, the rest of a body is drained (so the
        # peer reads the answer, not a reset) only as long as a body may take.
        runner = web.AppRunner(
            root,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._header_timeout,
            lingering_time=self._body_timeout,
            # A peer trickling a body must not hold up aclose() for its body_timeout.
            shutdown_timeout=1.0,
        )
        self._runner = runner  # before any await: a concurrent start() is refused too
        try:
            await runner.setup()
            site = CappedSite(runner, host, port, self._max_connections)
            await site.start()
        except BaseException:
            # Not half started: the next start() (another port, say) must be allowed.
            if self._runner is runner:
                self._runner = None
            await runner.cleanup()
            raise
        if self._public_url is None:
            self.public_url = f"http://{host}:{site.port}{DEFAULT_PATH}"
            self._chosen_url = True

    async def aclose(self) -> None:
        """Stop a receiver started with :meth:`start`; closing a stopped one does nothing."""
        async with self._lock():
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()

    def _lock(self) -> asyncio.Lock:
        # One per event loop: an asyncio.Lock belongs to the loop it first waited in, and a
        # receiver may be reused from another loop (a test's, a second asyncio.run).
        loop = asyncio.get_running_loop()
        if self._lifecycle is None or self._lifecycle[0] is not loop:
            self._lifecycle = (loop, asyncio.Lock())
        return self._lifecycle[1]

    async def __aenter__(self) -> Self:
        """Start the receiver unless it is started or has a ``public_url`` of your own (it is
        then mounted in your app, or you start it yourself)."""
        if self._runner is None and (self._public_url is None or self._chosen_url):
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
            remembered=len(self._running)
            + sum(len(line.pending) + len(line.ended) for line in self._lines.values()),
        )

    def _new_app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post("/{token}", self._handle)
        return app

    # ----------------------------------------------------------------- used by the client

    def _base_url(self) -> str:
        """Where callback URLs start; raises ConfigurationError before the receiver has one."""
        if self._public_url is None:
            raise ConfigurationError(
                "the callback receiver has no public_url: start() it or set public_url"
            )
        return self._public_url

    def _register(self, driver: ProviderDriver, clock: Clock) -> Registration:
        """A fresh callback URL for one submit, timed on ``clock``, the client's clock."""
        base = self._base_url()
        self._sweep()
        nonce = secrets.token_urlsafe(12)
        url = f"{base}/{mint(self._secret, nonce)}"
        registration = Registration(self, driver, nonce, url, clock)
        self._line(clock).pending[nonce] = registration
        return registration

    def _line(self, clock: Clock) -> _Timeline:
        line = self._lines.get(id(clock))
        if line is None:
            line = self._lines[id(clock)] = _Timeline(clock)
        return line

    def _pending(self, nonce: str) -> Registration | None:
        for line in self._lines.values():  # one per clock in use: one, in practice
            if (registration := line.pending.get(nonce)) is not None:
                return registration
        return None

    def _sweep(self) -> None:
        """Forget what is past its time, each clock's registrations by that clock."""
        for key, line in list(self._lines.items()):
            now = line.clock.now()
            for table in (line.pending, line.ended):
                while table and next(iter(table.values())).at <= now - self._early_ttl:
                    table.popitem(last=False)
            while line.suspects and line.suspects[0].at <= now - _CALLBACK_GRACE:
                if not line.suspects.popleft()._heard:
                    self._unheard += 1
            if not line:
                del self._lines[key]  # nor hold a clock no registration uses
        if self._unheard >= _UNHEARD_TO_WARN and not self._reached:
            _log.warning(
                "%d tasks ended by polling and no callback has reached this receiver; "
                "providers are told to call %s/...: check that it is reachable from them "
                "and routed here",
                self._unheard,
                self._public_url,
            )
            self._reached = True  # warn once
            self._forget_suspects()
            self._unheard_warned = True
            for registration in list(self._running.values()):
                registration._unheard()

    def _forget_suspects(self) -> None:
        for line in self._lines.values():
            line.suspects.clear()

    # ----------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        # One callback per connection: a slow second head on a kept-alive connection would only
        # be timed by keepalive_timeout again.
        response.force_close()
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        try:
            nonce = verify(self._secret, request.match_info["token"])
        except WebhookVerificationError:
            self._counts["rejected"] += 1
            return web.Response(status=401, text="invalid callback token")
        self._reached = True  # a URL we minted came back: the route works
        self._unheard_warned = False
        self._forget_suspects()
        if request.content_length is not None and request.content_length > self._max_body:
            self._counts["rejected"] += 1
            return web.Response(status=413, text="callback body too large")
        try:
            async with asyncio.timeout(self._body_timeout):
                body = await self._read(request)
        except TimeoutError:
            self._counts["rejected"] += 1
            return web.Response(status=408, text="callback body too slow")
        if body is None:
            self._counts["rejected"] += 1
            return web.Response(status=413, text="callback body too large")
        if (registration := self._pending(nonce)) is not None:
            # The callback beat the submit's answer: hold it until the task id is known.
            if len(registration._early) < _EARLY_BODIES:
                registration._early.append(body)
            self._counts["early"] += 1
            return web.Response(text="ok")
        if (registration := self._running.get(nonce)) is not None:
            return self._apply(registration, body)
        if any(nonce in line.ended for line in self._lines.values()):
            self._counts["duplicates"] += 1
            return web.Response(text="ok")  # a replay after the end changes nothing
        # Signed by us, but not (or no longer) known: a restart, or a long-finished task.
        self._counts["rejected"] += 1
        return web.Response(status=404, text="unknown callback")

    async def _read(self, request: web.Request) -> bytes | None:
        # read(n) returns what is buffered: a body sent in several writes (chunked, or slow)
        # needs more than one read, else a valid callback looks cut and an oversize one
        # gets 400 instead of 413.
        body = b""
        while len(body) <= self._max_body:
            more = await request.content.read(self._max_body + 1 - len(body))
            if not more:
                return body
            body += more
        return None

    def _apply(self, registration: Registration, body: bytes) -> web.Response:
        try:
            hint = registration._driver.parse_callback(body)
        except BadResponseError:
            self._counts["rejected"] += 1
            return web.Response(status=400, text="unreadable callback")
        if hint.task_id != registration._task_id:
            # A valid token for one task carrying another task's body.
            self._counts["rejected"] += 1
            _log.warning("callback token for one task named another; ignored")
            return web.Response(status=404, text="callback does not match its token")
        registration._heard = True
        on_hint = registration._on_hint
        if on_hint is not None and on_hint(hint.claimed_state):
            self._counts["accepted"] += 1
        else:
            self._counts["duplicates"] += 1
        return web.Response(text="ok")
