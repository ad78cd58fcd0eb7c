"""The pytest plugin shipped with the package, as a user's test suite meets it."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)


def test_learned_latencies_do_not_carry_from_one_test_to_the_next(
    pytester: pytest.Pytester,
) -> None:
    """A real-clock client hands what it learned to later clients of the process; in a user's
    suite, one test's mocked provider must not shape the next test's checks."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        from nanobanana_async._scheduler._latency import Learned
        from nanobanana_async._scheduler._memory import MEMORY

        KEY = ("apixo", "https://api.apixo.ai/api/v1", "nano-banana-2")

        def test_first_learns():
            MEMORY.remember(KEY, Learned(mean=0.0, var=0.01, samples=50))

        def test_second_starts_afresh():
            assert MEMORY.recall(KEY) is None
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
