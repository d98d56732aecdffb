"""Relay global IDs: base64 of "Type:uuid", opaque to clients, checked on the way in."""

from __future__ import annotations

import base64
import binascii
import re
import uuid

from graphql import GraphQLError

from server.opaque_ids import global_id
from server.quoting import quote_value

# Written in one place for every layer (server/opaque_ids.py); read and checked here.
encode_id = global_id


def decode_any(global_id: str) -> tuple[str, str]:
    """(type name, raw id) of a global ID, or a GraphQL error saying it is malformed."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_id(global_id) from None
    if not type_name or not raw or not raw.isprintable():
        # No control characters: the raw part can reach SQL (a Model's ref), and PostgreSQL refuses a NUL.
        raise bad_id(global_id)
    return type_name, raw


def decode_id(global_id: str, expected: str) -> uuid.UUID:
    """The UUID inside a global ID of type `expected`; a GraphQL error for anything else."""
    type_name, raw = decode_any(global_id)
    if type_name != expected:
        raise GraphQLError(
            f"ID {quote_value(global_id)} is a {quote_value(type_name)} ID, not a {expected} ID",
            extensions={"code": "BAD_USER_INPUT"},
        )
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad_id(global_id) from None


# What a global ID can look like: unpadded URL-safe base64, short. A URL or a data: URI never is.
_GLOBAL_ID = re.compile(r"[A-Za-z0-9_-]{8,120}")


def media_uuid(value: str) -> uuid.UUID | None:
    """The UUID inside `value` when it is a Media global ID; None for anything else (a URL, any text)."""
    if not _GLOBAL_ID.fullmatch(value):
        return None
    try:
        type_name, raw = decode_any(value)
        return uuid.UUID(raw) if type_name == "Media" else None
    except (GraphQLError, ValueError):
        return None


def media_ids_in(input: object) -> dict[str, uuid.UUID]:
    """Every Media global ID an input object gives as a value or a list item, by its text (stripped).

    The service decides which of them stand in file inputs; the others stay the text they are."""
    if not isinstance(input, dict):
        return {}
    found: dict[str, uuid.UUID] = {}
    for value in input.values():
        for item in value if isinstance(value, list) else [value]:
            media_id = media_uuid(item.strip()) if isinstance(item, str) else None
            if media_id is not None:
                found[item.strip()] = media_id
    return found


def bad_id(global_id: str) -> GraphQLError:
    return GraphQLError(f"{quote_value(global_id)} is not a valid ID", extensions={"code": "BAD_USER_INPUT"})
