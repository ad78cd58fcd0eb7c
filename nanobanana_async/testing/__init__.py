"""Public test kit: the loopback simulator of the four providers, a fake clock and a scripted
transport, so tests of nanobanana_async and of code that uses it never touch the network."""

from __future__ import annotations

from .._http import HttpRequest, HttpResponse
from ._fakes import FakeClock, ScriptedTransport, json_response, settle
from ._sim_config import Faults, Latency, ServerLimits, SimulatorStats
from ._simulator import Simulator

__all__ = (
    "FakeClock",
    "Faults",
    "HttpRequest",
    "HttpResponse",
    "Latency",
    "ScriptedTransport",
    "ServerLimits",
    "Simulator",
    "SimulatorStats",
    "json_response",
    "settle",
)
