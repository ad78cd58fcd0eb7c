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


@attrs.define
class SimulatorStats:
    """Server-side accounting. Read it after the run; times are seconds."""

    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)
    rate_limited: int = 0
    rejected: int = 0
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
