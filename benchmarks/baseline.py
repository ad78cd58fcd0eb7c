"""The client a careful user writes from apixo's docs: a coroutine per prompt.

Submit, sleep ~10 s (scaled), poll every 3 s (scaled), a semaphore of the concurrent-task
limit, and on a 429 sleep for Retry-After and try again. Honest and correct, not sabotaged;
it simply has no shared rate limiter and no learned polling.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

Json = dict[str, Any]
Send = Callable[
    [str, str, Json | None, dict[str, str] | None], Awaitable[tuple[int, dict[str, str], Json]]
]


def aiohttp_sender(session: aiohttp.ClientSession, base_url: str, key: str) -> Send:
    """Send with aiohttp, as a user would."""
    headers = {"Authorization": f"Bearer {key}"}

    async def send(
        method: str, path: str, body: Json | None, params: dict[str, str] | None
    ) -> tuple[int, dict[str, str], Json]:
        async with session.request(
            method, base_url + path, json=body, params=params, headers=headers
        ) as resp:
            return resp.status, dict(resp.headers), await resp.json(content_type=None)

    return send


class Baseline:
    """Counters plus the per-prompt coroutine."""

    def __init__(self, send: Send, *, concurrent: int, first_wait: float, interval: float) -> None:
        self.send = send
        self.semaphore = asyncio.Semaphore(concurrent)
        self.first_wait = first_wait
        self.interval = interval
        self.in_flight = 0
        self.max_in_flight = 0
        self.rate_limited = 0

    async def _call(
        self, method: str, path: str, body: Json | None = None, params: dict[str, str] | None = None
    ) -> Json:
        while True:
            status, headers, payload = await self.send(method, path, body, params)
            if status == 429:
                self.rate_limited += 1
                await asyncio.sleep(
                    float(headers.get("Retry-After", headers.get("retry-after", "1")))
                )
                continue
            return payload

    async def generate(self, prompt: str) -> list[str]:
        """Generate one image with nano-banana-2 and return its URLs."""
        async with self.semaphore:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                created = await self._call(
                    "POST",
                    "/generateTask/nano-banana-2",
                    {
                        "input": {
                            "mode": "text-to-image",
                            "prompt": prompt,
                            "aspect_ratio": "1:1",
                            "resolution": "1k",
                        }
                    },
                )
                task_id = created["data"]["taskId"]
                await asyncio.sleep(self.first_wait)
                while True:
                    answer = await self._call(
                        "GET", "/statusTask/nano-banana-2", params={"taskId": task_id}
                    )
                    state = answer["data"]["state"]
                    if state == "success":
                        return list(json.loads(answer["data"]["resultJson"])["resultUrls"])
                    if state == "failed":
                        raise RuntimeError(answer["data"].get("failMsg") or "failed")
                    await asyncio.sleep(self.interval)
            finally:
                self.in_flight -= 1
