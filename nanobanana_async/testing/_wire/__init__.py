"""The four providers' wire protocols as a server speaks them: routes, strict request
validation, answers, error shapes and callbacks (pure, no I/O), one module per provider.

Wire names, shapes and answers are written from ``shared/providers/PROTOCOLS.md``
independently of the client's drivers, so a misreading in one does not hide in the other. The
per-model rules (caps, value sets, which fields a model takes, what is required) are not: they
come from the drivers' one table (``providers`` ``ModelSpec``, each rule with its source), so
where no document states a rule, neither side enforces it.
"""

from __future__ import annotations

from typing import Final

from ._apixo import Apixo
from ._base import Accepted, Kind, RejectError, State, TaskView, WireProtocol
from ._crun import Crun
from ._nanobananaapi import NanoBananaApi
from ._xingchao import Xingchao

PROTOCOLS: Final[dict[str, type[WireProtocol]]] = {
    "xingchao": Xingchao,
    "crun": Crun,
    "nanobananaapi": NanoBananaApi,
    "apixo": Apixo,
}

__all__ = (
    "PROTOCOLS",
    "Accepted",
    "Apixo",
    "Crun",
    "Kind",
    "NanoBananaApi",
    "RejectError",
    "State",
    "TaskView",
    "WireProtocol",
    "Xingchao",
)
