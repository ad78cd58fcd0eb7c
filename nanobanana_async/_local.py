"""The ``local`` provider's transport: the built-in simulator on 127.0.0.1, started on first use
and stopped with the client (does I/O).

The client treats ``local`` like any provider; only this transport knows a simulator is behind it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._http import HttpRequest, HttpResponse
from ._redact import Secret
from ._transport import AiohttpTransport

if TYPE_CHECKING:
    from .testing import Simulator

#: Simulated tasks take 1-3 s; a task still running after this is lost, not slow.
LOCAL_TASK_TIMEOUT: Final = 120.0


class LocalTransport:
    """Sends to an in-process apixo simulator, started when the first request needs it."""

    def __init__(
        self, *, connect_timeout: float = 10.0, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._connect_timeout = connect_timeout
        self._wall_clock = wall_clock
        self._simulator: Simulator | None = None
        self._inner: AiohttpTransport | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"LocalTransport(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The simulator's URL once started, ``http://127.0.0.1`` before."""
        return self._simulator.base_url if self._simulator is not None else "http://127.0.0.1"

    async def start(self) -> AiohttpTransport:
        """Start the simulator (once) and return the transport that reaches it."""
        async with self._lock:
            if self._inner is None:
                from .testing import Latency, Simulator  # the simulator is a test kit

                # A fresh seed per process: a seeded simulator repeats its task ids, and a rerun
                # into the same folder would take the old run's images for its own.
                simulator = Simulator(
                    "apixo", latency=Latency(median=1.5, sigma=0.3), seed=secrets.randbits(64)
                )
                await simulator.start()
                self._simulator = simulator
                self._inner = AiohttpTransport(
                    base_url=simulator.base_url,
                    scheme="bearer",
                    key=Secret(simulator.api_key),
                    connect_timeout=self._connect_timeout,
                    wall_clock=self._wall_clock,
                )
        return self._inner

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send to the simulator, starting it first if needed."""
        inner = self._inner or await self.start()
        return await inner.send(request, timeout=timeout)

    async def aclose(self) -> None:
        """Stop the simulator and close the connections to it."""
        if self._inner is not None:
            await self._inner.aclose()
        if self._simulator is not None:
            await self._simulator.aclose()
