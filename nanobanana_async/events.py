"""Typed events: what happens to a task, an account and a router's choices, as frozen values
delivered to ``Client(on_event=)``, ``client.events()`` and ``Task.on_update`` (touches the event
loop only to wake a waiting :class:`EventStream`).

Every event has ``kind`` (a short string), ``provider``, ``at`` (the client's monotonic clock),
``task_id`` where one is known, the caller's ``key`` and, through a Router, the ``account``.
Events never carry the API key or the prompt text. README "Events" lists every kind.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar, Literal

import attrs

from ._errors import (
    APIError,
    BadResponseError,
    ConfigurationError,
    ConnectError,
    NanoBananaError,
    RateLimitError,
    RequestTimeoutError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from ._models import ImageResult, TaskState

if TYPE_CHECKING:
    from ._redact import Secret
    from ._task import Task

__all__ = (
    "Accepted",
    "AccountChosen",
    "AnyEvent",
    "CallbackReceived",
    "Checked",
    "CircuitChanged",
    "Downloaded",
    "Event",
    "EventStream",
    "FailedOver",
    "HedgeSent",
    "LimitsLowered",
    "LimitsRecovered",
    "OutcomeUnknown",
    "RateLimited",
    "Refused",
    "Resolved",
    "Retrying",
    "SlotGranted",
    "Submitted",
    "WaitingForSlot",
)

_log = logging.getLogger("nanobanana_async")


@attrs.frozen(slots=True, kw_only=True)
class Event:
    """What every event carries.

    Attributes:
        kind: a short name of what happened (``submitted``, ``checked``, ``resolved`` …).
        provider: the client's provider name, e.g. ``apixo``.
        at: the client's monotonic clock (``Clock.now()``) when it happened.
        task_id: the provider's task id, where one is known.
        key: the caller's ``submit(key=)`` or bulk key, if any.
        account: the Router's account name; None for a plain Client.
    """

    kind: ClassVar[str] = "event"
    provider: str
    at: float
    task_id: str | None = None
    key: str | None = None
    account: str | None = None


# ----------------------------------------------------------------- task events


@attrs.frozen(slots=True, kw_only=True)
class Submitted(Event):
    """A create is about to be sent (``attempt`` 1 is its first send)."""

    kind: ClassVar[str] = "submitted"
    attempt: int
    model: str
    resolution: str | None


@attrs.frozen(slots=True, kw_only=True)
class Accepted(Event):
    """The provider accepted the create; ``task_id`` is set."""

    kind: ClassVar[str] = "accepted"
    attempt: int


@attrs.frozen(slots=True, kw_only=True)
class Refused(Event):
    """The provider refused a create, or it could not be sent; ``will_retry`` says whether
    this client sends it again."""

    kind: ClassVar[str] = "refused"
    attempt: int
    error: NanoBananaError
    status: int | None
    will_retry: bool


@attrs.frozen(slots=True, kw_only=True)
class OutcomeUnknown(Event):
    """A create may have been accepted; it is never sent again by itself. ``error`` is the
    raised error's copy whose ``request.prompt`` reads ``***``."""

    kind: ClassVar[str] = "outcome_unknown"
    error: SubmitOutcomeUnknownError


@attrs.frozen(slots=True, kw_only=True)
class Checked(Event):
    """A status check answered; ``checks`` counts the checks used so far for the task."""

    kind: ClassVar[str] = "checked"
    state: TaskState
    queue_position: int | None
    checks: int


@attrs.frozen(slots=True, kw_only=True)
class CallbackReceived(Event):
    """A verified callback arrived for the task, claiming ``state`` (a hint, not the truth)."""

    kind: ClassVar[str] = "callback"
    state: TaskState


@attrs.frozen(slots=True, kw_only=True)
class Retrying(Event):
    """A request failed and is sent again after ``delay`` seconds.

    ``cause`` is short: ``"429"``, ``"503"`` (an HTTP status), ``"connect"``, ``"timeout"``,
    ``"reset"``, ``"bad_response"``. ``attempt`` numbers the send that follows: for a create
    or a download, 2 is its first resend; for a status check, the task's check count.
    """

    kind: ClassVar[str] = "retrying"
    operation: Literal["create", "status", "download"]
    cause: str
    delay: float
    attempt: int


@attrs.frozen(slots=True, kw_only=True)
class Resolved(Event):
    """The task ended: ``result`` (without its ``request``: events carry no prompt) or
    ``error``. ``latency`` counts seconds from acceptance; ``checks`` and ``callbacks`` are
    the status checks sent and the verified callbacks received for the task."""

    kind: ClassVar[str] = "resolved"
    result: ImageResult | None
    error: NanoBananaError | None
    latency: float
    checks: int
    callbacks: int


@attrs.frozen(slots=True, kw_only=True)
class Downloaded(Event):
    """An image was fetched (``path`` None when nothing was written)."""

    kind: ClassVar[str] = "downloaded"
    url: str
    path: str | None
    size: int


# ----------------------------------------------------------------- account events


@attrs.frozen(slots=True, kw_only=True)
class RateLimited(Event):
    """The provider answered 429. ``scope``: the request window, the concurrent-task cap, or
    not known."""

    kind: ClassVar[str] = "rate_limited"
    scope: Literal["window", "tasks", "unknown"]
    retry_after: float | None
    operation: Literal["create", "status"]


@attrs.frozen(slots=True, kw_only=True)
class WaitingForSlot(Event):
    """A create starts waiting for a concurrent-task slot (``running`` of ``cap`` taken)."""

    kind: ClassVar[str] = "waiting"
    running: int
    cap: int


@attrs.frozen(slots=True, kw_only=True)
class SlotGranted(Event):
    """A create that waited got its slot after ``waited`` seconds."""

    kind: ClassVar[str] = "slot_granted"
    waited: float


@attrs.frozen(slots=True, kw_only=True)
class LimitsLowered(Event):
    """The account's effective limits went down (learned from its 429s)."""

    kind: ClassVar[str] = "limits_lowered"
    requests: int
    per: float
    concurrent_tasks: int
    reason: str


@attrs.frozen(slots=True, kw_only=True)
class LimitsRecovered(Event):
    """The account's effective limits went back up."""

    kind: ClassVar[str] = "limits_recovered"
    requests: int
    per: float
    concurrent_tasks: int


# ----------------------------------------------------------------- router events


@attrs.frozen(slots=True, kw_only=True)
class AccountChosen(Event):
    """The router chose ``account`` for a create, by ``strategy``."""

    kind: ClassVar[str] = "account_chosen"
    strategy: str


@attrs.frozen(slots=True, kw_only=True)
class FailedOver(Event):
    """A create left ``account`` for ``to_account`` (None: no account left) because of an
    error of type ``reason``."""

    kind: ClassVar[str] = "failover"
    to_account: str | None
    reason: str


@attrs.frozen(slots=True, kw_only=True)
class CircuitChanged(Event):
    """``account``'s circuit breaker changed state."""

    kind: ClassVar[str] = "circuit"
    state: Literal["open", "half_open", "closed"]


@attrs.frozen(slots=True, kw_only=True)
class HedgeSent(Event):
    """A hedge (a second create of a slow task) was sent to ``account``."""

    kind: ClassVar[str] = "hedge"


AnyEvent = (
    Submitted
    | Accepted
    | Refused
    | OutcomeUnknown
    | Checked
    | CallbackReceived
    | Retrying
    | Resolved
    | Downloaded
    | RateLimited
    | WaitingForSlot
    | SlotGranted
    | LimitsLowered
    | LimitsRecovered
    | AccountChosen
    | FailedOver
    | CircuitChanged
    | HedgeSent
)


def _cause(error: BaseException) -> str:
    """The short cause a :class:`Retrying` event names for ``error``."""
    if isinstance(error, RateLimitError):
        return "429"
    if isinstance(error, BadResponseError):
        return "bad_response"
    if isinstance(error, APIError):
        return str(error.status)
    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, RequestTimeoutError):
        return "timeout"
    if isinstance(error, TransportError):
        return "reset"
    return type(error).__name__


def _unknown_without_prompt(error: SubmitOutcomeUnknownError) -> SubmitOutcomeUnknownError:
    """A copy of ``error`` whose request's prompt reads ``***``: events carry no prompt."""
    copy = SubmitOutcomeUnknownError.__new__(type(error))
    copy.args = error.args
    copy.__dict__.update(vars(error))
    copy.request = attrs.evolve(error.request, prompt="***")
    return copy


def _result_without_prompt(result: ImageResult | None) -> ImageResult | None:
    """``result`` without its request: events carry no prompt."""
    if result is None or result.request is None:
        return result
    # Built field by field: attrs.evolve cost twice as much, on every task's end.
    return ImageResult(
        task_id=result.task_id,
        provider=result.provider,
        model=result.model,
        urls=result.urls,
        request=None,
        submitted_at=result.submitted_at,
        completed_at=result.completed_at,
        attempts=result.attempts,
    )


# ----------------------------------------------------------------- delivery


class EventStream:
    """An async iterator over a client's events with a bounded buffer.

    When the buffer is full the oldest event is dropped (``dropped`` counts them): a slow
    consumer never holds up the client. Iteration ends when the client closes or
    :meth:`close` is called (events already buffered are still given).

    Each ``events()`` call is its own stream with every event from then on, so several readers
    each open one. A stream has one reader: a second ``async for`` over the same stream while
    the first waits raises :class:`~nanobanana_async.ConfigurationError` (sharing one would
    hand each event to one of them at random, and leave the other waiting for ever).
    """

    def __init__(self, maxsize: int, unsubscribe: Callable[[], None] | None = None) -> None:
        # Checked at run time too: callers may pass anything.
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:  # type: ignore[redundant-expr]
            raise ConfigurationError("events(maxsize=) must be an int of at least 1")
        self._buffer: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        # The loop its events come from: the one it was opened in, else the first it is read in.
        self._loop = _running_loop()
        self._unsubscribe = unsubscribe
        self._closed = False
        #: events dropped because the buffer was full.
        self.dropped = 0

    @property
    def closed(self) -> bool:
        """True once the stream takes no more events."""
        return self._closed

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.dropped += 1  # the deque drops the oldest itself
        buffer.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop taking events; iteration ends once the buffered ones are read."""
        if self._closed:
            return
        self._closed = True
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._wake()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise ConfigurationError(
                    "this event stream already has a reader: open another client.events() "
                    "for each reader (each gets every event)"
                )
            loop = asyncio.get_running_loop()
            if self._loop is None:
                self._loop = loop
            elif loop is not self._loop:
                # Its client's loop ended (a second asyncio.run): no event can come, and a
                # read would wait for ever.
                raise ConfigurationError(
                    "this event stream belongs to another event loop: open client.events() "
                    "on a Client created inside the running event loop"
                )
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # opened outside a loop: bound by its first read
        return None


def _check_callback(callback: object, what: str) -> None:
    """Refuse what cannot take events: not callable, or a coroutine function, which would be
    called and never awaited (its body would never run).

    Raises:
        ConfigurationError: ``callback`` is either.
    """
    if not callable(callback):
        raise ConfigurationError(f"{what} must be callable")
    if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 (an object with an async __call__)
    ):
        raise ConfigurationError(
            f"{what} must be a plain function: it is called on the event loop, never awaited; "
            "to handle events in a coroutine, iterate events()"
        )


def _unawaited(result: object) -> Exception | None:
    # A plain callback that returned a coroutine (``lambda e: queue.put(e)``): closed here, so
    # no "never awaited" warning comes later from the garbage collector, and said once.
    if inspect.iscoroutine(result):
        result.close()
        return TypeError(
            "it returned a coroutine, which is never awaited; to handle events in a "
            "coroutine, iterate events()"
        )
    return None


def _who(callback: Callable[[Event], object]) -> object:
    """What names a callback in the failures said once: its function's code (a method's, a
    lambda's made anew for each task), else the callable object itself."""
    function = getattr(callback, "__func__", callback)
    code = getattr(function, "__code__", None)
    return code if code is not None else id(callback)


class _Emitter:
    """One client's (or router's) event delivery. ``active`` is True only while something
    listens (a listener here or on a parent, or a task's ``on_update``), so an emission site
    costs one attribute check when nothing does.

    A Router's emitter is the parent of its clients' (:meth:`attach`): their events reach the
    router's listeners too, with the account's name on them.
    """

    __slots__ = (
        "_children",
        "_closed",
        "_fanouts",
        "_listeners",
        "_parents",
        "_secrets",
        "_streams",
        "_warned",
        "_watched",
        "account",
        "active",
        "listening",
        "name",
    )

    def __init__(
        self,
        on_event: Callable[[Event], object] | None = None,
        *,
        secrets: tuple[Secret, ...] = (),
        name: str = "client",
    ) -> None:
        self._listeners: list[Callable[[Event], object]] = []
        self._streams: list[EventStream] = []
        self._parents: list[_Emitter] = []
        self._children: list[_Emitter] = []
        self._fanouts: list[_AccountEvents] = []
        self._secrets = secrets
        self._warned: set[object] = set()
        self._watched = 0  # tasks with on_update callbacks, not yet resolved
        self._closed = False
        self.name = name
        #: set by a Router for the clients it routes through (None: a plain client).
        self.account: str | None = None
        #: something takes every event (a listener here or on a parent).
        self.listening = False
        #: something takes an event now: ``listening``, or a task's ``on_update``.
        self.active = False
        if on_event is not None:
            self._listeners.append(on_event)
        self._refresh()

    def _refresh(self) -> None:
        # Runs only when a listener comes or goes: the emission sites read the flags.
        self.listening = bool(self._listeners) or any(p.listening for p in self._parents)
        self.active = self.listening or self._watched > 0
        for fanout in self._fanouts:
            fanout.refresh()
        for child in self._children:
            child._refresh()

    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Deliver every event to ``callback`` (internal listeners: the OpenTelemetry bridge).
        Returns the callable that stops it."""
        self._listeners.append(callback)
        self._refresh()

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)
                self._refresh()

        return unsubscribe

    def attach(self, parent: _Emitter) -> Callable[[], None]:
        """Deliver this emitter's events to ``parent``'s listeners too (a Router's); returns
        the callable that stops it."""
        self._parents.append(parent)
        parent._children.append(self)
        self._refresh()

        def detach() -> None:
            if parent in self._parents:
                self._parents.remove(parent)
                parent._children.remove(self)
                self._refresh()

        return detach

    def watch(self) -> None:
        """A task got an ``on_update`` callback: emit until :meth:`unwatch`."""
        self._watched += 1
        self.active = True

    def unwatch(self) -> None:
        """A watched task ended."""
        self._watched -= 1
        self.active = self.listening or self._watched > 0

    def stream(self, maxsize: int) -> EventStream:
        """A new :class:`EventStream` of the events from now on."""
        stream = EventStream(maxsize)
        if self._closed:
            stream.close()  # the client closed: nothing more will come
            return stream
        stream._unsubscribe = self.subscribe(stream._put)
        self._streams.append(stream)
        return stream

    def emit(self, event: Event, task: Task | None = None) -> None:
        """Deliver ``event`` to every listener, the parents' too, and to ``task``'s
        ``on_update`` callbacks; a listener's exception is logged once, never raised."""
        self._deliver(event)
        if task is not None:
            task._notify(event)

    def _deliver(self, event: Event) -> None:
        for listener in tuple(self._listeners):
            try:
                result = listener(event)
            except Exception as exc:
                self._failed(exc, listener)
                continue
            if result is not None and (wrong := _unawaited(result)) is not None:
                self._failed(wrong, listener)
        for parent in self._parents:
            if parent.listening:
                parent._deliver(event)

    def _failed(self, exc: Exception, callback: Callable[[Event], object]) -> None:
        # Once per callback: a broken callback on every event would flood the log, and one
        # listener's failure (the OpenTelemetry bridge's) must not hide another's (the user's).
        # A callback is known by its code: ``on_update(lambda e: ...)`` on each of a batch's
        # tasks is one callback, said once.
        who = _who(callback)
        if who in self._warned:
            return
        self._warned.add(who)
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = secret.redact(text)
        _log.warning("an event callback of %s raised (%s); events go on", self.name, text)

    def close(self) -> None:
        """End every open stream and leave the account's events (the client closes)."""
        self._closed = True
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
        for fanout in list(self._fanouts):
            fanout.remove(self)


class _AccountEvents:
    """An account's events (429s, slot waits, limits): delivered to every client of that
    account on the loop. ``active`` is True while one of them listens."""

    __slots__ = ("_emitters", "active", "provider")

    def __init__(self) -> None:
        self._emitters: list[_Emitter] = []
        self.active = False
        self.provider = ""

    def add(self, emitter: _Emitter, provider: str) -> None:
        """``emitter``'s client uses this account."""
        self.provider = provider
        if emitter not in self._emitters:
            self._emitters.append(emitter)
            emitter._fanouts.append(self)
        self.refresh()

    def remove(self, emitter: _Emitter) -> None:
        """``emitter``'s client closed."""
        if emitter in self._emitters:
            self._emitters.remove(emitter)
            emitter._fanouts.remove(self)
        self.refresh()

    def refresh(self) -> None:
        """Recompute ``active`` (a client's listeners changed)."""
        self.active = any(e.listening for e in self._emitters)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every listening client, with its Router account name."""
        # While the copies go out, _account_origin() names the one event they copy: a
        # listener shared by several of these clients (one Telemetry) counts it once.
        previous, _fanout.origin = _fanout.origin, event
        try:
            for emitter in tuple(self._emitters):
                if emitter.listening:
                    named = event
                    if emitter.account is not None:
                        named = attrs.evolve(event, account=emitter.account)
                    emitter.emit(named)
        finally:
            _fanout.origin = previous


class _Fanout(threading.local):
    origin: Event | None = None


_fanout = _Fanout()


def _account_origin(event: Event) -> Event:
    """The account event that ``event`` is a client's copy of (``event`` itself when it is
    not being delivered to an account's clients)."""
    origin = _fanout.origin
    return event if origin is None else origin
