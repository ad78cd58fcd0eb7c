"""What the runner keeps per account and per client: the account's shared counters and
check pressure, a client's connection, and a tracked task (no I/O)."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import attrs

from .._backoff import RetryBudget
from .._clock import Clock
from .._config import RetryPolicy, Timeouts
from .._models import TaskRef
from .._task import Task
from .._transport import Transport, endpoint
from ..events import _Emitter
from ..providers import ProviderDriver
from ._ledger import Lease, Ledger
from ._plan import Entry

_PRESSURE_RISE: Final = 0.5  # per second while checks wait for request slots
_PRESSURE_FALL: Final = 1.0  # per second while slots go unused: relax faster than tighten
# Never denser than the plan: idle budget is not free (issue 22, item 5). At 0.5 a large budget
# made every task's checks twice as dense, on top of the spare checks the runner pulls forward;
# those alone now spend it, each at a gap relative to the task's learned latency.
_PRESSURE_MIN: Final = 1.0
_PRESSURE_MAX: Final = 3.0


class Account:
    """One provider and key on one event loop: its ledger, and the checks waiting to be sent."""

    def __init__(self, ledger: Ledger, policy: RetryPolicy, clock: Clock) -> None:
        self.ledger = ledger
        # Every client of the account on the loop hears its 429s, slot waits and limits.
        self.events = ledger.events
        ledger.slots.events = ledger.events
        self.budget = RetryBudget(policy)
        self.entries: set[Tracked] = set()
        # Checks that are due but wait for a free request slot, oldest due first.
        self.ready: collections.deque[Tracked] = collections.deque()
        # The earliest deadline among them (inf: none): the runner expires them then.
        self.ready_deadline = math.inf
        self.pressure = 1.0
        self._pressure_at = clock.now()
        self.rate_limited = 0
        self.checks = 0
        self.tracked = 0
        self.limits_known = False

    @property
    def spends_spare(self) -> bool:
        """Whether idle requests may go to earlier checks: only when the limits are known,
        stated by the caller or learned from the account's 429s. With assumed defaults the
        account may be smaller than they say (F36): an idle-looking request would only reach
        its real window sooner."""
        ledger = self.ledger
        return self.limits_known or ledger.effective != ledger.configured

    def update_pressure(self, now: float, *, backlogged: bool) -> None:
        """Move ``pressure`` towards sparser checks while checks wait for request slots, and
        back to the plan (twice as fast) while slots go unused."""
        elapsed = min(1.0, max(0.0, now - self._pressure_at))
        self._pressure_at = now
        rate = _PRESSURE_RISE if backlogged else -_PRESSURE_FALL
        pressure = self.pressure * math.exp(rate * elapsed)
        self.pressure = min(_PRESSURE_MAX, max(_PRESSURE_MIN, pressure))


@attrs.define(eq=False, kw_only=True)
class Connection:
    """What one client brings: how to reach its provider and what to resolve.

    Attributes:
        base_url: the provider's base URL as configured (the transport's own, when it has
            one, wins: see :meth:`group`).
    """

    driver: ProviderDriver
    transport: Transport
    base_url: str
    account: Account
    policy: RetryPolicy
    timeouts: Timeouts
    wall_clock: Callable[[], float]
    random: Callable[[], float]
    entries: set[Tracked] = attrs.field(factory=set)
    closing: bool = False  # its client is closing: no check of its tasks is sent any more
    # The client's events: every emission site checks ``emitter.active`` first.
    emitter: _Emitter = attrs.field(factory=_Emitter)
    _groups: dict[str, tuple[str, str, str]] = attrs.field(factory=dict, init=False)

    def group(self, model: str) -> tuple[str, str, str]:
        """The latency model a task of ``model`` belongs to: (provider, base URL, model id).

        The URL is part of it because another endpoint is another server, with other
        latencies. The transport's own URL comes first: the ``local`` provider's simulator
        only gets its port when it starts.
        """
        url = endpoint(self.transport, self.base_url)
        # One tuple per model, kept: asked for every task tracked (a new URL makes a new one).
        group = self._groups.get(model)
        if group is None or group[1] != url:
            spec = self.driver.model_spec(model)
            group = (self.driver.name, url, spec.wire_id if spec is not None else model)
            self._groups[model] = group
        return group


class CheckRunner(Protocol):
    """Sends a tracked task's due check in the task that awaits it (the runner)."""

    def check_here(self, entry: Tracked) -> Coroutine[Any, Any, None]: ...

    def give_back(self, entry: Tracked) -> None: ...


@attrs.define(eq=False, kw_only=True)
class Tracked(Entry[Task]):
    """A task as the runner sees it: its plan entry (the payload is the caller's Task) and what
    it is checked and resolved with, in one slotted object per task."""

    ref: TaskRef
    conn: Connection
    lease: Lease | None
    submitted_wall: float
    runner: CheckRunner  # its scheduler: a check handed to its caller is sent through it
    callbacks: int = 0  # verified callbacks received (the Resolved event says how many)

    def run_here(self) -> Coroutine[Any, Any, None]:
        """Its due check, sent in the calling task (the caller the check was handed to)."""
        return self.runner.check_here(self)

    def give_back(self) -> None:
        """The caller its check was handed to left before sending it."""
        self.runner.give_back(self)

    @property
    def task(self) -> Task:
        """The caller's handle, resolved when the task ends."""
        return self.payload
