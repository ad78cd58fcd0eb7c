"""``python -m benchmarks.spare``: CPU of one look for checks to pull forward (issue 22).

With the request budget idle, the runner asks the planner at most every 50 ms which planned
checks are worth sending early (``Planner.spare``). This times one such look with ``--pending``
tasks planned (by default 1,000 and 100,000), all of one learned model and all eligible, so
every candidate the look reads is scored: the costliest case. Pure planner code, no loop, no
I/O; the figure is process CPU per look (min and median of ``--rounds`` one-second rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

from nanobanana_async._scheduler._plan import PROBES, Planner

_LOOK: int = 32  # the runner's _SPARE_BATCH: checks pulled forward per look, at most


def planned(pending: int) -> tuple[Planner[int], float]:
    """A planner with ``pending`` tasks submitted 10 µs apart, whose first checks wait on the
    provider's advice (10 s) while the model, learned since, says they take ~0.6 s; and the
    time at which every one of them is worth an early check."""
    plan: Planner[int] = Planner()
    model = plan.model("g", 10.0, 5.0)
    model.probes = PROBES  # no probes: every first check waits on the advice
    for i in range(pending):
        now = i * 1e-5
        plan.add(i, group="g", now=now, deadline=now + 600.0, first_poll=10.0, poll_interval=5.0)
    for _ in range(5):
        model.observe(0.5, 0.7)
    return plan, pending * 1e-5 + 1.0


def look_us(pending: int, rounds: int) -> list[float]:
    """Microseconds of process CPU per look, one figure per one-second round."""
    plan, now = planned(pending)
    figures = []
    for _ in range(rounds):
        looks = 0
        started = time.process_time()
        while time.process_time() - started < 1.0:
            chosen, _ = plan.spare(now, _LOOK)
            assert len(chosen) == _LOOK
            looks += 1
        figures.append((time.process_time() - started) / looks * 1e6)
    return figures


def main() -> None:
    """Print µs per look for each size."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spare", description=__doc__)
    parser.add_argument("--pending", default="1000,100000", help="comma-separated sizes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for pending in (int(size) for size in args.pending.split(",")):
        figures = look_us(pending, args.rounds)
        print(
            f"{pending:>8,} pending: {min(figures):.0f} µs per look "
            f"(median {statistics.median(figures):.0f})"
        )


if __name__ == "__main__":
    main()
