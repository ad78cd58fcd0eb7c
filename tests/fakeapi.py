"""An in-memory apixo-protocol server for ScriptedTransport: tasks finish on the fake clock."""

from __future__ import annotations

import json
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


class FakeApixo:
    """Answers apixo submits and status checks; hooks let a test inject faults per request."""

    def __init__(self, clock: FakeClock, latency: Callable[[int], float] = lambda i: 12.0) -> None:
        self.clock = clock
        self.latency = latency
        self.tasks: dict[str, FakeTask] = {}
        self.log: list[tuple[float, str]] = []
        self.hook: Callable[[HttpRequest], HttpResponse | BaseException | None] | None = None

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
        self.tasks[task_id] = FakeTask(
            task_id, self.clock.now() + self.latency(len(self.tasks)), outcome
        )
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
