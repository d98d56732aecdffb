"""Cursor connections: page-size limits and keyset cursors over (created_at, id).

A cursor comes back from the client, so every part of it is checked before it reaches SQL: the
timestamp parses and is a UTC instant Python and the databases can hold, the id is a UUID, an event id
is a short run of digits within the databases' 64-bit integers. Anything else is BAD_USER_INPUT.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime

from graphql import GraphQLError

from server.opaque_ids import cursor
from server.quoting import quote_value
from server.settings import Settings

# The largest id a 64-bit signed integer column holds (PostgreSQL's BIGINT, SQLite's INTEGER).
MAX_DATABASE_INTEGER = 2**63 - 1
# A database integer's digits: matched before int() sees them, so no long run of digits is ever converted.
_DATABASE_INTEGER = re.compile(r"[0-9]{1,19}")


def page_size(first: int | None, settings: Settings) -> int:
    if first is None:
        return settings.graphql.default_page_size
    if first < 1 or first > settings.graphql.max_page_size:
        raise GraphQLError(
            f"first must be between 1 and {settings.graphql.max_page_size}, got {first}",
            extensions={"code": "BAD_USER_INPUT", "maxPageSize": settings.graphql.max_page_size},
        )
    return first


# Written in one place for every layer (server/opaque_ids.py); read and checked here.
encode_cursor = cursor


def _decode(cursor: str) -> list[str]:
    try:
        return base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor(cursor) from None


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    parts = _decode(cursor)
    if len(parts) != 2:
        raise bad_cursor(cursor)
    try:
        return utc_instant(parts[0]), uuid.UUID(parts[1])
    except (ValueError, OverflowError):
        raise bad_cursor(cursor) from None


def utc_instant(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; ValueError or OverflowError when it is none (a +14:00
    offset on the first day of year 1 falls before datetime.min in UTC)."""
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def database_integer(text: str) -> int:
    """A non-negative integer that fits the databases' 64-bit columns; ValueError for anything else."""
    if not _DATABASE_INTEGER.fullmatch(text):
        raise ValueError(f"not a database integer: {quote_value(text)}")
    value = int(text)
    if value > MAX_DATABASE_INTEGER:
        raise ValueError(f"larger than {MAX_DATABASE_INTEGER}")
    return value


def decode_text_cursor(cursor: str) -> tuple[str, str]:
    """The two texts of a cursor such as a model's (its ref and its provider)."""
    parts = _decode(cursor)
    if len(parts) != 2 or not all(parts) or not all(part.isprintable() for part in parts):
        # No control characters: PostgreSQL refuses a NUL in text outright.
        raise bad_cursor(cursor)
    return parts[0], parts[1]


def decode_event_cursor(cursor: str) -> int:
    parts = _decode(cursor)
    if len(parts) != 2 or parts[0] != "event":
        raise bad_cursor(cursor)
    try:
        return database_integer(parts[1])
    except ValueError:
        raise bad_cursor(cursor) from None


def bad_cursor(cursor: str) -> GraphQLError:
    return GraphQLError(f"{quote_value(cursor)} is not a valid cursor", extensions={"code": "BAD_USER_INPUT"})
