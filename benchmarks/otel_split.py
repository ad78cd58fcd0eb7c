"""Where the OpenTelemetry cost of a task goes: the bridge's own work against the SDK's.

``python -m benchmarks.otel_split``: one task's events (submitted, accepted, one check,
resolved) replayed through the bridge, each task's create in its own asyncio task as the
client sends it, into (a) the SDK (batch span processor into an exporter that keeps nothing,
an in-memory metric reader; their flush and one collection count), (a') the same keeping a
tenth of the traces, (b) the API's no-op providers and (c) no listener at all (the replay's
own cost, subtracted); beside it (d) the same SDK calls made directly, with no bridge: two
spans, one span event, the end attributes and one histogram record (and those parts apart:
spans only, metrics only, a tenth of the traces sampled), at the same events of the same
replay. (a) - (d) is what the bridge adds to the SDK's own calls. CPU microseconds per task,
medians of rounds in a rotated order, net of (c).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from nanobanana_async import events as ev
from nanobanana_async._models import TaskState


def _sdk(ratio: float | None = None) -> tuple[Any, Any, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropping(SpanExporter):
        # Keeps no span, as an exporter that sends them away does: an in-memory exporter
        # kept every round's spans alive, and each garbage collection of the later rounds
        # walked them all (a cost that fell on whichever variant ran later, not the SDK's).
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = None if ratio is None else ParentBased(TraceIdRatioBased(ratio))
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=100_000))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    def flush() -> None:
        # The export and one collection count, as in benchmarks.telemetry; then the
        # providers stop (their threads and aggregations go with them).
        tracer_provider.force_flush()
        reader.get_metrics_data()
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return tracer_provider, meter_provider, flush


def _listener(variant: str) -> tuple[Callable[[ev.Event], None] | None, Callable[[], Any]]:
    from nanobanana_async.otel import Telemetry

    if variant in ("direct", "spans", "metrics", "sampled"):
        return _direct("all" if variant == "direct" else variant)
    if variant in ("sdk", "sdk10"):
        tracer_provider, meter_provider, flush = _sdk(0.1 if variant == "sdk10" else None)
        telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif variant == "noop":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        telemetry = Telemetry(
            tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        )
        flush = lambda: None  # noqa: E731
    else:
        return None, lambda: None
    return telemetry._bridge("apixo", "apixo:0123abcd", 100), flush


def _direct(part: str) -> tuple[Callable[[ev.Event], None], Callable[[], Any]]:
    """A listener making the SDK calls a task needs directly, at the same events as the
    bridge: ``all``, only the ``spans`` (and span event), only the ``metrics`` (the duration
    histogram's record), or ``sampled``: all, keeping a tenth of the traces (the sampled-out
    ones make no child span, event or attribute, as the bridge does). Made in the same replay
    as the bridge: the same calls in a tight loop cost ~60 µs less per task (no asyncio task
    between them, a heap that stays small), which read as the bridge's own before."""
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind

    tracer_provider, meter_provider, flush = _sdk(0.1 if part == "sampled" else None)
    tracer = tracer_provider.get_tracer("direct")
    spans, records = part != "metrics", part != "spans"
    duration = meter_provider.get_meter("direct").create_histogram("d", unit="s")
    labels = {"gen_ai.provider.name": "apixo", "nanobanana.account": "apixo:0123abcd"}
    sending: list[tuple[Span, Span | None]] = []
    running: dict[str | None, Span] = {}

    def deliver(event: ev.Event) -> None:
        if event.kind == "resolved" and records:
            duration.record(1.0, labels)
        if not spans:
            return
        if event.kind == "submitted":
            span = tracer.start_span(
                "generate_image",
                kind=SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "generate_image",
                    "gen_ai.provider.name": "apixo",
                    "gen_ai.request.model": "nano-banana",
                    "nanobanana.account": "apixo:0123abcd",
                    "nanobanana.resolution": "1K",
                },
            )
            http = None
            if span.is_recording():
                http = tracer.start_span(
                    "POST",
                    context=trace.set_span_in_context(span),
                    kind=SpanKind.CLIENT,
                    attributes={"http.request.method": "POST"},
                )
            sending.append((span, http))
        elif event.kind == "accepted":
            span, http = sending.pop()
            if http is not None:
                http.end()
            running[event.task_id] = span
        elif event.kind == "checked":
            span = running[event.task_id]
            if span.is_recording():
                span.add_event(
                    "status_check", {"nanobanana.state": "succeeded", "nanobanana.checks": 1}
                )
        elif event.kind == "resolved":
            span = running.pop(event.task_id)
            if span.is_recording():
                span.set_attributes(
                    {
                        "nanobanana.checks": 1,
                        "nanobanana.callbacks": 0,
                        "nanobanana.task_id": event.task_id or "",
                    }
                )
            span.end()

    return deliver, flush


async def _replay(n: int, variant: str) -> float:
    bridge, flush = _listener(variant)
    deliver: Callable[[ev.Event], None] = bridge if bridge is not None else (lambda e: None)
    model = "nano-banana"

    async def create(i: int) -> None:
        deliver(ev.Submitted(provider="apixo", at=0.0, attempt=1, model=model, resolution="1K"))
        deliver(ev.Accepted(provider="apixo", at=0.0, task_id=f"t{i}", attempt=1))

    cpu = time.process_time()
    for i in range(n):
        await asyncio.get_running_loop().create_task(create(i))
        task_id = f"t{i}"
        deliver(
            ev.Checked(
                provider="apixo",
                at=0.0,
                task_id=task_id,
                state=TaskState.SUCCEEDED,
                queue_position=None,
                checks=1,
            )
        )
        deliver(
            ev.Resolved(
                provider="apixo",
                at=0.0,
                task_id=task_id,
                result=None,
                error=None,
                latency=1.0,
                checks=1,
                callbacks=0,
            )
        )
    await asyncio.sleep(0)  # the create tasks' done callbacks
    flush()
    return (time.process_time() - cpu) / n * 1e6


def main(n: int = 3_000, rounds: int = 7) -> None:
    """Print the medians and ranges (µs of CPU per task)."""
    variants = ("none", "noop", "sdk", "sdk10", "direct", "spans", "metrics", "sampled")
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(rounds):
        turn = i % len(variants)
        for variant in variants[turn:] + variants[:turn]:
            gc.collect()
            runs[variant].append(asyncio.run(_replay(n, variant)))
    base = statistics.median(runs["none"])
    for variant in variants:
        values = runs[variant]
        net = statistics.median(values) - base
        print(
            f"{variant:7s} median {statistics.median(values):6.1f} µs/task"
            f" (range {min(values):.0f}-{max(values):.0f}); net of the replay {net:6.1f}"
        )


if __name__ == "__main__":
    main()
