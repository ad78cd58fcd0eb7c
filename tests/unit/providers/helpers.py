"""Helpers for driver tables."""

from __future__ import annotations

import json

from nanobanana_async._http import HttpResponse


def resp(body: object, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    """A response whose body is ``body`` as JSON (bytes and str are sent as they are)."""
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body).encode()
    return HttpResponse(status=status, headers=headers or {}, body=raw, received_at=0.0)
