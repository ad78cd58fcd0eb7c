"""The simulator's books, free of HTTP: the windows of arrivals and of admitted requests its
limits count, the tasks running at once, the fault drawn for a request, and every task it
created, with the state and the view its answers show (no I/O; ``now`` is the loop's clock).

The configuration (limits, faults, latency) and the statistics are passed in on each call, not
kept: they are the simulator's public attributes, and a caller may replace them between calls.
"""

from __future__ import annotations

import collections
import heapq
import json
import math
import random
import time
from typing import Final

from ._sim_config import Faults, Latency, ServerLimits, SimulatorStats, _Task
from ._wire import Accepted, State, TaskView

_MARKER_POLICY: Final = "[[policy]]"
_MARKER_FAIL: Final = "[[fail]]"
_MARKER_STUCK: Final = "[[stuck]]"
_MARKER_REFUSED: Final = "[[refused]]"


class Book:
    """Every task a simulator created and the request windows its limits count."""

    def __init__(self, rng: random.Random, *, record_timeline: bool) -> None:
        self.tasks: dict[str, _Task] = {}
        self._rng = rng
        self._record_timeline = record_timeline
        self._fingerprints: set[str] = set()
        self._window: collections.deque[float] = collections.deque()  # every arrival
        self._accepted: collections.deque[float] = collections.deque()  # what the limit counts
        self._running: list[float] = []  # heap of finish times of unfinished tasks

    def count(self, kind: str, now: float, per: float, stats: SimulatorStats) -> None:
        """Count one arrival of an API request of ``kind``."""
        # The statistic counts every arrival: it is what proves a client kept the limit.
        stats.requests[kind] += 1
        if self._record_timeline:
            stats.arrivals.append(now)
        self._window.append(now)
        horizon = now - per
        while self._window and self._window[0] <= horizon:
            self._window.popleft()
        stats.max_window = max(stats.max_window, len(self._window))

    def admit(self, now: float, limits: ServerLimits) -> bool:
        """Whether the account's request limit lets one more request in (and count it if so)."""
        # The limit counts accepted requests only, as a provider's limiter does; counting
        # refusals too would lock out a client that retries after its Retry-After.
        if limits.requests is None:
            return True
        horizon = now - limits.per
        while self._accepted and self._accepted[0] <= horizon:
            self._accepted.popleft()
        if len(self._accepted) >= limits.requests:
            return False
        self._accepted.append(now)
        return True

    def active(self, now: float) -> int:
        """How many created tasks are not finished at ``now``."""
        while self._running and self._running[0] <= now:
            heapq.heappop(self._running)
        return len(self._running)

    def retry_after(self, now: float, per: float) -> float:
        """Seconds until the request window admits again."""
        if not self._accepted:
            return 1.0
        return max(0.001, self._accepted[0] + per - now)

    def draw(self, kind: str, faults: Faults, stats: SimulatorStats) -> str | None:
        """The per-request fault to inject into a request of ``kind``, if any."""
        f = faults
        if kind not in f.kinds:
            return None
        for name, rate in (
            ("reset", f.reset),
            ("server_error", f.server_error),
            ("body_429", f.body_429),
            ("non_json", f.non_json),
            ("truncated", f.truncated),
            ("slow", f.slow),
        ):
            if rate and self._rng.random() < rate:
                stats.faults[name] += 1
                return name
        if kind == "create" and f.reset_after_create and self._rng.random() < f.reset_after_create:
            stats.faults["reset_after_create"] += 1
            return "reset_after_create"
        return None

    def record_fingerprint(
        self, route: str, model: str, body: object, stats: SimulatorStats
    ) -> None:
        """Count a create that asks for the same image as an earlier one as a duplicate."""
        params = dict(body) if isinstance(body, dict) else {}
        # A callback URL may carry a per-task token; the same image asked twice is a duplicate.
        for key in ("callback_url", "callBackUrl", "request_type"):
            params.pop(key, None)
        fingerprint = json.dumps([route, model, params], sort_keys=True)
        if fingerprint in self._fingerprints:
            stats.duplicate_creates += 1
        self._fingerprints.add(fingerprint)

    def new_task(
        self,
        accepted: Accepted,
        body: object,
        now: float,
        origin: str,
        latency: Latency,
        stats: SimulatorStats,
        *,
        refused: bool = False,
    ) -> _Task:
        """Create a task; its outcome follows the prompt's markers, its duration ``latency``."""
        duration = 0.0 if refused else latency.sample(self._rng)
        prompt = accepted.prompt
        outcome: State = "success"
        if refused or _MARKER_POLICY in prompt:
            outcome = "policy"
        elif _MARKER_FAIL in prompt:
            outcome = "failed"
        finish = now + duration
        if _MARKER_STUCK in prompt:
            # "queued" as an outcome means: never leaves the running phase.
            outcome, finish = "queued", math.inf
        task_id = f"{self._rng.getrandbits(64):016x}{len(self.tasks):06d}"
        task = _Task(
            task_id=task_id,
            accepted=accepted,
            params=dict(body) if isinstance(body, dict) else {},
            created=now,
            created_wall=time.time(),
            start=now + duration * latency.queued_fraction,
            finish=finish,
            outcome=outcome,
            origin=origin,
            refused=refused,
        )
        self.tasks[task_id] = task
        heapq.heappush(self._running, finish)
        if self._record_timeline:
            stats.spans.append((now, finish))
        return task


def task_state(task: _Task, now: float) -> State:
    """The state a task is in at ``now``."""
    if now >= task.finish:
        return task.outcome
    if now < task.start:
        return "queued"
    return "running"


def task_view(task: _Task, state: State) -> TaskView:
    """What an answer about ``task`` in ``state`` may show."""
    finished = None
    if math.isfinite(task.finish):
        finished = task.created_wall + (task.finish - task.created)
    return TaskView(
        task_id=task.task_id,
        model=task.accepted.model,
        endpoint=task.accepted.endpoint,
        state=state,
        created_wall=task.created_wall,
        finished_wall=finished,
        image_url=f"{task.origin}/files/{task.task_id}.png",
        params=task.params,
    )
