"""pytest plugin (entry point ``pytest11``): fixtures that run the simulator for a test.

``nanobanana_simulator`` runs an apixo-protocol simulator with ~0.2 s tasks in a background
thread, so it serves sync tests, asyncio tests and any framework alike. Pick the provider with
``@pytest.mark.nanobanana(provider="crun")``. ``nanobanana_client_env`` also points
``NANOBANANA_API_KEY`` and ``NANOBANANA_BASE_URL`` at it, so code that builds its own
``Client("apixo")`` talks to the simulator unchanged. Every test starts with no learned task
latency carried over from an earlier test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._scheduler._memory import MEMORY
from ._sim_config import Latency
from ._simulator import Simulator


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``nanobanana`` marker."""
    config.addinivalue_line(
        "markers", "nanobanana(provider=..., median=...): configure the nanobanana simulator"
    )


@pytest.fixture(autouse=True)
def _nanobanana_forget_latencies() -> None:
    """Each test starts with no task latency learned in an earlier one.

    A client on the real clock hands what it learned to later clients of the process; one
    test's mocked provider (aioresponses, a scripted transport) is not the next test's.
    """
    MEMORY.clear()


@pytest.fixture
def nanobanana_simulator(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """A running simulator; ``.base_url`` and ``.api_key`` go to ``Client``."""
    marker = request.node.get_closest_marker("nanobanana")
    options = dict(marker.kwargs) if marker else {}
    simulator = Simulator(
        str(options.get("provider", "apixo")),
        latency=Latency(median=float(options.get("median", 0.2)), sigma=0.2),
    )
    simulator.start_in_thread()
    try:
        yield simulator
    finally:
        simulator.stop_thread()


@pytest.fixture
def nanobanana_client_env(
    nanobanana_simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> Simulator:
    """The simulator, with NANOBANANA_API_KEY and NANOBANANA_BASE_URL pointing at it."""
    monkeypatch.setenv("NANOBANANA_API_KEY", nanobanana_simulator.api_key)
    monkeypatch.setenv("NANOBANANA_BASE_URL", nanobanana_simulator.base_url)
    return nanobanana_simulator
