"""A submit's callback registration, and the per-clock tables that age registrations (no I/O).

The receiver (:mod:`._receiver`) owns the tables; a registration moves itself between them as
its submit is accepted, its task ends, or its submit fails.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._clock import Clock
    from .._models import TaskState
    from ..providers import ProviderDriver
    from ._receiver import CallbackReceiver

_Table = collections.OrderedDict[str, "Registration"]


class Registration:
    """One submit's callback URL, from before the submit until the task ends.

    The client binds it to the task once the provider accepts the submit, tells it when the task
    ends, or discards it when the submit fails. The receiver never sees the scheduler: a verified
    callback for a running task calls ``on_hint`` with the state it claims, which makes the
    task's check due now and says whether that check came sooner than planned. Its times are
    read on ``clock``, the clock of the client that made it, and only ever compared with that
    clock.
    """

    __slots__ = (
        "_clock",
        "_driver",
        "_early",
        "_heard",
        "_nonce",
        "_on_hint",
        "_on_unheard",
        "_receiver",
        "_task_id",
        "at",
        "url",
    )

    def __init__(
        self, receiver: CallbackReceiver, driver: ProviderDriver, nonce: str, url: str, clock: Clock
    ) -> None:
        self._receiver = receiver
        self._driver = driver
        self._nonce = nonce
        self._clock = clock
        self._task_id: str | None = None
        self._on_hint: Callable[[TaskState], bool] | None = None
        self._on_unheard: Callable[[], None] | None = None
        self._early: list[bytes] = []
        self._heard = False
        self.url = url
        self.at = clock.now()  # when registered, then when ended

    def bind(
        self,
        task_id: str,
        on_hint: Callable[[TaskState], bool],
        on_unheard: Callable[[], None] | None = None,
    ) -> None:
        """The provider accepted the submit as ``task_id``; callbacks now mean that task.

        ``on_unheard`` is called if the receiver concludes, while the task runs, that no
        callback reaches it (the task is then polled as without callbacks).
        """
        receiver = self._receiver
        # Even if the pending token was swept (a submit that waited past early_ttl), the
        # provider has its URL: remember it again for the task's life.
        if (line := receiver._lines.get(id(self._clock))) is not None:
            line.pending.pop(self._nonce, None)
        receiver._running[self._nonce] = self
        self._task_id, self._on_hint, self._on_unheard = task_id, on_hint, on_unheard
        for body in self._early:
            self._receiver._apply(self, body)
        self._early.clear()

    def finished(self, *, seen_ended: bool) -> None:
        """The task ended; ``seen_ended``: as the provider reported it (a result or its own
        failure), so a callback was due, rather than by a deadline or a close."""
        receiver = self._receiver
        self._on_hint = self._on_unheard = None
        self.at = self._clock.now()
        if receiver._running.pop(self._nonce, None) is not None:
            line = receiver._line(self._clock)
            line.ended[self._nonce] = self
            if seen_ended and not self._heard and not receiver._reached:
                line.suspects.append(self)
        receiver._sweep()

    def expects_callback(self) -> bool:
        """Whether a callback is likely to come: False after the receiver warned that none
        reaches it, until one does."""
        return not self._receiver._unheard_warned

    def _unheard(self) -> None:
        if self._on_unheard is not None:
            self._on_unheard()

    def discard(self) -> None:
        """The submit failed: nothing will call back for it."""
        if (line := self._receiver._lines.get(id(self._clock))) is not None:
            line.pending.pop(self._nonce, None)


class _Timeline:
    """The registrations whose times were read on one clock, each stage in time order.

    Clients on different clocks (a FakeClock and the real one, two FakeClocks) may share a
    receiver; a time read on one clock means nothing on another, so each clock's registrations
    are aged on their own.
    """

    __slots__ = ("clock", "ended", "pending", "suspects")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: _Table = collections.OrderedDict()
        self.ended: _Table = collections.OrderedDict()
        # Tasks seen ended by polling whose callback may still be on its way.
        self.suspects: collections.deque[Registration] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self.pending or self.ended or self.suspects)
