"""nanobanana-async: an asyncio client for Nano Banana image generation.

Four task-based providers (xingchao, crun, nanobananaapi, apixo) and a built-in loopback
simulator (``local``) behind one :class:`Client`, with one shared polling scheduler that keeps
every account inside its request rate and concurrent-task limits.

Importing the package is cheap (no aiohttp): each public name loads its module on first use, so
the ``nanobanana`` command can handle Ctrl-C before the heavy imports.
"""

from __future__ import annotations

import os as _os

# typing.TYPE_CHECKING without importing typing (a few ms of the command's start): type
# checkers and linters treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._breaker import CircuitPolicy
    from ._client import Client
    from ._config import Limits, RetryPolicy, Timeouts
    from ._errors import (
        APIError,
        AuthenticationError,
        BadResponseError,
        ClientClosedError,
        ConfigurationError,
        ConnectError,
        ContentPolicyError,
        CoordinatorStateError,
        CoordinatorUnavailableError,
        DuplicateSubmitError,
        GenerationFailedError,
        InsufficientCreditsError,
        InvalidRequestError,
        NanoBananaError,
        NotSupportedError,
        ProviderRefusedError,
        ProviderUnavailableError,
        RateLimitError,
        RequestRejectedError,
        RequestTimeoutError,
        StorageError,
        SubmitOutcomeUnknownError,
        TaskError,
        TaskTimeoutError,
        TransportError,
        WebhookVerificationError,
        WrongAccountError,
    )
    from ._models import (
        AspectRatio,
        Balance,
        ImageRequest,
        ImageResult,
        ModelName,
        OutputFormat,
        Resolution,
        TaskRef,
        TaskState,
        TaskStatus,
    )
    from ._protocol import ImageClient
    from ._router import Router
    from ._routing import AccountStatistics, Attempt, Hedge, RouterStatistics
    from ._stats import ClientStatistics
    from ._task import Task
    from .webhooks import CallbackReceiver, CallbackStatistics
__version__ = "0.1.0"

__all__ = (
    "APIError",
    "AccountStatistics",
    "AspectRatio",
    "Attempt",
    "AuthenticationError",
    "BadResponseError",
    "Balance",
    "CallbackReceiver",
    "CallbackStatistics",
    "CircuitPolicy",
    "Client",
    "ClientClosedError",
    "ClientStatistics",
    "ConfigurationError",
    "ConnectError",
    "ContentPolicyError",
    "CoordinatorStateError",
    "CoordinatorUnavailableError",
    "DuplicateSubmitError",
    "GenerationFailedError",
    "Hedge",
    "ImageClient",
    "ImageRequest",
    "ImageResult",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "Limits",
    "ModelName",
    "NanoBananaError",
    "NotSupportedError",
    "OutputFormat",
    "ProviderRefusedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RequestRejectedError",
    "RequestTimeoutError",
    "Resolution",
    "RetryPolicy",
    "Router",
    "RouterStatistics",
    "StorageError",
    "SubmitOutcomeUnknownError",
    "Task",
    "TaskError",
    "TaskRef",
    "TaskState",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeouts",
    "TransportError",
    "WebhookVerificationError",
    "WrongAccountError",
    "__version__",
)

# Where each public name lives; __getattr__ imports the module on first use.
_HOMES: dict[str, tuple[str, ...]] = {
    "_client": ("Client",),
    "_config": ("Limits", "RetryPolicy", "Timeouts"),
    "_errors": (
        "APIError",
        "AuthenticationError",
        "BadResponseError",
        "ClientClosedError",
        "ConfigurationError",
        "ConnectError",
        "ContentPolicyError",
        "CoordinatorStateError",
        "CoordinatorUnavailableError",
        "DuplicateSubmitError",
        "GenerationFailedError",
        "InsufficientCreditsError",
        "InvalidRequestError",
        "NanoBananaError",
        "NotSupportedError",
        "ProviderRefusedError",
        "ProviderUnavailableError",
        "RateLimitError",
        "RequestRejectedError",
        "RequestTimeoutError",
        "StorageError",
        "SubmitOutcomeUnknownError",
        "TaskError",
        "TaskTimeoutError",
        "TransportError",
        "WebhookVerificationError",
        "WrongAccountError",
    ),
    "_models": (
        "AspectRatio",
        "Balance",
        "ImageRequest",
        "ImageResult",
        "ModelName",
        "OutputFormat",
        "Resolution",
        "TaskRef",
        "TaskState",
        "TaskStatus",
    ),
    "_protocol": ("ImageClient",),
    "_breaker": ("CircuitPolicy",),
    "_router": ("Router",),
    "_routing": ("AccountStatistics", "Attempt", "Hedge", "RouterStatistics"),
    "_stats": ("ClientStatistics",),
    "_task": ("Task",),
    "webhooks": ("CallbackReceiver", "CallbackStatistics"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
_SUBPACKAGES = frozenset({"providers", "testing", "webhooks"})

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute

    def __getattr__(name: str) -> object:
        import importlib

        if name in _SUBPACKAGES:
            # As when the package imported them itself: ``nb.webhooks.CallbackReceiver``.
            return importlib.import_module(f".{name}", __name__)
        module = _HOME_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        found = importlib.import_module(f".{module}", __name__)
        for each in _HOMES[module]:
            globals()[each] = getattr(found, each)
        return globals()[name]


def __dir__() -> list[str]:
    return sorted({*(n for n in globals() if n != "TYPE_CHECKING"), *__all__, *_SUBPACKAGES})


# Checked before importing _log (and logging): unset, nothing changes.
if _os.environ.get("NANOBANANA_LOG"):
    from ._log import configure_logging_from_env as _configure_logging

    _configure_logging()
