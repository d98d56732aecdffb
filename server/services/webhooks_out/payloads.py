"""The body of an outgoing webhook: one event of the log, as the `generationEvents` feed shows it.

It is rendered from the event's own snapshot (what the feed renders from too), with the GraphQL types'
field names and values: global IDs and cursors as the GraphQL layer writes them (server/opaque_ids.py),
enums as their names, the media's Darkroom URLs.
"""

from __future__ import annotations

import json
from typing import Any

from server.domain import GenerationStatus, shown_phase
from server.opaque_ids import event_cursor, global_id
from server.services.event_log.public_fields import GENERATION_FIELDS, MEDIA_FIELDS
from server.services.media.urls import media_url
from server.settings import Settings


def message_id(event_id: int) -> str:
    """The `webhook-id` of every attempt of one event: a receiver drops repeats by it."""
    return f"evt_{event_id}"


def _plain(value: Any) -> Any:
    """A shown value as JSON: enums by their name, times in ISO 8601."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


def _media(snapshot: dict[str, Any], settings: Settings) -> dict[str, Any]:
    shown = MEDIA_FIELDS.shown_from_snapshot(snapshot)
    ready = shown["status"].value == "READY"
    return {
        "id": global_id("Media", shown["raw_id"]),
        "kind": shown["kind"].value,
        "status": shown["status"].value,
        "url": media_url(settings, snapshot["storageKey"]) if ready and snapshot.get("storageKey") else None,
        "contentType": shown["content_type"],
        "byteSize": shown["byte_size"],
        "width": shown["width"],
        "height": shown["height"],
        "durationSeconds": shown["duration_seconds"],
        "sha256": shown["sha256"],
        "metadata": shown["metadata"],
        "downloadAttempts": shown["download_attempts"],
        "downloadError": shown["download_error"],
        "createdAt": _plain(shown["created_at"]),
        "readyAt": _plain(shown["ready_at"]),
    }


def generation(event: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The event's generation with the Generation type's field names (its scalars, cost and media)."""
    shown = GENERATION_FIELDS.shown_from_snapshot(event["generation"])
    body: dict[str, Any] = {"id": global_id("Generation", shown["raw_id"])}
    for name in (
        "status",
        "kind",
        "model",
        "provider",
        "model_version",
        "provider_status",
        "error",
        "progress",
        "predict_time",
        "queue_position",
        "queue_reason",
        "step",
        "total_steps",
        "expected_finish_at",
        "eta_basis",
        "metadata",
        "created_at",
        "started_at",
        "completed_at",
        "sequence",
    ):
        head, *rest = name.split("_")
        body[head + "".join(word.capitalize() for word in rest)] = _plain(shown[name])
    body["phase"] = shown_phase(shown["stored_phase"], GenerationStatus(shown["status"])).value
    body["cost"] = (
        None
        if shown["cost_amount"] is None
        else {
            "amount": shown["cost_amount"],
            "currency": shown["cost_currency"],
            "basis": shown["cost_basis"],
            "estimated": bool(shown["cost_estimated"]),
        }
    )
    body["sourceMediaId"] = global_id("Media", shown["source_media_id"]) if shown["source_media_id"] else None
    # Left out of an event past its size budget: the receiver loads them (`generation(id)`), as subscribers do.
    body["media"] = None if event.get("mediaTruncated") else [_media(item, settings) for item in event["media"]]
    return body


def body(event: dict[str, Any], settings: Settings) -> bytes:
    """The JSON body of the webhook for one event (`event`: the published form, with its `id`)."""
    return json.dumps(
        {
            "cursor": event_cursor(event["id"]),
            "type": event["type"],
            "sequence": event["seq"],
            "at": event["at"],
            "generation": generation(event, settings),
        },
        separators=(",", ":"),
    ).encode()
