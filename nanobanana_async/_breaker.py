"""The circuit breaker of one account in a Router: when to stop sending it creates, and when to
try it again (pure, no I/O; time and randomness are passed in).

It counts provider faults only (5xx, maintenance refusals, connections that failed, tasks that
failed to generate). A 429 is the ledger's business and a refused prompt is the caller's: neither
says the provider is down, so neither is recorded here.

States: *closed* (creates go), *open* (none go until the cooldown ends), *half-open* (exactly one
create goes, the probe; its success closes the circuit, its fault opens it again for twice the
cooldown, up to ``max_cooldown``). The numbers are a :class:`CircuitPolicy`.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Callable
from typing import Any, Final

import attrs

from ._config import _positive
from ._errors import ConfigurationError

CONSECUTIVE: Final = 5  # faults in a row that open the circuit
MIN_ATTEMPTS: Final = 20  # attempts in the window before the share rule applies
FAULT_SHARE: Final = 0.5  # of the attempts in the window, with MIN_ATTEMPTS or more
WINDOW: Final = 60.0  # seconds of attempts the share rule looks at
COOLDOWN: Final = 30.0  # seconds open before the first half-open
MAX_COOLDOWN: Final = 300.0  # the cooldown doubles after each failed probe, up to this
JITTER: Final = 0.2  # the cooldown is drawn from ±20 % around its value


def _count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def _ratio(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class CircuitPolicy:
    """When a :class:`Router` stops sending an account creates, and when it tries it again.

    The defaults suit a long run; a batch shorter than ``cooldown`` never gets an account back
    after an outage, so short runs want a short cooldown (a few seconds).

    Args:
        failures: provider faults in a row that open the circuit. Default 5.
        window: seconds of attempts the share rule looks at. Default 60.
        ratio: the circuit opens when at least this share of ``min_attempts`` or more
            attempts in ``window`` failed. Default 0.5.
        min_attempts: attempts in ``window`` before the share rule applies. Default 20.
        cooldown: seconds open before one create probes the account (jittered ±20 %).
            Default 30.
        max_cooldown: each failed probe doubles the cooldown, up to this. Default 300.

    Raises:
        ConfigurationError: a value that is not positive, a ``ratio`` above 1, counts that
            are not whole numbers, or ``max_cooldown`` below ``cooldown``.
    """

    failures: int = attrs.field(default=CONSECUTIVE, validator=_count)
    window: float = attrs.field(default=WINDOW, validator=_positive)
    ratio: float = attrs.field(default=FAULT_SHARE, validator=_ratio)
    min_attempts: int = attrs.field(default=MIN_ATTEMPTS, validator=_count)
    cooldown: float = attrs.field(default=COOLDOWN, validator=_positive)
    max_cooldown: float = attrs.field(default=MAX_COOLDOWN, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.max_cooldown < self.cooldown:
            raise ConfigurationError(
                f"max_cooldown ({self.max_cooldown!r}) must be at least cooldown "
                f"({self.cooldown!r})"
            )


class Circuit(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Breaker:
    """One account's circuit.

    Args:
        random: floats in [0, 1) that jitter each cooldown, so accounts (and processes) that
            opened together do not all probe at the same instant.
        policy: the thresholds and cooldowns (default: :class:`CircuitPolicy`'s).
    """

    def __init__(self, random: Callable[[], float], policy: CircuitPolicy | None = None) -> None:
        self._random = random
        self.policy = policy = policy or CircuitPolicy()
        self.state = Circuit.CLOSED
        self._recent: collections.deque[tuple[float, bool]] = collections.deque()
        self._consecutive = 0
        self._cooldown = policy.cooldown
        self._reopen_at = math.inf
        self._probing = False
        self.opened = 0  # times the circuit opened (statistics)

    def ready_at(self, now: float) -> float:
        """When a create may go: ``now`` when it may now, ``inf`` while a probe is out."""
        if self.state is Circuit.CLOSED:
            return now
        if self.state is Circuit.OPEN:
            return max(now, self._reopen_at)
        return math.inf if self._probing else now

    def allow(self, now: float) -> bool:
        """Take the right to send one create now; False when the circuit holds it back.

        An open circuit whose cooldown ended turns half-open here and lets this one create
        through as its probe; every other caller is held back until the probe's outcome.
        """
        if self.state is Circuit.CLOSED:
            return True
        if self.state is Circuit.OPEN:
            if now < self._reopen_at:
                return False
            self.state = Circuit.HALF_OPEN
        if self._probing:
            return False
        self._probing = True
        return True

    def succeeded(self, now: float) -> None:
        """A task finished, or the half-open probe was accepted: the provider works. Closes a
        half-open circuit; an open one waits for its probe (tasks accepted before an outage
        may still finish during it)."""
        self._note(now, fault=False)
        self._consecutive = 0
        if self.state is Circuit.HALF_OPEN:
            self.state = Circuit.CLOSED
            self._probing = False
            self._cooldown = self.policy.cooldown
            self._recent.clear()

    def failed(self, now: float) -> None:
        """A provider fault: opens the circuit after ``policy.failures`` in a row, or when at
        least ``policy.ratio`` of ``policy.min_attempts`` or more attempts in the last
        ``policy.window`` s failed; a failed probe opens it again for twice the cooldown."""
        policy = self.policy
        self._note(now, fault=True)
        self._consecutive += 1
        if self.state is Circuit.HALF_OPEN:
            self._cooldown = min(policy.max_cooldown, self._cooldown * 2)
            self._open(now)
            return
        if self.state is Circuit.OPEN:
            return  # a create let through before the circuit opened
        attempts = len(self._recent)
        faults = sum(1 for _, fault in self._recent if fault)
        if self._consecutive >= policy.failures or (
            attempts >= policy.min_attempts and faults >= policy.ratio * attempts
        ):
            self._open(now)

    @property
    def reopen_at(self) -> float:
        """When an open circuit half-opens."""
        return self._reopen_at

    @property
    def cooldown(self) -> float:
        """The cooldown the circuit opens (or opened) for."""
        return self._cooldown

    def hold_open(self, until: float, cooldown: float, now: float) -> None:
        """Another process opened this account's circuit until ``until`` (shared through the
        coordinator): stay open as long, and double from its ``cooldown``. A probe of this
        process already out decides for itself."""
        if until <= now or self._probing:
            return
        self._cooldown = max(self._cooldown, min(self.policy.max_cooldown, cooldown))
        if self.state is Circuit.OPEN and self._reopen_at >= until:
            return
        self.state = Circuit.OPEN
        self._reopen_at = until

    def released(self) -> None:
        """The probe ended in an answer that says nothing of the provider (a 429, a refused
        prompt): the next create may probe instead."""
        self._probing = False

    def _open(self, now: float) -> None:
        self.state = Circuit.OPEN
        self._probing = False
        self.opened += 1
        spread = 1.0 + JITTER * (2.0 * self._random() - 1.0)
        self._reopen_at = now + self._cooldown * spread

    def _note(self, now: float, *, fault: bool) -> None:
        self._recent.append((now, fault))
        while self._recent and self._recent[0][0] <= now - self.policy.window:
            self._recent.popleft()
