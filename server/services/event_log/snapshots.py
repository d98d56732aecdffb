"""The small JSON state an event carries, so subscribers never read the database per event.

A published event holds the generation's scalar state and a summary of each media row: everything a
subscription's selection usually needs (the fields public_fields.py declares). Large fields (input,
logs) stay out; resolvers load them on demand. Every subscriber's tailer reads each event, and every
subscription renders from it, so an event stays small: long texts are cut and, past a budget, the media
list is left out (`mediaTruncated`) for subscribers to load instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from server.db.models import AnyGeneration, Generation, Media
from server.services.event_log.public_fields import GENERATION_FIELDS, MEDIA_FIELDS
from server.telemetry import current_traceparent

# The budget of one event's JSON: room for a generation's scalars and a few dozen media summaries.
MAX_EVENT_BYTES = 7000


def generation_snapshot(generation: AnyGeneration) -> dict[str, Any]:
    return GENERATION_FIELDS.snapshot(generation)


def media_snapshot(media: Media) -> dict[str, Any]:
    return MEDIA_FIELDS.snapshot(media)


def _event(
    *, event_id: int, seq: int, type_: str, generation: AnyGeneration, media: list[Media], at: datetime
) -> dict[str, Any]:
    snapshot = generation_snapshot(generation)
    return {
        "id": event_id,
        "seq": seq,
        "type": type_,
        "at": at.isoformat(),
        "generationId": snapshot["id"],
        "ownerId": snapshot["ownerId"],
        "generation": snapshot,
        "media": [media_snapshot(item) for item in media],
        "mediaTruncated": False,
    }


def event_payload(
    *, event_id: int, seq: int, type_: str, generation: AnyGeneration, media: list[Media], at: datetime
) -> dict[str, Any]:
    return event_record(event_id=event_id, seq=seq, type_=type_, generation=generation, media=media, at=at)[0]


def event_record(
    *, event_id: int, seq: int, type_: str, generation: AnyGeneration, media: list[Media], at: datetime
) -> tuple[dict[str, Any], str]:
    """The event's payload, and the same payload as compact JSON (what the event log stores)."""
    payload = _event(event_id=event_id, seq=seq, type_=type_, generation=generation, media=media, at=at)
    if (traceparent := current_traceparent()) is not None:
        # The span that logged it: the tailer's read and the fan-out that deliver it link to it.
        payload["traceparent"] = traceparent
    encoded = json.dumps(payload, separators=(",", ":"))
    if len(encoded) > MAX_EVENT_BYTES:
        payload["media"] = []
        payload["mediaTruncated"] = True
        encoded = json.dumps(payload, separators=(",", ":"))
    return payload, encoded


def state_snapshot(generation: Generation, media: list[Media]) -> dict[str, Any]:
    """The stored state in the shape of an event (never published, so never cut short)."""
    return _event(
        event_id=0,
        seq=generation.event_seq,
        type_="SNAPSHOT",
        generation=generation,
        media=media,
        at=generation.updated_at,
    )
