"""The small JSON state an event carries, so subscribers never read the database per event.

A published event holds the generation's scalar state and a summary of each media row: everything a
subscription's selection usually needs. Large fields (input, logs) stay out; resolvers load them on
demand. Events must fit Postgres' 8,000-byte NOTIFY payload, so long texts are cut and, past a budget,
the media list is left out (`mediaTruncated`) for subscribers to load instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from server.db.models import AnyGeneration, Generation, Media

MAX_EVENT_BYTES = 7000
MAX_TEXT = 300


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"


def generation_snapshot(generation: AnyGeneration) -> dict[str, Any]:
    return {
        "id": str(generation.id),
        "ownerId": str(generation.owner_id) if generation.owner_id else None,
        "kind": generation.kind,
        "status": generation.status,
        "model": generation.model_ref,
        "modelVersion": generation.model_version,
        "providerId": generation.provider_id,
        "providerStatus": generation.provider_status,
        "error": _cut(generation.error),
        "progress": generation.progress,
        "sourceMediaId": str(generation.source_media_id) if generation.source_media_id else None,
        "createdAt": _iso(generation.created_at),
        "updatedAt": _iso(generation.updated_at),
        "startedAt": _iso(generation.started_at),
        "completedAt": _iso(generation.completed_at),
        "seq": generation.event_seq,
    }


def media_snapshot(media: Media) -> dict[str, Any]:
    return {
        "id": str(media.id),
        "generationId": str(media.generation_id),
        "ownerId": str(media.owner_id) if media.owner_id else None,
        "position": media.position,
        "kind": media.kind,
        "status": media.status,
        "storageKey": media.storage_key,
        "contentType": media.content_type,
        "byteSize": media.byte_size,
        "width": media.width,
        "height": media.height,
        "durationSeconds": media.duration_seconds,
        "sha256": media.sha256,
        "downloadAttempts": media.download_attempts,
        "downloadError": _cut(media.download_error),
        "createdAt": _iso(media.created_at),
        "readyAt": _iso(media.ready_at),
    }


def event_payload(
    *, event_id: int, seq: int, type_: str, generation: AnyGeneration, media: list[Media], at: datetime
) -> dict[str, Any]:
    return event_record(event_id=event_id, seq=seq, type_=type_, generation=generation, media=media, at=at)[0]


def event_record(
    *, event_id: int, seq: int, type_: str, generation: AnyGeneration, media: list[Media], at: datetime
) -> tuple[dict[str, Any], str]:
    """The event's payload, and the same payload as compact JSON (what the event log stores)."""
    payload: dict[str, Any] = {
        "id": event_id,
        "seq": seq,
        "type": type_,
        "at": at.isoformat(),
        "generationId": str(generation.id),
        "ownerId": str(generation.owner_id) if generation.owner_id else None,
        "generation": generation_snapshot(generation),
        "media": [media_snapshot(item) for item in media],
        "mediaTruncated": False,
    }
    encoded = json.dumps(payload, separators=(",", ":"))
    if len(encoded) > MAX_EVENT_BYTES:
        payload["media"] = []
        payload["mediaTruncated"] = True
        encoded = json.dumps(payload, separators=(",", ":"))
    return payload, encoded


def state_snapshot(generation: Generation, media: list[Media]) -> dict[str, Any]:
    """The stored state in the shape of an event (never published, so never cut short)."""
    return {
        "id": 0,
        "seq": generation.event_seq,
        "type": "SNAPSHOT",
        "at": generation.updated_at.isoformat(),
        "generationId": str(generation.id),
        "ownerId": str(generation.owner_id) if generation.owner_id else None,
        "generation": generation_snapshot(generation),
        "media": [media_snapshot(item) for item in media],
        "mediaTruncated": False,
    }
