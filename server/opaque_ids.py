"""The opaque strings clients are given, written in one place: Relay global IDs ("Type:uuid") and cursors
("part|part"), each as unpadded URL-safe base64. The GraphQL layer reads and checks them on the way in
(server/graphql/ids.py, pagination.py); outgoing webhooks write them too."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any


def _opaque(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def global_id(type_name: str, raw: uuid.UUID | str) -> str:
    return _opaque(f"{type_name}:{raw}")


def cursor(*parts: Any) -> str:
    return _opaque("|".join(part.isoformat() if isinstance(part, datetime) else str(part) for part in parts))


def event_cursor(event_id: int) -> str:
    """The `generationEvents` feed's cursor of one event."""
    return cursor("event", event_id)
