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
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar, Literal

import attrs

from ._errors import ConfigurationError, NanoBananaError, SubmitOutcomeUnknownError
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

    ``cause`` is short: ``"429"``, ``"503"``, ``"connect"``, ``"timeout"``, ``"reset"``,
    ``"bad_response"``.
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
    return attrs.evolve(result, request=None)


# ----------------------------------------------------------------- delivery


class EventStream:
    """An async iterator over a client's events with a bounded buffer.

    When the buffer is full the oldest event is dropped (``dropped`` counts them): a slow
    consumer never holds up the client. Iteration ends when the client closes or
    :meth:`close` is called (events already buffered are still given).
    """

    def __init__(self, maxsize: int, unsubscribe: Callable[[], None] | None = None) -> None:
        # Checked at run time too: callers may pass anything.
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:  # type: ignore[redundant-expr]
            raise ConfigurationError("events(maxsize=) must be an int of at least 1")
        self._buffer: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
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
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()


class _Emitter:
    """One client's (or router's) event delivery. ``active`` is True only while something
    listens, so an emission site costs one attribute check when nothing does."""

    __slots__ = (
        "_closed",
        "_listeners",
        "_secret",
        "_streams",
        "_warned",
        "_watched",
        "account",
        "active",
        "name",
    )

    def __init__(
        self,
        on_event: Callable[[Event], object] | None = None,
        *,
        secret: Secret | None = None,
        name: str = "client",
    ) -> None:
        self._listeners: list[Callable[[Event], object]] = []
        self._streams: list[EventStream] = []
        self._secret = secret
        self._warned = False
        self._watched = 0  # tasks with on_update callbacks, not yet resolved
        self._closed = False
        self.name = name
        #: set by a Router for the clients it routes through (None: a plain client).
        self.account: str | None = None
        self.active = False
        if on_event is not None:
            self._listeners.append(on_event)
            self.active = True

    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Deliver every event to ``callback`` (internal listeners: the OpenTelemetry bridge,
        a Router). Returns the callable that stops it."""
        self._listeners.append(callback)
        self.active = True

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)
            self.active = bool(self._listeners) or self._watched > 0

        return unsubscribe

    def watch(self) -> None:
        """A task got an ``on_update`` callback: emit until :meth:`unwatch`."""
        self._watched += 1
        self.active = True

    def unwatch(self) -> None:
        """A watched task ended."""
        self._watched -= 1
        self.active = bool(self._listeners) or self._watched > 0

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
        """Deliver ``event`` to every listener (and to ``task``'s ``on_update`` callbacks);
        a listener's exception is logged once, never raised."""
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception as exc:
                self._failed(exc)
        if task is not None:
            task._notify(event)

    def _failed(self, exc: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        text = f"{type(exc).__name__}: {exc}"
        if self._secret is not None:
            text = self._secret.redact(text)
        # Once per client: a broken callback on every event would flood the log.
        _log.warning("an event callback of %s raised (%s); events go on", self.name, text)

    def close(self) -> None:
        """End every open stream (the client closes)."""
        self._closed = True
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
