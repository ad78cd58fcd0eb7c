"""nanobanana-async: an asyncio client for Nano Banana image generation.

Four task-based providers (xingchao, crun, nanobananaapi, apixo) and a built-in loopback
simulator (``local``) behind one :class:`Client`, with one shared polling scheduler that keeps
every account inside its request rate and concurrent-task limits.
"""

from __future__ import annotations

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
    CoordinatorUnavailableError,
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
)
from ._log import configure_logging_from_env as _configure_logging
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
from ._stats import ClientStatistics
from ._task import Task
from .webhooks import CallbackReceiver, CallbackStatistics

__version__ = "0.1.0"

__all__ = (
    "APIError",
    "AspectRatio",
    "AuthenticationError",
    "BadResponseError",
    "Balance",
    "CallbackReceiver",
    "CallbackStatistics",
    "Client",
    "ClientClosedError",
    "ClientStatistics",
    "ConfigurationError",
    "ConnectError",
    "ContentPolicyError",
    "CoordinatorUnavailableError",
    "GenerationFailedError",
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
    "__version__",
)

_configure_logging()
