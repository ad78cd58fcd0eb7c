"""Several simulated accounts at once (providers, keys), each with its own limits, faults and
outages, started and stopped together on their own loopback ports (does I/O)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Self

from ._sim_config import SimulatorStats
from ._simulator import Simulator


class Simulators(Mapping[str, Simulator]):
    """Simulated accounts served together, for testing failover across providers and keys.

    Each member is an ordinary :class:`Simulator` (its own port, key, ``limits``, ``latency``,
    ``faults`` and ``outages``); the group starts them at one instant, so every outage is timed
    from the same start, and reads as a mapping from account name to simulator::

        async with Simulators([
            Simulator("apixo", limits=ServerLimits(requests=600, per=10, concurrent_tasks=50)),
            Simulator("crun", outages=[Outage(start=1, end=7)]),
        ]) as sims:
            sims["crun"].base_url, sims["crun"].api_key, sims.stats["crun"].refused

    Args:
        simulators: the members, named by provider; a mapping names them itself (needed for
            two accounts of one provider: ``{"apixo": ..., "apixo-2": ...}``).

    Raises:
        ValueError: no member, or two unnamed members of one provider.
    """

    def __init__(self, simulators: Mapping[str, Simulator] | Iterable[Simulator]) -> None:
        members: dict[str, Simulator] = {}
        if isinstance(simulators, Mapping):
            members.update(simulators)
        else:
            for simulator in simulators:
                if simulator.provider in members:
                    raise ValueError(
                        f"two {simulator.provider} simulators: name each in a mapping, "
                        f'e.g. {{"{simulator.provider}": ..., "{simulator.provider}-2": ...}}'
                    )
                members[simulator.provider] = simulator
        if not members:
            raise ValueError("Simulators needs at least one Simulator")
        self._members = members
        self.started_at: float | None = None
        """The loop time every member's outages are timed from; set by ``start``."""

    def __getitem__(self, name: str) -> Simulator:
        return self._members[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"Simulators({list(self._members.values())!r})"

    @property
    def stats(self) -> dict[str, SimulatorStats]:
        """Each account's server-side statistics, by name."""
        return {name: simulator.stats for name, simulator in self._members.items()}

    def prompts_on_several(self) -> dict[str, list[str]]:
        """Prompts created as tasks on more than one account, with those accounts' names.

        Empty when no prompt was paid for twice across accounts (a prompt created twice on one
        account shows in that account's ``stats.duplicate_creates`` instead).
        """
        where: dict[str, list[str]] = {}
        for name, simulator in self._members.items():
            for prompt in simulator.created_prompts():
                where.setdefault(prompt, []).append(name)
        return {prompt: names for prompt, names in where.items() if len(names) > 1}

    def env(self) -> dict[str, str]:
        """Environment variables naming each account: ``NANOBANANA_API_KEY_<NAME>`` and
        ``NANOBANANA_BASE_URL_<NAME>`` (the name upper-cased, ``-`` as ``_``)."""
        env: dict[str, str] = {}
        for name, simulator in self._members.items():
            suffix = name.upper().replace("-", "_")
            env[f"NANOBANANA_API_KEY_{suffix}"] = simulator.api_key
            env[f"NANOBANANA_BASE_URL_{suffix}"] = simulator.base_url
        return env

    async def start(self) -> None:
        """Start every member; on a failure the ones started are stopped again."""
        epoch = asyncio.get_running_loop().time()
        started: list[Simulator] = []
        try:
            for simulator in self._members.values():
                simulator._epoch = epoch  # one start for all: outages are timed alike
                await simulator.start()
                started.append(simulator)
        except BaseException:
            for simulator in started:
                with contextlib.suppress(Exception):
                    await simulator.aclose()
            raise
        self.started_at = epoch

    async def aclose(self) -> None:
        """Stop every member."""
        for simulator in self._members.values():
            await simulator.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
