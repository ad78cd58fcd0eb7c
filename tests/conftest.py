"""Shared fixtures: a canary API key that must never leak, and a fake clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from nanobanana_async.testing import FakeClock
from tests.redis_server import RedisServer, redis_executable

CANARY = "nb-CANARY-7f3a9c2e51d84b06"

# The event loop the async tests run on: asyncio's by default, uvloop's for the CI's uvloop leg
# (``NANOBANANA_TEST_LOOP=uvloop``; uvicorn's default loop when installed, so most web apps'):
# its timers count whole milliseconds on a cached clock, which the scheduler must survive.
TEST_LOOP = os.environ.get("NANOBANANA_TEST_LOOP", "asyncio")
if TEST_LOOP not in ("asyncio", "uvloop"):
    raise pytest.UsageError(f"NANOBANANA_TEST_LOOP={TEST_LOOP!r}: asyncio or uvloop")

if TEST_LOOP == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        """Every async test runs on a uvloop event loop."""
        return {"uvloop": uvloop.new_event_loop}


def pytest_report_header(config: pytest.Config) -> str:
    """Say which event loop the async tests run on."""
    return f"event loop: {TEST_LOOP} (NANOBANANA_TEST_LOOP)"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: twice the cores (at most 4) for the suite or a directory, none
    when the run names a file or a test.

    About half of the suite's time is waiting on real-time simulator runs, so on 2 cores four
    workers measured 33 s against 85 s serially (46 s with two). A run of one file or one test
    gains nothing from workers and would pay their start-up (~4 s).
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    if any("::" in arg or not Path(arg).is_dir() for arg in config.args):
        return 0
    return min(4, 2 * (os.cpu_count() or 1))


# The longest tests (measured with ``--durations``; a test missing here only runs in its usual
# place), run first. With ``--maxschedchunk=1`` (pyproject's addopts) each xdist worker takes the
# next test from one shared queue, so longest-first leaves no long test to start while the other
# workers sit idle at the end of the run. Order within the list: longest first.
SLOW_FIRST = (
    "tests/chaos/test_fault_matrix.py::test_f23_",
    "tests/integration/test_benchmarks_smoke.py::test_memory_and_overhead_cases_run",
    "tests/integration/test_redis_learning.py::test_f48_",
    "tests/integration/test_cli_accounts.py::test_f19_",
    "tests/integration/test_benchmarks_smoke.py::test_router_scenarios_",
    "tests/chaos/test_fault_matrix_adaptive.py::test_f36_default_limits_reach_",
    "tests/unit/test_scheduler_random.py::",
    "tests/integration/test_redis_learning.py::test_f50_",
    "tests/chaos/test_fault_matrix_router.py::test_random_faults_",
    "tests/integration/test_simulator.py::test_readme_plugin_example_",
    "tests/integration/test_cli_accounts.py::test_resume_over_",
    "tests/integration/test_redis_ledger.py::test_f35_",
    "tests/integration/test_cli_interrupt.py::test_ctrl_c_while_the_interpreter_exits_",
    "tests/integration/test_otel.py::",
    "tests/chaos/test_fuzz.py::",
    "tests/integration/test_cli_batch.py::test_f19_",
    "tests/chaos/test_fault_matrix_reruns.py::test_f48_",
    "tests/unit/test_client.py::test_a_cancelled_aclose_",
    "tests/chaos/test_soak.py::",
    "tests/integration/test_cli_credits.py::",
    "tests/integration/test_reruns_benchmark.py::",
    "tests/integration/test_cli_batch_progress.py::",
    "tests/chaos/test_fault_matrix_redis.py::test_f46_",
    "tests/chaos/test_fault_matrix_ledger.py::test_f36_",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests in ``SLOW_FIRST`` before the rest, longest first (a stable sort: every
    other test keeps its place)."""

    def rank(item: pytest.Item) -> int:
        for i, prefix in enumerate(SLOW_FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(SLOW_FIRST)

    items.sort(key=rank)


@pytest.fixture
def canary() -> str:
    """An API key that tests assert never appears in logs, reprs or errors."""
    return CANARY


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock starting at 1000 s."""
    return FakeClock(1000.0)


def walk_exception(exc: BaseException) -> list[BaseException]:
    """The exception with every __cause__ and __context__ behind it."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                stack.append(nxt)
    return seen


class _SentWriter:
    output_size = 0


@pytest.fixture
def aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let aioresponses 0.7.x build responses on aiohttp >= 3.14.

    aiohttp 3.14 (a security release) made ``stream_writer`` a required argument of
    ``ClientResponse``; aioresponses does not pass it yet (pnuckowski/aioresponses#289). For an
    already-sent request aiohttp only reads its ``output_size``, so a stub is enough. Real
    requests always pass it, so nothing else changes.
    """
    import aiohttp

    original = aiohttp.ClientResponse.__init__

    def init(self: aiohttp.ClientResponse, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiohttp.ClientResponse, "__init__", init)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on 127.0.0.1 and a free port, killed after the test.

    ``redis_server.stop()`` / ``.start()`` restart it mid-test on the same port. Without
    ``redis-server`` installed the test skips locally and fails in CI (``CI=true``).
    """
    server = RedisServer(redis_executable(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
