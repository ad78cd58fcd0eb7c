"""``NANOBANANA_LOG=debug|info``: logging for users who did not set up ``logging`` themselves."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_HANDLER_NAME = "nanobanana_async.env"


def configure_logging_from_env(environ: Mapping[str, str] = os.environ) -> None:
    """Send the ``nanobanana_async`` logger to stderr at the level ``NANOBANANA_LOG`` names.

    ``info`` logs each accepted task (id, model, latency); ``debug`` adds every request (method,
    path), every status check (task id, HTTP status, latency) and every image download (task
    id, size, URL without its query). Nothing is sampled. The API key is never logged.
    Unset or any other value: nothing changes, the application's logging config applies.
    """
    level = _LEVELS.get(environ.get("NANOBANANA_LOG", "").strip().lower())
    if level is None:
        return
    logger = logging.getLogger("nanobanana_async")
    logger.setLevel(level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
