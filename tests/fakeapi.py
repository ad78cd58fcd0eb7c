"""An in-memory apixo-protocol server for ScriptedTransport: tasks finish on the fake clock."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import attrs

from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response


@attrs.define
class FakeTask:
    task_id: str
    finish: float
    outcome: str = "success"
    checks: int = 0
    seen_done_at: float | None = None
    callback_url: str | None = None


class FakeApixo:
    """Answers apixo submits and status checks; hooks let a test inject faults per request."""

    def __init__(self, clock: FakeClock, latency: Callable[[int], float] = lambda i: 12.0) -> None:
        self.clock = clock
        self.latency = latency
        self.tasks: dict[str, FakeTask] = {}
        self.log: list[tuple[float, str]] = []
        self.hook: Callable[[HttpRequest], HttpResponse | BaseException | None] | None = None
        self.callback_urls: list[str] = []  # of the creates answered, in order

    def __call__(self, request: HttpRequest) -> HttpResponse | BaseException:
        self.log.append((self.clock.now(), request.kind))
        if self.hook is not None:
            answer = self.hook(request)
            if answer is not None:
                return answer
        if request.kind == "submit":
            return self.create(request)
        return self.status(request)

    def create(self, request: HttpRequest) -> HttpResponse:
        task_id = f"t{len(self.tasks)}"
        body = request.json
        assert isinstance(body, dict)
        prompt = body["input"]["prompt"]
        outcome = (
            "stuck" if "[[stuck]]" in prompt else "failed" if "[[fail]]" in prompt else "success"
        )
        callback_url = body.get("callback_url")
        self.tasks[task_id] = FakeTask(
            task_id,
            self.clock.now() + self.latency(len(self.tasks)),
            outcome,
            callback_url=callback_url,
        )
        if callback_url is not None:
            self.callback_urls.append(callback_url)
        return json_response({"code": 200, "message": "success", "data": {"taskId": task_id}})

    def status(self, request: HttpRequest) -> HttpResponse:
        task = self.tasks[request.params["taskId"]]
        task.checks += 1
        now = self.clock.now()
        data: dict[str, object] = {"taskId": task.task_id, "state": "processing"}
        if now >= task.finish and task.outcome != "stuck":
            if task.seen_done_at is None:
                task.seen_done_at = now
            if task.outcome == "success":
                data = {
                    "taskId": task.task_id,
                    "state": "success",
                    "resultJson": json.dumps(
                        {"resultUrls": [f"https://img.test/{task.task_id}.png"]}
                    ),
                }
            else:
                data = {
                    "taskId": task.task_id,
                    "state": "failed",
                    "failCode": "GENERATION_FAILED",
                    "failMsg": "it broke",
                }
        return json_response({"code": 200, "message": "success", "data": data})

    def count(self, kind: str) -> int:
        return sum(1 for _, k in self.log if k == kind)


class LimitedApixo(FakeApixo):
    """A FakeApixo account with limits: a sliding window of accepted requests and a cap on
    running tasks, each answered with 429 and a Retry-After, as the simulator does."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        requests: int,
        per: float,
        cap: int,
        latency: Callable[[int], float] = lambda i: 12.0,
    ) -> None:
        super().__init__(clock, latency)
        self.requests, self.per, self.cap = requests, per, cap
        self.accepted: list[float] = []
        self.rate_limited = 0
        self.limited_at: list[float] = []  # when each 429 was answered
        self.max_running = 0
        self.max_window = 0

    def running(self) -> int:
        now = self.clock.now()
        return sum(1 for t in self.tasks.values() if t.outcome == "stuck" or t.finish > now)

    def __call__(self, request: HttpRequest) -> HttpResponse | BaseException:
        now = self.clock.now()
        self.accepted = [t for t in self.accepted if t > now - self.per]
        if len(self.accepted) >= self.requests:
            return self._too_many(now)
        self.accepted.append(now)
        self.max_window = max(self.max_window, len(self.accepted))
        if request.kind == "submit" and self.running() >= self.cap:
            self.log.append((now, request.kind))
            return self._too_many(now)
        answer = super().__call__(request)
        self.max_running = max(self.max_running, self.running())
        return answer

    def _too_many(self, now: float) -> HttpResponse:
        self.rate_limited += 1
        self.limited_at.append(now)
        wait = max(0.001, self.accepted[0] + self.per - now) if self.accepted else 1.0
        return json_response(
            {"code": 429, "message": "Rate limit exceeded", "data": None},
            status=429,
            headers={"retry-after-ms": str(math.ceil(wait * 1000))},
        )
