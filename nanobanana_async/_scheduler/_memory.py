"""Learned latency models remembered across the schedulers of one process (no I/O).

Each event loop has its own scheduler, so a script that calls ``asyncio.run()`` twice, or a
worker that recreates its loop or client, would learn every model again from the provider's
conservative advice. Schedulers on the real clock remember what they learn here, keyed by
(provider, base URL, model): another endpoint is another server with other latencies. A test
simulator starting on a URL is a new server too, and forgets what was remembered for it.
"""

from __future__ import annotations

import collections
import threading
from typing import Final

from ._latency import Learned

Key = tuple[str, str, str]  # (provider, base URL, model)

# Providers x models x endpoints a process talks to: a handful. The cap only bounds a process
# that meets many endpoints (a test run starting simulator after simulator).
CAPACITY: Final = 64


class LatencyMemory:
    """A bounded, least-recently-used map from key to learned model, safe to share between
    threads (each running its own loop): every read and write holds one lock."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._models: collections.OrderedDict[Key, Learned] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def remember(self, key: Key, learned: Learned) -> None:
        """Keep ``learned`` for ``key``, evicting the least recently used key over capacity."""
        with self._lock:
            self._models[key] = learned
            self._models.move_to_end(key)
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)

    def recall(self, key: Key) -> Learned | None:
        """What was remembered for ``key``, else None."""
        with self._lock:
            learned = self._models.get(key)
            if learned is not None:
                self._models.move_to_end(key)
            return learned

    def forget(self, origin: str) -> None:
        """Forget every key whose base URL is ``origin`` or a path under it (a new server
        listens there now)."""
        origin = origin.rstrip("/")
        with self._lock:
            for key in [k for k in self._models if _under(k[1], origin)]:
                del self._models[key]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._models.clear()


def _under(url: str, origin: str) -> bool:
    return url == origin or url.startswith(origin + "/")


#: The process's memory, used by every scheduler on the real clock.
MEMORY: Final = LatencyMemory()
