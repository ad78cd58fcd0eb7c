"""Public test kit: the loopback simulator of the four providers (one account or several at
once, with scheduled outages), a fake clock and a scripted transport, so tests of
nanobanana_async and of code that uses it never touch the network."""

from __future__ import annotations

from .._http import HttpRequest, HttpResponse
from ._fakes import FakeClock, ScriptedTransport, json_response, settle
from ._sim_config import Faults, Latency, Outage, ServerLimits, SimulatorStats
from ._simulator import Simulator
from ._simulators import Simulators

__all__ = (
    "FakeClock",
    "Faults",
    "HttpRequest",
    "HttpResponse",
    "Latency",
    "Outage",
    "ScriptedTransport",
    "ServerLimits",
    "Simulator",
    "SimulatorStats",
    "Simulators",
    "json_response",
    "settle",
)
