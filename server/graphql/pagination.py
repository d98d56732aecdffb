"""Cursor connections: page-size limits and keyset cursors over (created_at, id)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from graphql import GraphQLError

from server.settings import Settings


def page_size(first: int | None, settings: Settings) -> int:
    if first is None:
        return settings.graphql.default_page_size
    if first < 1 or first > settings.graphql.max_page_size:
        raise GraphQLError(
            f"first must be between 1 and {settings.graphql.max_page_size}, got {first}",
            extensions={"code": "BAD_USER_INPUT", "maxPageSize": settings.graphql.max_page_size},
        )
    return first


def encode_cursor(*parts: Any) -> str:
    text = "|".join(part.isoformat() if isinstance(part, datetime) else str(part) for part in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[str]:
    try:
        return base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor(cursor) from None


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    parts = _decode(cursor)
    try:
        return datetime.fromisoformat(parts[0]), uuid.UUID(parts[1])
    except (IndexError, ValueError):
        raise bad_cursor(cursor) from None


def decode_text_cursor(cursor: str) -> str:
    parts = _decode(cursor)
    if len(parts) != 1 or not parts[0]:
        raise bad_cursor(cursor)
    return parts[0]


def decode_event_cursor(cursor: str) -> int:
    parts = _decode(cursor)
    try:
        if parts[0] != "event":
            raise ValueError
        return int(parts[1])
    except (IndexError, ValueError):
        raise bad_cursor(cursor) from None


def bad_cursor(cursor: str) -> GraphQLError:
    return GraphQLError(f"{cursor!r} is not a valid cursor", extensions={"code": "BAD_USER_INPUT"})
