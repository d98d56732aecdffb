"""How Replicate words a failure: a 422's ``invalid_fields`` and a 429's "resets in ~Ns" text, read into
`server.provider.errors` classes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from server.provider.errors import InvalidField, ProviderError, error_from_answer

# "Request was throttled. Your rate limit resets in ~30s." (the 429 body Replicate sends)
_RESETS_IN = re.compile(r"resets\s+in\s+~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def parse_resets_in(detail: str) -> float | None:
    """Seconds named by Replicate's 429 text "Your rate limit resets in ~30s."; None when absent."""
    match = _RESETS_IN.search(detail)
    return float(match.group(1)) if match else None


def invalid_fields(body: Any) -> list[InvalidField]:
    """A 422's ``invalid_fields``: ``[{type, field, description}, ...]``."""
    items = body.get("invalid_fields") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [
        InvalidField.of(item.get("type"), item.get("field"), item.get("description"))
        for item in items
        if isinstance(item, dict)
    ]


def replicate_error(status: int, headers: Mapping[str, str], content: bytes) -> ProviderError:
    """The error one of Replicate's unsuccessful answers stands for."""
    return error_from_answer(status, headers, content, read_reasons=invalid_fields, read_wait=parse_resets_in)


def error_from_response(response: httpx.Response) -> ProviderError:
    """`replicate_error` of a read httpx response."""
    return replicate_error(response.status_code, response.headers, response.content)
