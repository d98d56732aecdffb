"""GraphQL object types. Each is built from a database row or from an event's snapshot.

Built from a snapshot, a type answers its scalar fields without touching the database; only fields the
snapshot leaves out (input, logs, relations) go through a DataLoader.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, cast, overload

import strawberry
from strawberry.scalars import JSON

from server import domain
from server.db.models import CatalogModel
from server.db.models import Generation as GenerationRow
from server.db.models import Media as MediaRow
from server.graphql.context import Info
from server.graphql.ids import encode_id
from server.services.catalogue.model_schema import list_inputs
from server.services.media.urls import media_url as stored_media_url

# Registered in place, so the domain enums are the GraphQL enums and annotations stay plain classes.
strawberry.enum(domain.MediaKind, description="What a media file is: an image or a video.")
strawberry.enum(
    domain.GenerationStatus,
    description="STARTING -> PROCESSING -> one of the terminal states SUCCEEDED, FAILED, CANCELED, TIMED_OUT.",
)
strawberry.enum(
    domain.MediaStatus, description="PENDING -> DOWNLOADING -> READY or FAILED (retried with backoff before)."
)
MediaKind = domain.MediaKind
GenerationStatus = domain.GenerationStatus
MediaStatus = domain.MediaStatus

T = TypeVar("T")


@overload
def parse_datetime(value: str | datetime) -> datetime: ...
@overload
def parse_datetime(value: None) -> None: ...
def parse_datetime(value: str | datetime | None) -> datetime | None:
    """Event snapshots carry ISO strings; rows carry datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def media_url(info: Info, storage_key: str | None) -> str | None:
    if not storage_key:
        return None
    return stored_media_url(info.context.runtime.settings, storage_key)


@strawberry.interface(description="An object with a global ID (Relay).")
class Node:
    id: strawberry.ID


@strawberry.type(description="A problem with a mutation's input; nothing was changed.")
class UserError:
    field: list[str] | None = strawberry.field(description="Path to the input field at fault, if any.")
    message: str
    code: str = strawberry.field(description="Stable machine-readable code, e.g. NOT_FOUND, INVALID_INPUT.")
    retry_after_seconds: float | None = strawberry.field(
        default=None, description="With RATE_LIMITED: seconds to wait before the next attempt."
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of this page, without their cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]

    @classmethod
    def build(cls, pairs: list[tuple[str, Any]], has_next: bool, has_previous: bool) -> Connection[Any]:
        return cls(
            edges=[Edge(cursor=cursor, node=node) for cursor, node in pairs],
            page_info=PageInfo(
                has_next_page=has_next,
                has_previous_page=has_previous,
                start_cursor=pairs[0][0] if pairs else None,
                end_cursor=pairs[-1][0] if pairs else None,
            ),
        )


@strawberry.type(description="One output file of a generation, downloaded and served by Darkroom.")
class Media(Node):
    id: strawberry.ID
    kind: MediaKind
    status: MediaStatus
    content_type: str | None
    byte_size: int | None
    width: int | None
    height: int | None
    duration_seconds: float | None
    sha256: str | None
    download_attempts: int
    download_error: str | None
    created_at: datetime
    ready_at: datetime | None
    position: int
    raw_id: strawberry.Private[uuid.UUID]
    generation_id: strawberry.Private[uuid.UUID]
    storage_key: strawberry.Private[str | None]

    @strawberry.field(description="Where to fetch the file from Darkroom (never the provider's expiring link).")
    def url(self, info: Info) -> str | None:
        return media_url(info, self.storage_key) if self.status == domain.MediaStatus.READY else None

    @strawberry.field
    async def generation(self, info: Info) -> Annotated[Generation, strawberry.lazy("server.graphql.types")]:
        row = await info.context.loaders.generation.load(self.generation_id)
        assert row is not None
        return Generation.from_row(row)

    @strawberry.field(description="Generations started from this media (image-to-video).")
    async def animations(self, info: Info) -> list[Annotated[Generation, strawberry.lazy("server.graphql.types")]]:
        rows = await info.context.loaders.animations_of_media.load(self.raw_id)
        return [Generation.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: MediaRow) -> Media:
        return cls(
            id=strawberry.ID(encode_id("Media", row.id)),
            raw_id=row.id,
            generation_id=row.generation_id,
            storage_key=row.storage_key,
            kind=domain.MediaKind(row.kind),
            status=domain.MediaStatus(row.status),
            content_type=row.content_type,
            byte_size=row.byte_size,
            width=row.width,
            height=row.height,
            duration_seconds=row.duration_seconds,
            sha256=row.sha256,
            download_attempts=row.download_attempts,
            download_error=row.download_error,
            created_at=row.created_at,
            ready_at=row.ready_at,
            position=row.position,
        )

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Media:
        raw_id = uuid.UUID(snap["id"])
        created = parse_datetime(snap["createdAt"])
        assert created is not None
        return cls(
            id=strawberry.ID(encode_id("Media", raw_id)),
            raw_id=raw_id,
            generation_id=uuid.UUID(snap["generationId"]),
            storage_key=snap.get("storageKey"),
            kind=domain.MediaKind(snap["kind"]),
            status=domain.MediaStatus(snap["status"]),
            content_type=snap.get("contentType"),
            byte_size=snap.get("byteSize"),
            width=snap.get("width"),
            height=snap.get("height"),
            duration_seconds=snap.get("durationSeconds"),
            sha256=snap.get("sha256"),
            download_attempts=snap.get("downloadAttempts", 0),
            download_error=snap.get("downloadError"),
            created_at=created,
            ready_at=parse_datetime(snap.get("readyAt")),
            position=snap.get("position", 0),
        )


@strawberry.type(description="One job on the provider; it owns one Media per output file.")
class Generation(Node):
    id: strawberry.ID
    status: GenerationStatus
    kind: MediaKind = strawberry.field(description="The kind of media this generation makes.")
    model: str = strawberry.field(description='The model reference, "owner/name".')
    model_version: str | None
    provider_status: str | None = strawberry.field(
        description="The provider's own status word (keeps `aborted` apart from `canceled`)."
    )
    error: str | None
    progress: float | None = strawberry.field(description="0-1, from the model's progress lines.")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    sequence: int = strawberry.field(
        description="Number of the latest change (the event log's per-generation sequence)."
    )
    raw_id: strawberry.Private[uuid.UUID]
    source_media_id: strawberry.Private[uuid.UUID | None]
    media_snapshots: strawberry.Private[list[dict[str, Any]] | None]
    row: strawberry.Private[GenerationRow | None]

    async def _row(self, info: Info) -> GenerationRow:
        if self.row is None:
            self.row = await info.context.loaders.generation.load(self.raw_id)
        assert self.row is not None
        return self.row

    @strawberry.field(description="The input the generation was started with.")
    async def input(self, info: Info) -> JSON:
        return cast(JSON, (await self._row(info)).input)

    @strawberry.field(description="The provider's logs so far (they vanish at the provider after an hour).")
    async def logs(self, info: Info) -> str | None:
        return (await self._row(info)).logs

    @strawberry.field
    async def media(self, info: Info) -> list[Media]:
        if self.media_snapshots is not None:
            return [Media.from_snapshot(snap) for snap in self.media_snapshots]
        return [Media.from_row(row) for row in await info.context.loaders.media_of_generation.load(self.raw_id)]

    @strawberry.field(description="The image this generation animates, for image-to-video.")
    async def source_media(self, info: Info) -> Media | None:
        if self.source_media_id is None:
            return None
        row = await info.context.loaders.media.load(self.source_media_id)
        return Media.from_row(row) if row is not None else None

    @classmethod
    def from_row(cls, row: GenerationRow) -> Generation:
        return cls(
            id=strawberry.ID(encode_id("Generation", row.id)),
            raw_id=row.id,
            source_media_id=row.source_media_id,
            media_snapshots=None,
            row=row,
            status=domain.GenerationStatus(row.status),
            kind=domain.MediaKind(row.kind),
            model=row.model_ref,
            model_version=row.model_version,
            provider_status=row.provider_status,
            error=row.error,
            progress=row.progress,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            sequence=row.event_seq,
        )

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Generation:
        snap = event["generation"]
        raw_id = uuid.UUID(snap["id"])
        created = parse_datetime(snap["createdAt"])
        assert created is not None
        return cls(
            id=strawberry.ID(encode_id("Generation", raw_id)),
            raw_id=raw_id,
            source_media_id=uuid.UUID(snap["sourceMediaId"]) if snap.get("sourceMediaId") else None,
            media_snapshots=None if event.get("mediaTruncated") else event.get("media", []),
            row=None,
            status=domain.GenerationStatus(snap["status"]),
            kind=domain.MediaKind(snap["kind"]),
            model=snap["model"],
            model_version=snap.get("modelVersion"),
            provider_status=snap.get("providerStatus"),
            error=snap.get("error"),
            progress=snap.get("progress"),
            created_at=created,
            started_at=parse_datetime(snap.get("startedAt")),
            completed_at=parse_datetime(snap.get("completedAt")),
            sequence=event["seq"],
        )


@strawberry.type(description="One field of a model's input, described for building a form.")
class ModelInput:
    name: str
    type: str = strawberry.field(
        description="JSON Schema type: string, integer, number, boolean, array, object, or any."
    )
    title: str | None
    description: str | None
    default: JSON | None = strawberry.field(description="Used when the field is left out.")
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool = strawberry.field(description="The value must be greater than `minimum`.")
    exclusive_maximum: bool = strawberry.field(description="The value must be less than `maximum`.")
    options: list[JSON] | None = strawberry.field(description="Allowed values, for enums.")
    format: str | None = strawberry.field(description="JSON Schema format: uri (files), password (secrets).")
    item_type: str | None = strawberry.field(description="Type of the items, for an array.")
    required: bool
    nullable: bool = strawberry.field(description="null is accepted.")
    is_file: bool = strawberry.field(description="Takes a file, as a URL (or a list of them).")
    is_image: bool = strawberry.field(description="A file input that takes a picture (an image, a mask...).")
    is_image_input: bool = strawberry.field(
        description="The input animateImage fills with the image (the model's imageInputField)."
    )
    is_secret: bool = strawberry.field(description="Sent to the model but never stored or shown back.")
    order: int


@strawberry.type(description="A model on the provider, from the cached catalogue.")
class Model(Node):
    id: strawberry.ID
    ref: str = strawberry.field(description='"owner/name"')
    owner: str
    name: str
    description: str | None
    kind: MediaKind
    cover_image_url: str | None
    run_count: int | None
    version_id: str | None = strawberry.field(description="The version generations of this model run.")
    collections: list[str] = strawberry.field(description="The provider's collections listing it.")
    accepts_image: bool = strawberry.field(description="It has an input taking an image: imageInputField.")
    image_input_field: str | None = strawberry.field(
        description="The input taking the image to animate (image, first_frame_image, start_image...)."
    )
    input_schema: JSON | None = strawberry.field(description="The version's Input JSON Schema, refs resolved.")
    fetched_at: datetime = strawberry.field(description="When this entry was last read from the provider.")
    row: strawberry.Private[CatalogModel]

    @strawberry.field(description="The input fields in the model's own order (x-order).")
    def inputs(self) -> list[ModelInput]:
        fields = list_inputs(self.row.input_schema, self.row.image_input_field)
        return [ModelInput(**field.as_dict()) for field in fields]

    @strawberry.field(
        description="Older than the catalogue's time-to-live: served from the cache while it is refreshed, "
        "or while the provider cannot be reached."
    )
    def stale(self, info: Info) -> bool:
        return info.context.runtime.catalogue.is_stale(self.row)

    @classmethod
    def from_row(cls, row: CatalogModel) -> Model:
        return cls(
            id=strawberry.ID(encode_id("Model", row.ref)),
            ref=row.ref,
            owner=row.owner,
            name=row.name,
            description=row.description,
            kind=domain.MediaKind(row.kind),
            cover_image_url=row.cover_image_url,
            run_count=row.run_count,
            version_id=row.version_id,
            collections=list(row.collections or []),
            accepts_image=row.accepts_image,
            image_input_field=row.image_input_field,
            input_schema=cast(JSON | None, row.input_schema),
            fetched_at=row.fetched_at,
            row=row,
        )


GenerationConnection = Connection[Generation]
MediaConnection = Connection[Media]
ModelConnection = Connection[Model]


@strawberry.type(description="One change in the event log, as the live feed delivers it.")
class GenerationEvent:
    cursor: str = strawberry.field(description="Pass as `after` to resume the feed after this event.")
    sequence: int = strawberry.field(description="Per-generation sequence number of this change.")
    type: str = strawberry.field(description="GENERATION_CREATED, GENERATION_UPDATED or MEDIA_UPDATED.")
    at: datetime
    generation: Generation
