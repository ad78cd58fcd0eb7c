"""Provider drivers: one sans-IO module per provider's wire protocol."""

from __future__ import annotations

from typing import Final

from ._apixo import ApixoDriver
from ._base import ModelSpec, ProviderDriver, validate
from ._crun import CrunDriver
from ._nanobananaapi import NanoBananaApiDriver
from ._xingchao import XingchaoDriver

DRIVERS: Final[dict[str, ProviderDriver]] = {
    "xingchao": XingchaoDriver(),
    "crun": CrunDriver(),
    "nanobananaapi": NanoBananaApiDriver(),
    "apixo": ApixoDriver(),
}
PROVIDERS: Final = (*DRIVERS, "local")

__all__ = ("DRIVERS", "PROVIDERS", "ModelSpec", "ProviderDriver", "validate")
