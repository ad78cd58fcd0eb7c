"""A Router over two loopback simulators through the real transport (small real-time runs)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nanobanana_async as nb
from nanobanana_async.testing import Faults, Latency, Simulator

README = Path(__file__).resolve().parents[2] / "README.md"
FAST = Latency(median=0.2, sigma=0.2)


def test_the_readme_router_example_runs_and_uses_both_accounts() -> None:
    """The "Several providers and keys" example runs as printed and spreads its prompts."""
    text = README.read_text()
    section = text[text.index("### Several providers and keys") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(match.group(1), "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    lines = out.getvalue().splitlines()
    accepted = {line.split()[0]: int(line.split()[1]) for line in lines[-2:]}
    assert sum(accepted.values()) == 20
    assert all(count > 0 for count in accepted.values())


async def test_resets_after_create_never_put_a_prompt_on_two_providers() -> None:
    """apixo drops a third of its create answers after creating the task: each such prompt
    ends as SubmitOutcomeUnknownError naming the apixo account, never sent to crun, so the
    two simulators together created every prompt exactly once."""
    faults = Faults(reset_after_create=0.3, kinds=frozenset({"create"}))
    limits = nb.Limits(concurrent_tasks=4)
    retry = nb.RetryPolicy(base_delay=0.01, max_delay=0.05)
    async with (
        Simulator("apixo", latency=FAST, faults=faults, seed=3) as apixo,
        Simulator("crun", latency=FAST) as crun,
    ):
        clients = [
            nb.Client(
                s.provider, api_key=s.api_key, base_url=s.base_url, limits=limits, retry=retry
            )
            for s in (apixo, crun)
        ]
        async with nb.Router(clients, owns_clients=True) as router:
            tasks = [task async for task in router.as_completed(f"p{i}" for i in range(24))]
            name = router.accounts[0]
    errors = [t._future.exception() for t in tasks]
    unknown = [e for e in errors if isinstance(e, nb.SubmitOutcomeUnknownError)]
    assert unknown, "the seed makes some creates ambiguous"
    assert all(name in str(e) for e in unknown)
    assert [e for e in errors if e is not None and e not in unknown] == []
    assert apixo.stats.creates + crun.stats.creates == 24
    assert crun.stats.creates > 0


async def test_a_routed_result_downloads(tmp_path: Path) -> None:
    """download() saves a result the router got, through a client of its provider."""
    async with (
        Simulator("apixo", latency=FAST) as apixo,
        Simulator("crun", latency=FAST) as crun,
    ):
        clients = [
            nb.Client(s.provider, api_key=s.api_key, base_url=s.base_url) for s in (crun, apixo)
        ]
        async with nb.Router(clients, owns_clients=True) as router:
            result = await router.generate("a lighthouse", model="nano-banana-pro")
            paths = await router.download(result, tmp_path / "lighthouse.png")
    assert result.provider == "crun"
    assert [p.name for p in paths] == ["lighthouse.png"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
