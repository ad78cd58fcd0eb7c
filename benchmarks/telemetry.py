"""What events and OpenTelemetry cost: CPU per task with the bridge on and off, side by side.

``python -m benchmarks --scenarios otel`` (or ``python -m benchmarks.telemetry``). Each round
runs the same work five times, in a rotated order so that the machine's drift falls on all:
``off`` (``telemetry=False``: nothing subscribes to the client's events, so none is built),
``events`` (an ``on_event`` callback that does nothing: the cost of building the events),
``noop`` (the bridge into the API's no-op providers: the bridge's own work, not the SDK's),
``on`` (the bridge into an OpenTelemetry SDK: a tracer provider with a batch processor into
an exporter that counts the task spans and keeps none, and a meter provider with an
in-memory reader; the spans' flush and one collection at the end count in the measured time
where the workload counts the process) and
``sampled`` (the same, keeping a tenth of the traces: ``ParentBased(TraceIdRatioBased(0.1))``).
Two workloads:

- ``in-process``: a scripted transport answering at once (scenario 4's shape): the client's
  whole cost is the scheduler, so the bridge's share is the largest it can be;
- ``simulator``: the simulator in another thread (scenario cpu's shape, smaller): real HTTP
  through aiohttp, the client thread's CPU time only (so not the SDK's export thread).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

import nanobanana_async as nb
from nanobanana_async.testing import HttpRequest, HttpResponse, ScriptedTransport, json_response

from . import scenarios


def _sdk(ratio: float | None = None) -> tuple[Any, Any]:
    """An SDK ``Telemetry`` (keeping the share ``ratio`` of traces, default all) and a function
    that flushes what it recorded (the export cost) and returns the task spans exported."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from nanobanana_async.otel import Telemetry

    class Counting(SpanExporter):
        # Counts the task spans and keeps none, as an exporter that sends them away does:
        # an in-memory exporter holding every span would make each garbage collection of
        # the run walk them all, a cost no application pays.
        def __init__(self) -> None:
            self.tasks = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.tasks += sum(s.name == "generate_image" for s in spans)
            return SpanExportResult.SUCCESS

    spans = Counting()
    sampler = None if ratio is None else ParentBased(TraceIdRatioBased(ratio))
    tracer_provider = TracerProvider(sampler=sampler)
    # As an application exports: batched, from the SDK's own thread.
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=100_000))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def flush() -> int:
        tracer_provider.force_flush()
        reader.get_metrics_data()
        exported, spans.tasks = spans.tasks, 0
        return exported

    return telemetry, flush


async def _in_process(n: int, options: dict[str, Any]) -> float:
    # Answers built before the run (the fake server's JSON is not the client's cost); each
    # task has its own id, as at a provider, so each gets its own span.
    ids = [f"t{i}" for i in range(n)]
    created = iter(
        [json_response({"code": 200, "message": "success", "data": {"taskId": i}}) for i in ids]
    )
    done = {i: scenarios._apixo_done(i) for i in ids}

    def instant(request: HttpRequest) -> HttpResponse:
        if request.kind == "submit":
            return next(created)
        return done[str(request.params["taskId"])]

    limits = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=n)
    async with nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(instant),
        limits=limits,
        **options,
    ) as client:
        cpu = time.process_time()
        results = await asyncio.gather(*(client.generate(f"p{i}") for i in range(n)))
        cpu = time.process_time() - cpu
    assert len(results) == n
    return cpu


async def _against_simulator(n: int, options: dict[str, Any]) -> float:
    regime = scenarios.CPU_REGIME
    sim = scenarios._simulator(regime, seed=4).start_in_thread()
    try:
        limits = nb.Limits(
            requests=regime.requests, per=regime.per, concurrent_tasks=regime.concurrent
        )
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, limits=limits, **options
        ) as client:
            cpu = time.thread_time()
            results = await asyncio.gather(*(client.generate(f"prompt {i}") for i in range(n)))
            cpu = time.thread_time() - cpu
    finally:
        sim.stop_thread()
    assert len(results) == n
    return cpu


VARIANTS = ("off", "events", "noop", "on", "sampled")


def _noop() -> Any:
    """The bridge into the API's no-op providers: the bridge's own work (its spans do not
    record, so it skips what a sampled-out task skips), without the SDK's."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from nanobanana_async.otel import Telemetry

    return Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())


def _one(workload: str, n: int, variant: str) -> float:
    """CPU microseconds per task of one run (the export included when on)."""
    gc.collect()
    options: dict[str, Any] = {"telemetry": False}
    flush = None
    if variant == "events":
        options["on_event"] = lambda event: None
    elif variant == "noop":
        options["telemetry"] = _noop()
    elif variant == "on":
        options["telemetry"], flush = _sdk()
    elif variant == "sampled":
        options["telemetry"], flush = _sdk(0.1)
    run = _in_process if workload == "in-process" else _against_simulator
    cpu = asyncio.run(run(n, options))
    if flush is not None:
        started = time.process_time()
        exported = flush()
        cpu += time.process_time() - started
        if variant == "on":
            assert exported == n, f"{exported} spans exported for {n} tasks"
    return cpu / n * 1e6


def telemetry_cost(workload: str, n: int, rounds: int) -> dict[str, Any]:
    """Median and range of CPU per task off, with events only, into no-op providers, with
    OpenTelemetry on and with a tenth of the traces sampled, over ``rounds`` rounds, each
    running the five in a rotated order."""
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(rounds):
        turn = i % len(VARIANTS)
        for variant in VARIANTS[turn:] + VARIANTS[:turn]:
            runs[variant].append(_one(workload, n, variant))
    off = statistics.median(runs["off"])
    row: dict[str, Any] = {"workload": workload, "tasks": n, "rounds": rounds}
    for variant in VARIANTS:
        values = runs[variant]
        row[f"{variant}_us_per_task"] = round(statistics.median(values), 1)
        row[f"{variant}_range"] = f"{min(values):.0f}-{max(values):.0f}"
    for variant in VARIANTS[1:]:
        ratios = [b / a for a, b in zip(runs["off"], runs[variant], strict=True)]
        row[f"{variant}_over_off"] = round(statistics.median(runs[variant]) / off, 3)
        row[f"{variant}_ratio_range"] = f"{min(ratios):.2f}-{max(ratios):.2f}"
    return row


def run_all(quick: bool, rounds: int | None = None) -> list[dict[str, Any]]:
    """Both workloads; ``quick`` is a smoke run; ``rounds`` overrides the number of rounds."""
    rows = [
        telemetry_cost("in-process", 200 if quick else 2_000, rounds or (3 if quick else 9)),
        telemetry_cost("simulator", 60 if quick else 600, rounds or (3 if quick else 6)),
    ]
    for row in rows:
        print(f"  done: otel {row['workload']}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table and the JSON rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per workload")
    args = parser.parse_args(argv)
    rows = run_all(args.quick, args.rounds)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
