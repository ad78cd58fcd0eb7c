"""Which OpenTelemetry bridge, if any, a client reports to (pure: reads ``sys.modules`` and the
global providers, imports nothing that is not already imported).

Kept apart from ``otel`` so that a process without OpenTelemetry never imports it: an SDK can
only have been configured by code that imported ``opentelemetry`` first.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal

from ._errors import ConfigurationError
from ._redact import key_fingerprint

if TYPE_CHECKING:
    from ._settings import Settings
    from .events import _Emitter
    from .otel import Telemetry, _Bridge


def choose(telemetry: Telemetry | Literal[False] | None) -> Telemetry | None:
    """The telemetry a client reports to.

    Args:
        telemetry: a ``Telemetry`` (used as it is), False (none), or None: the global
            providers when the application configured an SDK provider for traces or metrics
            (the defaults are proxies), else none.

    Raises:
        ConfigurationError: ``telemetry`` is neither.
    """
    if telemetry is False:
        return None
    if telemetry is not None:
        otel = sys.modules.get("nanobanana_async.otel")
        if otel is None or not isinstance(telemetry, otel.Telemetry):
            raise ConfigurationError(
                "telemetry must be a nanobanana_async.otel.Telemetry, False or None"
            )
        chosen: Telemetry = telemetry
        return chosen
    if not _configured():
        return None
    from .otel import Telemetry

    return _global(Telemetry)


_GLOBAL: list[Telemetry] = []


def _global(make: type[Telemetry]) -> Telemetry:
    # One for the process: its instruments are made once, whatever the number of clients.
    if not _GLOBAL:
        _GLOBAL.append(make())
    return _GLOBAL[0]


def _configured() -> bool:
    """True when the application set a global SDK tracer or meter provider."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None and not isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    ):
        return True
    metrics = sys.modules.get("opentelemetry.metrics")
    if metrics is None:
        return False
    meter_provider = metrics.get_meter_provider()
    # The default is a private proxy class; any provider that is neither it nor the no-op one
    # was set by the application.
    return not isinstance(meter_provider, metrics.NoOpMeterProvider) and (
        type(meter_provider).__name__ != "_ProxyMeterProvider"
    )


def attach(
    telemetry: Telemetry | Literal[False] | None,
    emitter: _Emitter,
    settings: Settings,
    account: str | None = None,
) -> _Bridge | None:
    """Subscribe the chosen telemetry's bridge to a client's events; None when none is.

    ``account`` names the account in spans and labels (a Router's name for it); default
    ``provider:fingerprint``.

    Raises:
        ConfigurationError: see :func:`choose`.
    """
    chosen = choose(telemetry)
    if chosen is None:
        return None
    if account is None:
        key = settings.key.reveal() if settings.key is not None else None
        account = f"{settings.provider}:{key_fingerprint(key)}"
    bridge = chosen._bridge(settings.driver.name, account, settings.limits.concurrent_tasks)
    emitter.subscribe(bridge)
    return bridge
