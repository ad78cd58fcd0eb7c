"""Provider callbacks: capability tokens (pure) and the receiver app (I/O).

The receiver (and with it ``aiohttp.web``, a tenth of a second of imports) loads when one of its
names is first used: a client without callbacks, as every batch worker, never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._receiver import CallbackReceiver, CallbackStatistics

__all__ = ("CallbackReceiver", "CallbackStatistics")

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute

    def __getattr__(name: str) -> object:
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import _receiver

        globals().update({each: getattr(_receiver, each) for each in __all__})
        return globals()[name]
