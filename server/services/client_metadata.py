"""The caller's own metadata on a create: a small JSON object stored with the generation or upload as given.

It is checked before anything is created: an object (string keys, as JSON has), at most METADATA_MAX_BYTES
as compact JSON, and no NUL character or lone surrogate anywhere (PostgreSQL cannot read either back out of a
JSON value as text, which the metadata filter does).
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
    if not _storable(metadata):
        message = "metadata must not hold a NUL character or a lone surrogate (\\ud800-\\udfff)"
        return [FieldError(METADATA_FIELD, message, INVALID_METADATA)]
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        message = f"metadata is {size} bytes as compact JSON; at most {max_bytes} (METADATA_MAX_BYTES)"
        return [FieldError(METADATA_FIELD, message, INVALID_METADATA)]
    return []


def storable_text(text: str) -> bool:
    """Text that PostgreSQL can read out of a JSON value: no NUL, and valid UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return all(storable_text(name) and _storable(item) for name, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True
