"""Provider callbacks: capability tokens (pure) and the receiver app (I/O)."""

from __future__ import annotations

from ._receiver import CallbackReceiver, CallbackStatistics

__all__ = ("CallbackReceiver", "CallbackStatistics")
