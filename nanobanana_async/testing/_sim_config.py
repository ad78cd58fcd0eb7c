"""What a simulator is configured with and what it reports: latency, limits, faults, the
server-side statistics, and one simulated task (no I/O)."""

from __future__ import annotations

import collections
import math
import random

import attrs

from ._wire import Accepted, State


@attrs.frozen(kw_only=True)
class Latency:
    """How long tasks take: lognormal around ``median`` seconds.

    Args:
        median: seconds; default 17.5 (the providers' docs say ~15-20 s for Nano Banana).
        sigma: the lognormal shape; default 0.25.
        queued_fraction: the first part of a task's time it reports as queued.
    """

    median: float = 17.5
    sigma: float = 0.25
    queued_fraction: float = 0.1

    def sample(self, rng: random.Random) -> float:
        """One task's duration in seconds."""
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@attrs.frozen(kw_only=True)
class Faults:
    """Probabilities (0-1) of faults, drawn per request from the simulator's seeded generator.

    Args:
        server_error: answer 500/502/503 instead of handling the request.
        reset: drop the connection before handling the request.
        reset_after_create: create the task, then drop the connection (the ambiguous submit).
        truncated: send fewer bytes than Content-Length promises.
        non_json: answer HTTP 200 with an HTML page.
        slow: wait ``slow_seconds`` before answering.
        unknown_state: report a running task in a state string no client knows.
        body_429: refuse with code 429 in the body and HTTP 200 (crun's style).
        callback_drop: never deliver a task's callback.
        expire_images: result image URLs answer 404 (they expired).
        slow_seconds: the delay of a slow answer.
        kinds: which requests the per-request faults apply to.
    """

    server_error: float = 0.0
    reset: float = 0.0
    reset_after_create: float = 0.0
    truncated: float = 0.0
    non_json: float = 0.0
    slow: float = 0.0
    unknown_state: float = 0.0
    body_429: float = 0.0
    callback_drop: float = 0.0
    expire_images: bool = False
    slow_seconds: float = 5.0
    kinds: frozenset[str] = frozenset({"create", "status"})


@attrs.frozen(kw_only=True)
class ServerLimits:
    """What the simulated account allows; None means unlimited.

    Args:
        requests: accepted requests per sliding window of ``per`` seconds, over all of the key.
        per: the window in seconds (also the window the statistics measure).
        concurrent_tasks: tasks running at once (created and not yet finished).
    """

    requests: int | None = None
    per: float = 60.0
    concurrent_tasks: int | None = None


def _kinds(instance: object, attribute: object, value: frozenset[str]) -> None:
    unknown = sorted(value - {"create", "status", "balance"})
    if unknown or not value:
        raise ValueError(f"kinds must be some of create, status, balance; got {sorted(value)}")


@attrs.frozen(kw_only=True)
class Outage:
    """A scheduled outage of one simulated account, ``start`` to ``end`` seconds after it starts.

    Args:
        start: seconds after the simulator started (a ``Simulators`` group: after the group
            started) when the outage begins; ``>= 0``.
        end: when it ends; ``> start``.
        refuse_connections: False (the default): the server keeps answering, but requests of
            ``kinds`` get the provider's documented maintenance refusal (crun: body code 455;
            the others: HTTP 503), which creates nothing. Only crun's 455 proves that to a
            client: a 503 to a create is an unknown outcome there (the task may exist), so to
            test failover off apixo use refused connections. True: the server stops listening, so
            new connections are refused and idle ones are closed; it listens again at ``end``
            on the same port.
        kinds: the requests a maintenance outage refuses; default creates only.
    """

    start: float = attrs.field(validator=attrs.validators.ge(0.0))
    end: float = attrs.field()
    refuse_connections: bool = False
    kinds: frozenset[str] = attrs.field(default=frozenset({"create"}), validator=_kinds)

    @end.validator
    def _end_after_start(self, attribute: object, value: float) -> None:
        if not value > self.start:
            raise ValueError(f"an outage must end after it starts: start={self.start}, end={value}")

    def covers(self, elapsed: float, kind: str) -> bool:
        """Whether a request of ``kind`` ``elapsed`` seconds after the start is refused."""
        return (
            not self.refuse_connections and kind in self.kinds and self.start <= elapsed < self.end
        )


@attrs.define
class _Task:
    task_id: str
    accepted: Accepted
    params: dict[str, object]
    created: float
    created_wall: float
    start: float
    finish: float
    outcome: State
    origin: str
    checks: int = 0
    seen_done: bool = False
    refused: bool = False


@attrs.define
class SimulatorStats:
    """Server-side accounting. Read it after the run; times are seconds."""

    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)
    rate_limited: int = 0
    rejected: int = 0
    refused: int = 0
    """Requests answered with the provider's maintenance refusal during an ``Outage``."""
    unauthorized: int = 0
    creates: int = 0
    duplicate_creates: int = 0
    max_concurrent: int = 0
    max_window: int = 0
    faults: collections.Counter[str] = attrs.field(factory=collections.Counter)
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    callbacks_dropped: int = 0
    checks: dict[str, int] = attrs.field(factory=dict)
    lags: list[float] = attrs.field(factory=list)
    arrivals: list[float] = attrs.field(factory=list)
    """API request arrival times (loop clock), kept only with ``record_timeline=True``."""
    spans: list[tuple[float, float]] = attrs.field(factory=list)
    """(created, finished) of each task, kept only with ``record_timeline=True``."""

    @property
    def total_requests(self) -> int:
        """All API requests (images excluded)."""
        return sum(n for kind, n in self.requests.items() if kind != "image")

    def checks_per_task(self) -> float:
        """Mean status requests per created task (0 when none was created)."""
        return sum(self.checks.values()) / len(self.checks) if self.checks else 0.0
