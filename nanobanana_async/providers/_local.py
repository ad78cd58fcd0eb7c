"""The ``local`` provider: apixo's wire protocol spoken by the built-in simulator (pure)."""

from __future__ import annotations

from ._apixo import ApixoDriver


class LocalDriver(ApixoDriver):
    """apixo's protocol, with polling advice for the simulator's 1-3 s tasks."""

    name: str = "local"
    default_base_url: str = "http://127.0.0.1"
    first_poll: float = 1.0
    poll_interval: float = 0.5
