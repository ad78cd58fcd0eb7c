"""``python -m benchmarks``: run the scenarios, print the tables, write JSON (and a plot)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from . import router, scenarios, telemetry

RESULTS = Path(__file__).parent / "results"


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]

    def line(values: Iterable[object]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True))

    out = [line(columns), line("-" * w for w in widths)]
    out += [line(r.get(c, "") for c in columns) for r in rows]
    return "\n".join(out)


THROUGHPUT_COLUMNS = [
    "scenario",
    "client",
    "succeeded",
    "wall_s",
    "ratio_to_clairvoyant",
    "ratio_to_paced_clairvoyant",
    "ratio_to_bound",
    "steady_ratio",
    "checks_per_task",
    "requests_per_task",
    "server_429s",
    "max_requests_in_window",
    "request_limit",
    "max_concurrent_server",
    "concurrent_cap",
    "lag_p50_over_T",
    "lag_p99_over_T",
]


async def _throughput(
    regimes: list[scenarios.Regime],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, timelines = [], {}
    for regime in regimes:
        runs: tuple[tuple[str, Any], ...] = (
            ("ours", scenarios.run_ours),
            ("baseline", scenarios.run_baseline),
        )
        if regime.name == scenarios.SCENARIO_2.name:
            runs = (("ours", lambda r: scenarios.run_ours(r, callbacks=True)),)
        for who, run in runs:
            row, timeline = await run(regime)
            rows.append(row)
            timelines[f"{regime.name}|{who}"] = (regime, timeline)
            print(f"  done: {regime.name} / {row['client']}", file=sys.stderr)
    return rows, timelines


def _memory(n: int) -> list[dict[str, Any]]:
    # A fresh interpreter per case, so one case's garbage never counts against another; the
    # three run at once (each measures its own allocations, not time).
    cases = ("ours-gather", "ours-as-completed", "baseline-gather")
    procs = [
        subprocess.Popen(  # noqa: S603  our own module, fixed arguments
            [sys.executable, "-m", "benchmarks", "--memory-case", case, "--memory-n", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case in cases
    ]
    rows = []
    for case, proc in zip(cases, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  done: memory {case}", file=sys.stderr)
    return rows


def _plot(timelines: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install -e '.[bench]'", file=sys.stderr)
        return
    names = sorted({key.split("|")[0] for key in timelines})
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 3.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for who in ("ours", "baseline"):
            if f"{name}|{who}" not in timelines:
                continue  # scenario 2 runs our client only
            regime, tl = timelines[f"{name}|{who}"]
            start = tl["start"]
            arrivals = [t - start for t in tl["arrivals"]]
            end = max(arrivals, default=1.0)
            step = 0.5
            bins = [0] * (int(end / step) + 1)
            for t in arrivals:
                if t >= 0:
                    bins[int(t / step)] += 1
            label = "nanobanana-async" if who == "ours" else "hand-written"
            axes[row][0].plot(
                [i * step for i in range(len(bins))], [b / step for b in bins], label=label
            )
            axes[row][1].plot(
                [t - start for t, _ in tl["in_flight"]],
                [v for _, v in tl["in_flight"]],
                label=label,
            )
        axes[row][0].axhline(
            regime.requests / regime.per, color="red", linestyle="--", label="limit"
        )
        axes[row][0].set_title(f"{name}: requests per second")
        axes[row][1].axhline(regime.concurrent, color="red", linestyle="--", label="cap")
        axes[row][1].set_title(f"{name}: tasks in flight")
        for ax in axes[row]:
            ax.set_xlabel("seconds")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--scenarios",
        default="1,1b,2,3,4,loop,cpu",
        help="comma-separated: 1, 1b, 2, 3, 4, loop, cpu (default: all); 5 is --full; "
        "router (two accounts through nb.Router: speed-up, outage, resets, kill; ~3 minutes); "
        "otel (CPU per task with events and OpenTelemetry on and off, interleaved; needs "
        "opentelemetry-sdk; ~5 minutes)",
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=None,
        help="prompts per router run (default 900, 60 with --quick)",
    )
    parser.add_argument(
        "--strategies",
        default="soonest,priority",
        help="router strategies the outage runs under (default: soonest,priority)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="scenario 5: the documented limits and latency (~10 minutes)",
    )
    parser.add_argument("--plot", action="store_true", help="write a PNG (needs matplotlib)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--memory-n", type=int, default=100_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_case:
        print(json.dumps(asyncio.run(scenarios.memory_case(args.memory_case, args.memory_n))))
        return 0

    chosen = set(args.scenarios.split(","))
    regimes = []
    if "1" in chosen:
        regimes.append(scenarios.SCENARIO_1)
    if "1b" in chosen:
        regimes.append(scenarios.SCENARIO_1B)
    if "2" in chosen:
        regimes.append(scenarios.SCENARIO_2)
    if args.full:
        regimes.append(scenarios.FULL)
    if args.quick:
        regimes = [attrs.evolve(r, tasks=60) for r in regimes]
    report: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(), "quick": args.quick}
    timelines: dict[str, Any] = {}
    if regimes:
        rows, timelines = asyncio.run(_throughput(regimes))
        report["throughput"] = rows
        print(
            "\nThroughput: ratio to a clairvoyant client on the same latencies, and to "
            "min(C/T, (R/W)/2), with callbacks min(C/T, R/W); lags as a fraction of mean T"
        )
        print(_table(rows, THROUGHPUT_COLUMNS))
    if "3" in chosen:
        rows = _memory(1_200 if args.quick else 100_000)  # quick: over the cap of 1,000
        report["memory"] = rows
        print("\nMemory with 100,000 generate() calls pending (cap 1,000 tasks in flight)")
        print(_table(rows, list(rows[0])))
    if "4" in chosen:
        sizes = (200, 2_000) if args.quick else (1_000, 100_000)
        rows = [asyncio.run(scenarios.overhead(n)) for n in sizes]
        report["overhead"] = rows
        print("\nScheduler overhead (in-process transport, zero latency, no limits)")
        print(_table(rows, list(rows[0])))
    if "loop" in chosen:
        n = 1_000 if args.quick else 10_000
        rows = [asyncio.run(scenarios.responsiveness(n))]
        report["responsiveness"] = rows
        print(f"\nLoop responsiveness: {n:,} status checks due at the same instant")
        print(_table(rows, list(rows[0])))
    if "cpu" in chosen:
        cpu_regime = scenarios.CPU_REGIME
        if args.quick:
            cpu_regime = attrs.evolve(cpu_regime, tasks=60)
        rows = scenarios.cpu_against_plain(cpu_regime)
        report["cpu"] = rows
        print("\nClient CPU against a plain aiohttp loop (simulator in another thread)")
        print(_table(rows, list(rows[0])))
    if "otel" in chosen:
        rows = telemetry.run_all(args.quick)
        report["otel"] = rows
        print(
            "\nEvents and OpenTelemetry: CPU per task off (nothing subscribed) and on (SDK, "
            "in-memory exporter and reader), interleaved rounds; median and range"
        )
        print(_table(rows, list(rows[0])))
    if "router" in chosen:
        prompts = args.prompts or (60 if args.quick else 900)
        strategies = args.strategies.split(",")
        mean = router.QUICK_MEAN if args.quick else router.MEAN
        rows = asyncio.run(router.run_all(prompts, strategies, mean=mean))
        report["router"] = rows
        print(
            f"\nRouter: apixo and crun simulated, each {router.ACCOUNT.requests} requests / "
            f"{router.ACCOUNT.per:g} s, {router.ACCOUNT.concurrent_tasks} tasks, mean "
            f"{mean:g} s; {prompts} prompts (per-account columns: apixo/crun)"
        )
        for row in rows:
            print(_table([row], list(row)), end="\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick.json" if args.quick else "latest.json"
    (args.out / name).write_text(json.dumps(report, indent=2))
    print(f"\nresults: {args.out / name}", file=sys.stderr)
    if args.plot and timelines:
        _plot(timelines, args.out / ("quick.png" if args.quick else "latest.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
