"""Query resolvers: decode arguments, call the read layer, wrap rows in types."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from server.graphql.context import Info
from server.graphql.ids import decode_any, decode_id
from server.graphql.inputs import GenerationFilter, MediaFilter
from server.graphql.pagination import decode_text_cursor, decode_time_cursor, encode_cursor, page_size
from server.graphql.stats import Stats, resolve_stats
from server.graphql.types import (
    Connection,
    Generation,
    GenerationConnection,
    Media,
    MediaConnection,
    MediaKind,
    Model,
    ModelConnection,
    Node,
)
from server.services.errors import ServiceError
from server.services.generations import queries


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
        raise GraphQLError(str(exc), extensions={"code": exc.errors[0].code}) from None
    return Model.from_row(row)


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
        return None

    @strawberry.field
    async def generation(self, info: Info, id: strawberry.ID) -> Generation | None:
        return await _generation(info, id)

    @strawberry.field(description="Generations, newest first.")
    async def generations(
        self,
        info: Info,
        filter: GenerationFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> GenerationConnection:
        limit = page_size(first, info.context.runtime.settings)
        flt = queries.GenerationFilter(
            statuses=[s.value for s in (filter.status or [])] if filter else [],
            kind=filter.kind.value if filter and filter.kind else None,
            model=filter.model if filter else None,
        )
        async with info.context.runtime.sessions() as session:
            page = await queries.generations_page(
                session, info.context.viewer, flt, decode_time_cursor(after) if after else None, limit
            )
        for row in page.items:
            info.context.loaders.generation.prime(row.id, row)
        pairs = [(encode_cursor(row.created_at, row.id), Generation.from_row(row)) for row in page.items]
        return Connection.build(pairs, page.has_next, after is not None)

    @strawberry.field(description="Media files, newest first.")
    async def media(
        self,
        info: Info,
        filter: MediaFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> MediaConnection:
        limit = page_size(first, info.context.runtime.settings)
        flt = queries.MediaFilter(
            statuses=[s.value for s in (filter.status or [])] if filter else [],
            kind=filter.kind.value if filter and filter.kind else None,
            generation_id=decode_id(filter.generation_id, "Generation") if filter and filter.generation_id else None,
        )
        async with info.context.runtime.sessions() as session:
            page = await queries.media_page(
                session, info.context.viewer, flt, decode_time_cursor(after) if after else None, limit
            )
        for row in page.items:
            info.context.loaders.media.prime(row.id, row)
        pairs = [(encode_cursor(row.created_at, row.id), Media.from_row(row)) for row in page.items]
        return Connection.build(pairs, page.has_next, after is not None)

    @strawberry.field(
        description="Image and video models from the provider's catalogue, by ref. Served from a cache "
        "refreshed in the background; `search` also asks the provider's search."
    )
    async def models(
        self,
        info: Info,
        kind: MediaKind | None = None,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ModelConnection:
        limit = page_size(first, info.context.runtime.settings)
        try:
            page = await info.context.runtime.catalogue.list_models(
                kind=kind.value if kind else None,
                search=search,
                after=decode_text_cursor(after) if after else None,
                limit=limit,
            )
        except ServiceError as exc:
            raise GraphQLError(str(exc), extensions={"code": exc.errors[0].code}) from None
        pairs = [(encode_cursor(row.ref), Model.from_row(row)) for row in page.items]
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
        "the last `windowHours` (counting only what you can see)."
    )
    async def stats(self, info: Info, window_hours: float = 24.0) -> Stats:
        return await resolve_stats(info, window_hours)

    @strawberry.field(description='One model by reference, "owner/name"; fetched from the provider when not cached.')
    async def model(self, info: Info, ref: str) -> Model | None:
        try:
            row = await info.context.runtime.catalogue.find_model(ref)
        except ServiceError as exc:
            raise GraphQLError(str(exc), extensions={"code": exc.errors[0].code}) from None
        return Model.from_row(row) if row is not None else None
