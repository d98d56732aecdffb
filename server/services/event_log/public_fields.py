"""The public fields of a generation and of a media file, declared once.

Each field names the row attribute it comes from, its key in an event's snapshot (snapshots.py) and the
attribute it fills on the GraphQL type (graphql/types.py); both are built from these lists. A new column
is added to the model, to a migration and here. A snapshot is JSON, so each field also says how its
value is written into one and read back (from a snapshot or from a row alike).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from server.domain import EtaBasis, GenerationStatus, MediaKind, MediaStatus

# Long texts are cut in snapshots, so that an event stays within its budget (snapshots.py).
MAX_TEXT = 300


@overload
def parse_datetime(value: str | datetime) -> datetime: ...
@overload
def parse_datetime(value: None) -> None: ...
def parse_datetime(value: str | datetime | None) -> datetime | None:
    """Snapshots carry ISO strings; rows carry datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _same(value: Any) -> Any:
    return value


def _uuid_text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _uuid(value: str | uuid.UUID | None) -> uuid.UUID | None:
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _json_value(value: Any) -> Any:
    """A JSON column's value. Read without the ORM (asyncpg, the provider-update path), a JSON column
    arrives as its text; the metadata it holds is always an object, so text is that encoding."""
    return json.loads(value) if isinstance(value, str) else value


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True, slots=True)
class Codec:
    """How a value is written into a snapshot, and read back from a snapshot or a row."""

    write: Callable[[Any], Any] = _same
    read: Callable[[Any], Any] = _same


PLAIN = Codec()
ID = Codec(_uuid_text, _uuid)
TIME = Codec(_iso, parse_datetime)
TEXT = Codec(write=_cut)
JSON_VALUE = Codec(_json_value, _json_value)  # a row keeps the whole text; a snapshot the start of it


@dataclass(frozen=True, slots=True)
class Field:
    attribute: str  # on the row (and on GenerationRow, its plain copy)
    codec: Codec = PLAIN
    key: str | None = None  # in the snapshot; None for the attribute in camelCase
    shown_as: str | None = None  # on the GraphQL type; None for the attribute itself
    shown: bool = True  # False: in snapshots only, never on the GraphQL type
    missing: Any = None  # read from a snapshot without the key

    @property
    def snapshot_key(self) -> str:
        if self.key is not None:
            return self.key
        head, *rest = self.attribute.split("_")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def graphql_name(self) -> str:
        return self.shown_as or self.attribute


class PublicFields:
    """One entity's public fields, in the order its snapshot lists them.

    Most values pass as they are; only the others go through their codec (this runs for every event)."""

    def __init__(self, *fields: Field) -> None:
        shown = [field for field in fields if field.shown]
        self._keys = [(field.snapshot_key, field.attribute) for field in fields]
        self._written = [(field.snapshot_key, field.codec.write) for field in fields if field.codec.write is not _same]
        self._shown_attributes = [(field.graphql_name, field.attribute) for field in shown]
        self._shown_keys = [(field.graphql_name, field.snapshot_key, field.missing) for field in shown]
        self._read = [(field.graphql_name, field.codec.read) for field in shown if field.codec.read is not _same]

    def snapshot(self, row: Any) -> dict[str, Any]:
        """The row's fields as the JSON an event carries."""
        snapshot = {key: getattr(row, attribute) for key, attribute in self._keys}
        for key, write in self._written:
            snapshot[key] = write(snapshot[key])
        return snapshot

    def shown_from_row(self, row: Any) -> dict[str, Any]:
        """What the GraphQL type shows, by its attribute names, read from a row."""
        return self._decoded({name: getattr(row, attribute) for name, attribute in self._shown_attributes})

    def shown_from_snapshot(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The same, read from a snapshot."""
        return self._decoded({name: snapshot.get(key, missing) for name, key, missing in self._shown_keys})

    def _decoded(self, shown: dict[str, Any]) -> dict[str, Any]:
        for name, read in self._read:
            shown[name] = read(shown[name])
        return shown


def _enum(kind: Callable[[Any], Any]) -> Codec:
    return Codec(read=kind)


def _enum_or_none(kind: Callable[[Any], Any]) -> Codec:
    return Codec(read=lambda value: None if value is None else kind(value))


GENERATION_FIELDS = PublicFields(
    Field("id", ID, shown_as="raw_id"),
    Field("owner_id", ID, shown=False),
    Field("kind", _enum(MediaKind)),
    Field("status", _enum(GenerationStatus)),
    Field("model_ref", key="model", shown_as="model"),
    Field("model_version"),
    Field("provider"),
    Field("provider_id", shown=False),
    Field("provider_status"),
    Field("error", TEXT),
    Field("progress"),
    Field("predict_time"),
    Field("queue_position"),
    Field("queue_reason"),
    # What it cost, or is expected to (the GraphQL type shows them together as `cost`).
    Field("cost_amount"),
    Field("cost_currency"),
    Field("cost_basis"),
    Field("cost_estimated"),
    Field("client_metadata", JSON_VALUE, key="metadata", shown_as="metadata"),
    # Live progress: the phase is shown through a resolver (rows from before it have none stored).
    Field("phase", shown_as="stored_phase"),
    Field("step"),
    Field("total_steps"),
    Field("expected_finish_at", TIME),
    Field("eta_basis", _enum_or_none(EtaBasis)),
    Field("previews", JSON_VALUE, shown_as="preview_entries"),
    Field("source_media_id", ID),
    Field("created_at", TIME),
    Field("updated_at", TIME, shown=False),
    Field("started_at", TIME),
    Field("completed_at", TIME),
    Field("event_seq", key="seq", shown_as="sequence"),
)

MEDIA_FIELDS = PublicFields(
    Field("id", ID, shown_as="raw_id"),
    Field("generation_id", ID),
    Field("owner_id", ID, shown=False),
    Field("position", missing=0),
    Field("kind", _enum(MediaKind)),
    Field("status", _enum(MediaStatus)),
    Field("storage_key"),
    Field("content_type"),
    Field("byte_size"),
    Field("width"),
    Field("height"),
    Field("duration_seconds"),
    Field("sha256"),
    Field("client_metadata", JSON_VALUE, key="metadata", shown_as="metadata"),
    Field("download_attempts", missing=0),
    Field("download_error", TEXT),
    Field("created_at", TIME),
    Field("ready_at", TIME),
)


def owner_of(snapshot: dict[str, Any]) -> uuid.UUID | None:
    """Who owns what a snapshot (or an event, which carries the same key) describes."""
    return _uuid(snapshot.get("ownerId"))
