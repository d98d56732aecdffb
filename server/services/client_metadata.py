"""The caller's own metadata on a create: a small JSON object stored with the generation or upload as given.

It is checked before anything is created: an object (string keys, as JSON has), at most METADATA_MAX_BYTES
as compact JSON, and no NUL character anywhere (PostgreSQL cannot read one back out of a JSON value as
text, which the metadata filter does).
"""

from __future__ import annotations

import json
from typing import Any

from server.services.errors import FieldError

METADATA_FIELD = ["input", "metadata"]
INVALID_METADATA = "INVALID_METADATA"


def metadata_problems(metadata: Any, max_bytes: int) -> list[FieldError]:
    """Why `metadata` cannot be stored; empty when it can, or when there is none."""
    if metadata is None:
        return []
    if not isinstance(metadata, dict) or not all(isinstance(name, str) for name in metadata):
        return [FieldError(METADATA_FIELD, "metadata must be a JSON object", INVALID_METADATA)]
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        message = f"metadata is {size} bytes as compact JSON; at most {max_bytes} (METADATA_MAX_BYTES)"
        return [FieldError(METADATA_FIELD, message, INVALID_METADATA)]
    if _has_nul(metadata):
        return [FieldError(METADATA_FIELD, "metadata must not hold a NUL character", INVALID_METADATA)]
    return []


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(name) or _has_nul(item) for name, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
