"""OpenTelemetry traces and metrics of a Client's tasks, built from its events (no I/O: the
application's OpenTelemetry SDK exports them).

Needs the ``[otel]`` extra (``opentelemetry-api`` only). With no ``telemetry=`` argument a
:class:`~nanobanana_async.Client` reports to the global tracer and meter providers once the
application has configured an SDK provider, and subscribes nothing otherwise (no span, no
metric, no event is built). ``Client(telemetry=Telemetry(tracer_provider=...,
meter_provider=...))`` reports to the given providers instead; ``telemetry=False`` turns it off.

What is reported:

- one span per task, ``generate_image`` (kind INTERNAL: its children are the CLIENT spans of
  the HTTP requests, and a CLIENT span over CLIENT spans would count each call twice in
  backends' service maps), from the first submit to the known end, a child of the caller's
  current span when it submitted. Attributes: ``gen_ai.operation.name``,
  ``gen_ai.provider.name``, ``gen_ai.request.model``, ``nanobanana.resolution``,
  ``nanobanana.task_id``, ``nanobanana.checks``, ``nanobanana.callbacks``,
  ``nanobanana.account`` (``provider:fingerprint`` or the Router's account name, never the
  key); on failure status ERROR and ``error.type`` (the error's class name);
- each create request as a child span ``POST`` (kind CLIENT; ``http.request.resend_count`` on
  retries, ``http.response.status_code`` and ``error.type`` when refused); status checks,
  callbacks and retries as span events on the task span;
- metrics, labelled only with provider, model, account and a kind, outcome or scope:
  ``gen_ai.client.operation.duration`` (s), ``nanobanana.requests`` (by ``nanobanana.kind``
  create / status / download and ``nanobanana.outcome``), ``nanobanana.rate_limits`` (429s by
  ``nanobanana.scope``), ``nanobanana.tasks.in_flight`` against ``nanobanana.tasks.cap``,
  ``nanobanana.slot.wait`` (s), ``nanobanana.task.checks`` (the checks ended tasks used: over
  the count of ``gen_ai.client.operation.duration``, checks per task), ``nanobanana.task.updates``
  (by ``nanobanana.source``: poll or callback) and ``nanobanana.submits.unknown_outcome``.

No prompt, message or key is ever put in a span or a label: errors appear by class name only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Final

import attrs
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider

from . import __version__
from . import events as ev

__all__ = ("Telemetry",)

OPERATION: Final = "generate_image"
_SCOPE: Final = "nanobanana_async"

# The GenAI semantic conventions' advice for gen_ai.client.operation.duration, which reaches
# the minutes an image task can take.
_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    163.84, 327.68,
)  # fmt: skip
_WAIT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Attributes = dict[str, str | int]


class Telemetry:
    """Where a client's spans and metrics go: ``Client(telemetry=Telemetry(...))``.

    One ``Telemetry`` may serve many clients; its instruments are made once.

    Args:
        tracer_provider: the provider of the task spans; default the global one
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: the provider of the metrics; default the global one
            (``opentelemetry.metrics.set_meter_provider``).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self._last_account_event: ev.Event | None = None
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Time from a task's first submit to its known end.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._slot_wait = meter.create_histogram(
            "nanobanana.slot.wait",
            unit="s",
            description="Seconds a submit waited for a concurrent-task slot.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )
        # Counts are plain ints on the loop, read by the SDK when it collects: an add costs a
        # dict update instead of an SDK measurement (11 µs each, measured).
        self._requests = _Tally()
        self._rate_limits = _Tally()
        self._in_flight = _Tally()
        self._cap = _Tally()
        self._updates = _Tally()
        self._unknown = _Tally()
        # A count, not a histogram of checks per task: the duration histogram already counts
        # the tasks, and a histogram record costs the SDK ~12 µs (its attributes cleaned,
        # copied and hashed each time), a tenth of what a sampled task costs.
        self._task_checks = _Tally()
        meter.create_observable_counter(
            "nanobanana.requests",
            [self._requests.observe],
            unit="{request}",
            description="API requests answered, by kind (create, status, download) and outcome.",
        )
        meter.create_observable_counter(
            "nanobanana.rate_limits",
            [self._rate_limits.observe],
            unit="{response}",
            description="429 answers, by scope (window, tasks, unknown) and request kind.",
        )
        meter.create_observable_up_down_counter(
            "nanobanana.tasks.in_flight",
            [self._in_flight.observe],
            unit="{task}",
            description="Tasks accepted by the provider and not yet ended.",
        )
        meter.create_observable_gauge(
            "nanobanana.tasks.cap",
            [self._cap.observe],
            unit="{task}",
            description="The account's concurrent-task cap in force.",
        )
        meter.create_observable_counter(
            "nanobanana.task.checks",
            [self._task_checks.observe],
            unit="{check}",
            description="Status checks used by the tasks that ended (divided by the count of "
            "gen_ai.client.operation.duration: checks per task).",
        )
        meter.create_observable_counter(
            "nanobanana.task.updates",
            [self._updates.observe],
            unit="{update}",
            description="Task states learned, by source: poll or callback.",
        )
        meter.create_observable_counter(
            "nanobanana.submits.unknown_outcome",
            [self._unknown.observe],
            unit="{submit}",
            description="Submits that may have been accepted (never sent again).",
        )

    def __repr__(self) -> str:
        return "Telemetry()"

    def _seen(self, event: ev.Event) -> bool:
        """True for an account event already counted: the account delivers the same event to
        each of its clients, and they may share this Telemetry."""
        # Each client gets its own copy when a Router renames it: the origin is the one event.
        origin = ev._account_origin(event)
        if origin is self._last_account_event:
            return True
        self._last_account_event = origin
        return False

    def _bridge(self, provider: str, account: str, cap: int | None) -> _Bridge:
        """A subscriber for one client's events (``account``: ``provider:fingerprint``)."""
        bridge = _Bridge(self, provider, account)
        if cap is not None:
            self._cap.counts[bridge.key(None)] = cap
        return bridge


Key = tuple[tuple[str, str], ...]


class _Tally:
    """Counts by label set, reported to the SDK only when it collects."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}

    def add(self, key: Key, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # Called from the SDK's collecting thread: copy() is one step under the GIL, so the
        # loop's adds never break the iteration.
        return [Observation(n, dict(key)) for key, n in self.counts.copy().items()]


@attrs.define(slots=True)
class _Open:
    """A task whose span is open: created by its first submit, ended by its end."""

    span: Span
    started: int
    model: str
    account: str
    http: Span | None = None
    accepted: bool = False
    task_id: str | None = None
    #: False when the sampler dropped the trace: no child span, event or attribute is made.
    recording: bool = True


class _Bridge:
    """Turns one client's events into spans and metric points (runs on the event loop)."""

    def __init__(self, telemetry: Telemetry, provider: str, account: str) -> None:
        self._t = telemetry
        self._provider = provider
        self._account = account
        # A create is followed by the asyncio task that sends it (its events carry no task
        # id until accepted); an accepted task by its id.
        self._creating: dict[asyncio.Task[object], _Open] = {}
        self._open: dict[str, _Open] = {}
        self._labels: dict[tuple[str, str, str | None], Attributes] = {}
        self._keys: dict[tuple[str | None, ...], Key] = {}
        self._single: dict[tuple[str | None, str, str], Key] = {}
        self._handlers: dict[str, Callable[[ev.Event], None]] = {
            "submitted": self._submitted,  # type: ignore[dict-item]  # each takes its own kind
            "accepted": self._accepted,  # type: ignore[dict-item]
            "refused": self._refused,  # type: ignore[dict-item]
            "outcome_unknown": self._outcome_unknown,  # type: ignore[dict-item]
            "checked": self._checked,  # type: ignore[dict-item]
            "callback": self._callback,  # type: ignore[dict-item]
            "retrying": self._retrying,  # type: ignore[dict-item]
            "resolved": self._resolved,  # type: ignore[dict-item]
            "downloaded": self._downloaded,  # type: ignore[dict-item]
            "rate_limited": self._rate_limited,  # type: ignore[dict-item]
            "slot_granted": self._slot_granted,  # type: ignore[dict-item]
            "limits_lowered": self._limits,  # type: ignore[dict-item]
            "limits_recovered": self._limits,  # type: ignore[dict-item]
        }

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def labels(self, account: str | None, more: Attributes | None = None) -> Attributes:
        """The low-cardinality metric attributes of this client (and ``more``)."""
        labels: Attributes = {
            "gen_ai.provider.name": self._provider,
            "nanobanana.account": account or self._account,
        }
        if more:
            labels.update(more)
        return labels

    def key(self, account: str | None, *more: tuple[str, str]) -> Key:
        """The labels of a count of this client (and ``more``)."""
        return (
            ("gen_ai.provider.name", self._provider),
            ("nanobanana.account", account or self._account),
            *more,
        )

    def _duration_labels(self, task: _Open, error: str | None) -> Attributes:
        """The labels of a task's duration record, made once per label set (the SDK copies
        them: the same dict serves every task that shares them)."""
        found = self._labels.get((task.account, task.model, error))
        if found is None:
            more: Attributes = {
                "gen_ai.request.model": task.model,
                "gen_ai.operation.name": OPERATION,
            }
            if error is not None:
                more["error.type"] = error
            found = self._labels[task.account, task.model, error] = self.labels(task.account, more)
        return found

    def _model_key(self, task: _Open) -> Key:
        """The labels of a task's count (its account and model), made once per label set."""
        found = self._keys.get((task.account, task.model))
        if found is None:
            found = self._keys[task.account, task.model] = self.key(
                task.account, ("gen_ai.request.model", task.model)
            )
        return found

    def _one_key(self, account: str | None, name: str = "", value: str = "") -> Key:
        """The labels of a count of this client, and ``name``: ``value`` when given, made
        once per label set."""
        found = self._single.get((account, name, value))
        if found is None:
            more = ((name, value),) if name else ()
            found = self._single[account, name, value] = self.key(account, *more)
        return found

    def _count(self, event: ev.Event, kind: str, outcome: str) -> None:
        # A request's labels are made once per set: tuples of tuples cost more to build than
        # the count's add.
        found = self._keys.get((event.account, kind, outcome))
        if found is None:
            found = self._keys[event.account, kind, outcome] = self.key(
                event.account, ("nanobanana.kind", kind), ("nanobanana.outcome", outcome)
            )
        self._t._requests.add(found)

    # ------------------------------------------------------------- the submit

    def _submitted(self, event: ev.Submitted) -> None:
        now = time.time_ns()
        owner = asyncio.current_task()
        task = self._creating.get(owner) if owner is not None else None
        if task is None:
            account = event.account or self._account
            attributes: Attributes = {
                "gen_ai.operation.name": OPERATION,
                "gen_ai.provider.name": self._provider,
                "gen_ai.request.model": event.model,
                "nanobanana.account": account,
            }
            if event.resolution is not None:
                attributes["nanobanana.resolution"] = event.resolution
            # The sending task runs in a copy of the submitting caller's context: its current
            # span (a web handler's) becomes the parent.
            span = self._t._tracer.start_span(
                OPERATION,
                context=otel_context.get_current(),
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=now,
            )
            task = _Open(span, now, event.model, account, recording=span.is_recording())
            if owner is not None:
                self._creating[owner] = task
                owner.add_done_callback(self._create_ended)
        if not task.recording:
            return  # sampled out: its children would be too, so none is made
        http_attributes: Attributes = {"http.request.method": "POST"}
        if event.attempt > 1:
            http_attributes["http.request.resend_count"] = event.attempt - 1
        task.http = self._t._tracer.start_span(
            "POST",
            context=trace.set_span_in_context(task.span),
            kind=SpanKind.CLIENT,
            attributes=http_attributes,
            start_time=now,
        )

    def _accepted(self, event: ev.Accepted) -> None:
        self._count(event, "create", "accepted")
        owner = asyncio.current_task()
        task = self._creating.get(owner) if owner is not None else None
        if task is None or owner is None or event.task_id is None:
            return
        del self._creating[owner]
        # Its span moves on: nothing to do when the sending task ends.
        owner.remove_done_callback(self._create_ended)
        _end_ok(task.http)
        task.http = None
        task.accepted = True
        task.task_id = event.task_id
        self._open[event.task_id] = task
        self._t._in_flight.add(self._one_key(task.account))

    def _refused(self, event: ev.Refused) -> None:
        self._count(event, "create", "rate_limited" if event.status == 429 else "refused")
        task = self._pending()
        if task is None:
            return
        error = type(event.error).__name__
        if task.http is not None:
            if event.status is not None:
                task.http.set_attribute("http.response.status_code", event.status)
            _end_error(task.http, error)
            task.http = None
        if event.will_retry:
            return
        self._drop_pending()
        self._end_task(task, error)

    def _outcome_unknown(self, event: ev.OutcomeUnknown) -> None:
        self._count(event, "create", "unknown")
        self._t._unknown.add(self.key(event.account))
        task = self._pending()
        if task is None:
            return
        error = type(event.error).__name__
        _end_error(task.http, error)
        task.http = None
        self._drop_pending()
        self._end_task(task, error)

    def _pending(self) -> _Open | None:
        owner = asyncio.current_task()
        return self._creating.get(owner) if owner is not None else None

    def _drop_pending(self) -> None:
        owner = asyncio.current_task()
        if owner is not None and self._creating.pop(owner, None) is not None:
            # Its span has moved on: nothing to do when the sending task ends, and a done
            # callback left in place would cost a turn of the loop per task.
            owner.remove_done_callback(self._create_ended)

    def _create_ended(self, owner: asyncio.Task[object]) -> None:
        # The sending task ended: accepted or refused, its span has moved on already. Left
        # here only when it stopped otherwise (cancelled, the client closed, a journal that
        # could not be written): its span ends now, with what stopped it.
        task = self._creating.pop(owner, None)
        if task is None or task.accepted:
            return
        error = "CancelledError" if owner.cancelled() else type(owner.exception()).__name__
        _end_error(task.http, error)
        task.http = None
        self._end_task(task, error)

    # ------------------------------------------------------------- the task

    def _checked(self, event: ev.Checked) -> None:
        self._count(event, "status", "ok")
        self._t._updates.add(self._one_key(event.account, "nanobanana.source", "poll"))
        task = self._open.get(event.task_id) if event.task_id is not None else None
        if task is not None and task.recording:
            attributes: Attributes = {
                "nanobanana.state": event.state.value,
                "nanobanana.checks": event.checks,
            }
            if event.queue_position is not None:
                attributes["nanobanana.queue_position"] = event.queue_position
            task.span.add_event("status_check", attributes, time.time_ns())

    def _callback(self, event: ev.CallbackReceived) -> None:
        self._t._updates.add(self._one_key(event.account, "nanobanana.source", "callback"))
        task = self._open.get(event.task_id) if event.task_id is not None else None
        if task is not None and task.recording:
            task.span.add_event("callback", {"nanobanana.state": event.state.value}, time.time_ns())

    def _retrying(self, event: ev.Retrying) -> None:
        # A failed check or download is counted here (a create by its refusal; a 429 by
        # its rate_limited event).
        if event.operation != "create" and event.cause != "429":
            self._count(event, event.operation, event.cause)
        task = self._pending() if event.operation == "create" else None
        if task is None and event.task_id is not None:
            task = self._open.get(event.task_id)
        if task is not None and task.recording:
            task.span.add_event(
                "retry",
                {
                    "nanobanana.operation": event.operation,
                    "nanobanana.cause": event.cause,
                    "nanobanana.delay": event.delay,
                    "nanobanana.attempt": event.attempt,
                },
                time.time_ns(),
            )

    def _resolved(self, event: ev.Resolved) -> None:
        task = self._open.pop(event.task_id, None) if event.task_id is not None else None
        if task is None:
            return
        self._t._in_flight.add(self._one_key(task.account), -1)
        self._t._task_checks.add(self._model_key(task), event.checks)
        error = type(event.error).__name__ if event.error is not None else None
        self._end_task(
            task,
            error,
            {"nanobanana.checks": event.checks, "nanobanana.callbacks": event.callbacks},
        )

    def _end_task(self, task: _Open, error: str | None, ended: Attributes | None = None) -> None:
        now = time.time_ns()
        # One call: each attribute set on a live SDK span takes its lock.
        attributes: Attributes = ended or {}
        if task.task_id is not None:
            attributes["nanobanana.task_id"] = task.task_id
        labels = self._duration_labels(task, error)
        if error is not None:
            attributes["error.type"] = error
            task.span.set_status(StatusCode.ERROR)
        task.span.set_attributes(attributes)
        task.span.end(now)
        self._t._duration.record((now - task.started) / 1e9, labels)

    # ------------------------------------------------------------- the account

    def _downloaded(self, event: ev.Downloaded) -> None:
        self._count(event, "download", "ok")

    def _rate_limited(self, event: ev.RateLimited) -> None:
        if self._t._seen(event):
            return
        if event.operation == "status":
            self._count(event, "status", "rate_limited")
        self._t._rate_limits.add(
            self.key(
                event.account,
                ("nanobanana.scope", event.scope),
                ("nanobanana.kind", event.operation),
            )
        )

    def _slot_granted(self, event: ev.SlotGranted) -> None:
        if self._t._seen(event):
            return
        self._t._slot_wait.record(event.waited, self.labels(event.account))

    def _limits(self, event: ev.LimitsLowered | ev.LimitsRecovered) -> None:
        self._t._cap.counts[self.key(event.account)] = event.concurrent_tasks


def _end_ok(span: Span | None) -> None:
    if span is not None:
        span.end(time.time_ns())


def _end_error(span: Span | None, error: str) -> None:
    if span is not None:
        span.set_attribute("error.type", error)
        span.set_status(StatusCode.ERROR)
        span.end(time.time_ns())
