"""GraphQL object types. Each is built from a database row or from an event's snapshot.

Generation and Media take their values through the one declaration of their public fields
(services/event_log/public_fields.py), from a row and from a snapshot alike.

Built from a snapshot, a type answers its scalar fields without touching the database; only fields the
snapshot leaves out (input, logs, relations) go through a DataLoader.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from server import domain
from server.db.models import CatalogModel, utcnow
from server.db.models import Generation as GenerationRow
from server.db.models import Media as MediaRow
from server.graphql.context import Info
from server.graphql.ids import encode_id
from server.provider.model_schema import list_inputs
from server.services.event_log.public_fields import GENERATION_FIELDS, MEDIA_FIELDS, parse_datetime
from server.services.generations import eta
from server.services.generations.durations import Durations
from server.services.media.urls import media_url as stored_media_url
from server.services.spend import costs

# Registered in place, so the domain enums are the GraphQL enums and annotations stay plain classes.
strawberry.enum(domain.MediaKind, description="What a media file is: an image or a video.")
strawberry.enum(
    domain.GenerationStatus,
    description="STARTING -> PROCESSING -> one of the terminal states SUCCEEDED, FAILED, CANCELED, TIMED_OUT.",
)
strawberry.enum(
    domain.MediaStatus, description="PENDING -> DOWNLOADING -> READY or FAILED (retried with backoff before)."
)
strawberry.enum(
    domain.GenerationPhase,
    description="What a generation is doing, in words a UI can show: QUEUED (at Darkroom), WAITING (for a "
    "worker at the provider), BOOTING (the provider starts a worker: it logs, but the run has not begun), "
    "RUNNING, SAVING (Darkroom copies its files), FINISHED.",
)
strawberry.enum(
    domain.EtaBasis,
    description="What `etaSeconds` rests on: PROGRESS (the job's own progress lines, smoothed), HISTORY (the "
    "median durations of its model's last runs here with inputs of the same size), QUEUE (its place in "
    "Darkroom's queue times that history).",
)
MediaKind = domain.MediaKind
GenerationStatus = domain.GenerationStatus
MediaStatus = domain.MediaStatus
GenerationPhase = domain.GenerationPhase
EtaBasis = domain.EtaBasis

T = TypeVar("T")


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
    metadata: JSON | None = strawberry.field(description="The caller's own JSON, as given with uploadMedia.")
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
        return cls._of(MEDIA_FIELDS.shown_from_row(row))

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Media:
        return cls._of(MEDIA_FIELDS.shown_from_snapshot(snap))

    @classmethod
    def _of(cls, shown: dict[str, Any]) -> Media:
        return cls(id=strawberry.ID(encode_id("Media", shown["raw_id"])), **shown)


@strawberry.type(description="What a generation cost, or is expected to, by the server's price table.")
class Cost:
    amount: float = strawberry.field(description="In `currency`'s units (not rounded).")
    currency: str = strawberry.field(description='An ISO code, e.g. "USD".')
    basis: str = strawberry.field(
        description='How it is priced: "per_second" (of the provider\'s predict time) or "per_output" (per file).'
    )
    estimated: bool = strawberry.field(
        description="An estimate: the generation has not settled, or the provider did not report what it is "
        "billed by. False once the provider's figures settled it."
    )

    @classmethod
    def of(cls, cost: costs.Cost | None) -> Cost | None:
        if cost is None:
            return None
        return cls(amount=cost.amount, currency=cost.currency, basis=cost.basis, estimated=cost.estimated)


@strawberry.type(description="An intermediate image the model yielded while it ran, served by Darkroom.")
class Preview:
    url: str = strawberry.field(description="Where to fetch it from Darkroom (never the provider's link).")
    at: datetime = strawberry.field(description="When Darkroom received it.")
    content_type: str


@strawberry.type(
    description="How long a start is expected to take, from the medians of the model's last succeeded runs here "
    "with inputs of the same size (outputs, pixels, frames, seconds, steps)."
)
class DurationEstimate:
    seconds: float | None = strawberry.field(description="From sent to finished; null with fewer than 3 runs.")
    start_seconds: float | None = strawberry.field(description="From sent to running (the provider's queue, boot).")
    run_seconds: float | None = strawberry.field(description="From running to finished.")
    runs: int = strawberry.field(description="How many past runs it rests on.")
    basis: EtaBasis | None = strawberry.field(description="HISTORY, or null when there is none.")

    @classmethod
    def of(cls, durations: Durations | None) -> DurationEstimate:
        if durations is None:
            return cls(seconds=None, start_seconds=None, run_seconds=None, runs=0, basis=None)
        return cls(
            seconds=round(durations.total_seconds, 2),
            start_seconds=round(durations.start_seconds, 2),
            run_seconds=round(durations.run_seconds, 2),
            runs=durations.runs,
            basis=EtaBasis.HISTORY,
        )


@strawberry.type(description="One job on the provider; it owns one Media per output file.")
class Generation(Node):
    id: strawberry.ID
    status: GenerationStatus
    kind: MediaKind = strawberry.field(description="The kind of media this generation makes.")
    model: str = strawberry.field(description='The model reference, as its provider writes it ("owner/name").')
    provider: str = strawberry.field(
        description='The provider that runs it ("replicate", "fal"; "upload" for an uploaded file): every call '
        "about it goes there, whichever provider is the default now."
    )
    model_version: str | None
    provider_status: str | None = strawberry.field(
        description="The provider's own status word (keeps `aborted` apart from `canceled`)."
    )
    error: str | None
    progress: float | None = strawberry.field(description="0-1, from the model's progress lines.")
    predict_time: float | None = strawberry.field(
        description="Seconds the model ran, as the provider measured it (what it bills by); null until it says."
    )
    queue_position: int | None = strawberry.field(
        description="While QUEUED: its place in its key's line at Darkroom (1 starts next; exact up to 10, "
        "further back rounded up to 20, 50, 100, 200, 500...). While STARTING: how many jobs wait ahead of it "
        "in the provider's queue, where the provider says (fal does). Null otherwise."
    )
    queue_reason: str | None = strawberry.field(
        description="While QUEUED: why it waits (a limit of running generations, or the provider's rate limit)."
    )
    step: int | None = strawberry.field(description="Steps done, from the model's progress lines (`n` of n/total).")
    total_steps: int | None = strawberry.field(description="Steps in all, from the same line; null before one.")
    expected_finish_at: datetime | None = strawberry.field(
        description="When it is expected to finish (see `etaSeconds`); null when there is no basis."
    )
    eta_basis: EtaBasis | None = strawberry.field(description="What `etaSeconds` rests on; null with it.")
    metadata: JSON | None = strawberry.field(description="The caller's own JSON, as given when it was started.")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    sequence: int = strawberry.field(
        description="Number of the latest change (the event log's per-generation sequence)."
    )
    raw_id: strawberry.Private[uuid.UUID]
    source_media_id: strawberry.Private[uuid.UUID | None]
    cost_amount: strawberry.Private[float | None]
    cost_currency: strawberry.Private[str | None]
    cost_basis: strawberry.Private[str | None]
    cost_estimated: strawberry.Private[bool | None]
    stored_phase: strawberry.Private[str | None]
    preview_entries: strawberry.Private[list[dict[str, Any]] | None]
    media_snapshots: strawberry.Private[list[dict[str, Any]] | None]
    row: strawberry.Private[GenerationRow | None]

    @strawberry.field(description="What it is doing, in words a UI can show.")
    def phase(self) -> GenerationPhase:
        return domain.shown_phase(self.stored_phase, self.status)

    @strawberry.field(
        description="Seconds left until it is expected to finish, by `etaBasis`: while it runs, its progress "
        "lines' own rate; before, its model's history here; in Darkroom's queue, its place times that history. "
        "Null when there is no basis (no progress lines, fewer than 3 past runs of the same input size)."
    )
    def eta_seconds(self) -> float | None:
        return eta.seconds_left(self.expected_finish_at, utcnow())

    @strawberry.field(
        description="The newest intermediate images the model yielded while it ran, oldest first: dropped when it "
        "settles, unless the server keeps them (PREVIEWS_KEEP_AFTER_SETTLE)."
    )
    def previews(self, info: Info) -> list[Preview]:
        settings = info.context.runtime.settings
        return [
            Preview(
                url=stored_media_url(settings, entry["key"]),
                at=parse_datetime(entry["at"]),
                content_type=entry["contentType"],
            )
            for entry in self.preview_entries or []
        ]

    async def _row(self, info: Info) -> GenerationRow:
        if self.row is None:
            self.row = await info.context.loaders.generation.load(self.raw_id)
        assert self.row is not None
        return self.row

    @strawberry.field(
        description="What it cost, by the price table: an estimate (`estimated`) until it settles; null when "
        "its model has no price, or no estimate could be made."
    )
    def cost(self) -> Cost | None:
        return Cost.of(costs.stored(self))

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
        return cls._of(GENERATION_FIELDS.shown_from_row(row), row=row, media_snapshots=None)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Generation:
        """From an event (or a state snapshot); its media too, unless the event had to leave them out."""
        media = None if event.get("mediaTruncated") else event.get("media", [])
        return cls._of(GENERATION_FIELDS.shown_from_snapshot(event["generation"]), row=None, media_snapshots=media)

    @classmethod
    def _of(cls, shown: dict[str, Any], **private: Any) -> Generation:
        return cls(id=strawberry.ID(encode_id("Generation", shown["raw_id"])), **shown, **private)


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
    ref: str = strawberry.field(
        description='As its provider writes it: "owner/name", or fal\'s "fal-ai/flux/dev". Prefix it with the '
        'provider ("fal:fal-ai/flux/dev") where two providers have a model of the same name.'
    )
    provider: str = strawberry.field(description='The provider that runs it: "replicate" or "fal".')
    owner: str
    name: str
    description: str | None
    kind: MediaKind
    cover_image_url: str | None
    run_count: int | None
    version_id: str | None = strawberry.field(
        description="The version generations of this model run unless they pin one; null when it runs by its "
        "name, at whatever version its owner serves (an official model)."
    )
    collections: list[str] = strawberry.field(description="The provider's collections listing it.")
    accepts_image: bool = strawberry.field(description="It has an input taking an image: imageInputField.")
    image_input_field: str | None = strawberry.field(
        description="The input taking the image to animate (image, first_frame_image, start_image...)."
    )
    input_schema: JSON | None = strawberry.field(description="The version's Input JSON Schema, refs resolved.")
    example: JSON | None = strawberry.field(description="An example input, where the provider gives one.")
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
            id=strawberry.ID(encode_id("Model", row.key)),
            ref=row.ref,
            provider=row.provider,
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
            example=cast(JSON | None, row.example),
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
