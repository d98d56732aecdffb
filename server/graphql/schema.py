"""The assembled schema, with the limits every query is checked against before it runs."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig

from server.graphql.mutations import Mutation
from server.graphql.queries import Query
from server.graphql.subscriptions import Subscription
from server.graphql.types import Generation, Media, Model
from server.settings import Settings


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # Factories, so that every operation gets fresh extension instances.
    limits: list[Callable[[], SchemaExtension]] = [
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
    ]
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Generation, Media, Model],
        config=StrawberryConfig(auto_camel_case=True),
        extensions=limits,
    )


def schema_sdl() -> str:
    """The SDL written to schema.graphql (independent of settings: limits are not part of it)."""
    return build_schema(Settings()).as_str() + "\n"
