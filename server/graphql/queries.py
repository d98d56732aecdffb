"""Query resolvers: decode arguments, call the read layer, wrap rows in types."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from server.db.models import Generation as GenerationRow
from server.db.models import Media as MediaRow
from server.graphql.context import Info
from server.graphql.ids import decode_any, decode_id
from server.graphql.inputs import GenerationFilter, MediaFilter, metadata_filter, refuse_control_characters
from server.graphql.pagination import decode_text_cursor, decode_time_cursor, encode_cursor, page_size
from server.graphql.spend import Viewer as ViewerType
from server.graphql.stats import Stats
from server.graphql.types import (
    Connection,
    Cost,
    DurationEstimate,
    Generation,
    GenerationConnection,
    Media,
    MediaConnection,
    MediaKind,
    Model,
    ModelConnection,
    Node,
)
from server.graphql.webhooks_out import endpoint_node
from server.services.access.viewer import Viewer
from server.services.errors import ServiceError
from server.services.generations import queries
from server.services.operations.stats import Stats as CollectedStats

Row = TypeVar("Row", GenerationRow, MediaRow)
Flt = TypeVar("Flt")
NodeT = TypeVar("NodeT")


def refusal(exc: ServiceError) -> GraphQLError:
    """A query the service refused, as the GraphQL error the response carries."""
    return GraphQLError(str(exc), extensions={"code": exc.errors[0].code})


async def _generation(info: Info, global_id: str) -> Generation | None:
    row = await info.context.loaders.generation.load(decode_id(global_id, "Generation"))
    return Generation.from_row(row) if row and info.context.viewer.can_see(row.owner_id) else None


async def _media(info: Info, global_id: str) -> Media | None:
    row = await info.context.loaders.media.load(decode_id(global_id, "Media"))
    return Media.from_row(row) if row and info.context.viewer.can_see(row.owner_id) else None


async def _model(info: Info, ref: str) -> Model | None:
    try:
        row = await info.context.runtime.catalogue.get_model(ref)
    except ServiceError as exc:
        if exc.errors[0].code == "NOT_FOUND":
            return None
        raise refusal(exc) from None
    return Model.from_row(row)


def _statuses_and_kind(filter: GenerationFilter | MediaFilter | None) -> dict[str, Any]:
    """What both list filters share, as the read layer's filter fields."""
    if filter is None:
        return {}
    return {
        "statuses": [status.value for status in filter.status or []],
        "kind": filter.kind.value if filter.kind else None,
    }


async def _newest_first(
    info: Info,
    read: Callable[[AsyncSession, Viewer, Flt, queries.TimeCursor | None, int], Awaitable[queries.Page[Row]]],
    flt: Flt,
    loader: DataLoader[uuid.UUID, Row | None],
    node: Callable[[Row], NodeT],
    first: int | None,
    after: str | None,
) -> Connection[NodeT]:
    """A page of `read`'s rows, each primed in `loader` (resolvers below ask for it again) and wrapped."""
    limit = page_size(first, info.context.runtime.settings)
    async with info.context.runtime.sessions() as session:
        page = await read(session, info.context.viewer, flt, decode_time_cursor(after) if after else None, limit)
    for row in page.items:
        loader.prime(row.id, row)
    pairs = [(encode_cursor(row.created_at, row.id), node(row)) for row in page.items]
    return Connection.build(pairs, page.has_next, after is not None)


@strawberry.type
class Query:
    @strawberry.field(description="Fetch any object by its global ID.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, raw = decode_any(id)
        if type_name == "Generation":
            return await _generation(info, id)
        if type_name == "Media":
            return await _media(info, id)
        if type_name == "Model":
            return await _model(info, raw)
        if type_name == "WebhookEndpoint":
            return await endpoint_node(info, id)
        return None

    @strawberry.field
    async def generation(self, info: Info, id: strawberry.ID) -> Generation | None:
        return await _generation(info, id)

    @strawberry.field(description="Generations, newest first.")
    async def generations(
        self, info: Info, filter: GenerationFilter | None = None, first: int | None = None, after: str | None = None
    ) -> GenerationConnection:
        refuse_control_characters(filter.model if filter else None, "filter.model")
        flt = queries.GenerationFilter(
            **_statuses_and_kind(filter),
            model=filter.model if filter else None,
            metadata=metadata_filter(filter.metadata if filter else None, "filter.metadata"),
        )
        loader = info.context.loaders.generation
        return await _newest_first(info, queries.generations_page, flt, loader, Generation.from_row, first, after)

    @strawberry.field(description="Media files, newest first.")
    async def media(
        self, info: Info, filter: MediaFilter | None = None, first: int | None = None, after: str | None = None
    ) -> MediaConnection:
        generation_id = decode_id(filter.generation_id, "Generation") if filter and filter.generation_id else None
        flt = queries.MediaFilter(
            **_statuses_and_kind(filter),
            generation_id=generation_id,
            metadata=metadata_filter(filter.metadata if filter else None, "filter.metadata"),
        )
        loader = info.context.loaders.media
        return await _newest_first(info, queries.media_page, flt, loader, Media.from_row, first, after)

    @strawberry.field(
        description="Image and video models from the providers' catalogues, by ref. Served from a cache "
        "refreshed in the background; `search` also asks the providers' searches."
    )
    async def models(
        self,
        info: Info,
        kind: MediaKind | None = None,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
        provider: Annotated[
            str | None, strawberry.argument(description='Only this provider\'s models ("replicate", "fal").')
        ] = None,
    ) -> ModelConnection:
        limit = page_size(first, info.context.runtime.settings)
        refuse_control_characters(search, "search")
        refuse_control_characters(provider, "provider")
        try:
            page = await info.context.runtime.catalogue.list_models(
                kind=kind.value if kind else None,
                provider=provider,
                search=search,
                after=decode_text_cursor(after) if after else None,
                limit=limit,
            )
        except ServiceError as exc:
            raise refusal(exc) from None
        pairs = [(encode_cursor(row.ref, row.provider), Model.from_row(row)) for row in page.items]
        return Connection.build(pairs, page.has_next, after is not None)

    @strawberry.field(
        description="The cursor of the newest change you can see. Read it before your first query and pass it "
        "as `after` to `generationEvents`: the feed then carries every change since, so none can fall between "
        "the query and the subscription."
    )
    async def feed_cursor(self, info: Info) -> str:
        async with info.context.runtime.sessions() as session:
            return encode_cursor("event", await queries.latest_event_id(session, info.context.viewer))

    @strawberry.field(
        description="Success and failure rates per model and kind, download retries and storage used, over "
        "the last `windowHours` (counting only what you can see).",
        graphql_type=Stats,
    )
    async def stats(self, info: Info, window_hours: float = 24.0) -> CollectedStats:
        try:
            return await info.context.runtime.stats.collect(info.context.viewer, window_hours)
        except ServiceError as exc:
            raise refusal(exc) from None

    @strawberry.field(
        description="What starting `model` with `input` is expected to cost (`estimated` is true): per output, "
        "by the outputs the input asks for (num_outputs, num_images... or the model's default); per second, by "
        "the median predict time of the model's recent succeeded generations here. Null when the model has no "
        "price, or no history to estimate from."
    )
    async def estimate_cost(self, info: Info, model: str, input: JSON) -> Cost | None:
        refuse_control_characters(model, "model")
        try:
            row = await info.context.runtime.catalogue.get_model(model)
        except ServiceError as exc:
            raise refusal(exc) from None
        return Cost.of(await info.context.runtime.spend.estimate_start(row, input))

    @strawberry.field(
        description="How long starting `model` with `input` is expected to take, before it starts: the medians "
        "of the model's last ETA_HISTORY_RUNS succeeded runs here with inputs of the same size. Its fields are "
        "null when there are fewer than 3 such runs."
    )
    async def estimate_duration(self, info: Info, model: str, input: JSON) -> DurationEstimate:
        refuse_control_characters(model, "model")
        try:
            if not isinstance(input, dict):
                raise ServiceError.single("INVALID_INPUT", "input must be a JSON object", ["input"])
            row = await info.context.runtime.catalogue.get_model(model)
        except ServiceError as exc:
            raise refusal(exc) from None
        return DurationEstimate.of(await info.context.runtime.generations.estimate_duration(row, input))

    @strawberry.field(description="The caller (its API key, or everyone on an open server) and its spend.")
    def viewer(self) -> ViewerType:
        return ViewerType()

    @strawberry.field(
        description='One model by reference, "owner/name" (or "provider:owner/name"); fetched from the providers '
        "when not cached."
    )
    async def model(self, info: Info, ref: str) -> Model | None:
        refuse_control_characters(ref, "ref")
        try:
            row = await info.context.runtime.catalogue.find_model(ref)
        except ServiceError as exc:
            raise refusal(exc) from None
        return Model.from_row(row) if row is not None else None
