"""The assembled schema, with the limits every query is checked against before it runs."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from server.graphql.cost import QueryCostLimiter
from server.graphql.errors import log_errors
from server.graphql.live.fan_out import LiveFanOut
from server.graphql.live.rendering import RenderCache, shared_render_executor
from server.graphql.mutations import Mutation
from server.graphql.queries import Query
from server.graphql.query_limits import QueryRateLimit
from server.graphql.subscriptions import Subscription
from server.graphql.types import Generation, Media, Model
from server.graphql.webhooks_out import WebhookMutation, WebhookQuery
from server.settings import Settings
from server.telemetry import enabled as tracing_enabled


class DarkroomSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Strawberry logs every error at ERROR with a traceback; most are the client's (see server.graphql.errors).
        log_errors(errors, execution_context.operation_name if execution_context else None)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # Validation results are cached by (document, rules), so the limit rules are built once, not per request.
    rules = [
        *QueryDepthLimiter(max_depth=settings.graphql.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql.max_aliases).validation_rules,
    ]
    cache_size = settings.graphql.document_cache_size
    # Factories, so that every operation gets fresh extension instances; the caches behind them are shared.
    limits: list[Callable[[], SchemaExtension]] = [
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=settings.graphql.max_tokens),
        lambda: ParserCache(maxsize=cache_size),
        lambda: ValidationCache(maxsize=cache_size),
        # After the validation cache: only a document that validates is counted.
        lambda: QueryCostLimiter(
            max_cost=settings.graphql.max_cost,
            default_page=settings.graphql.default_page_size,
            max_page=settings.graphql.max_page_size,
        ),
        QueryRateLimit,
    ]
    if tracing_enabled():
        from server.graphql.tracing import OperationSpan

        limits.append(OperationSpan)
    return DarkroomSchema(
        query=merge_types("Query", (Query, WebhookQuery)),
        mutation=merge_types("Mutation", (Mutation, WebhookMutation)),
        subscription=Subscription,
        types=[Generation, Media, Model],
        config=StrawberryConfig(auto_camel_case=True),
        extensions=limits,
        # Subscribers alike share one execution per event (see live/rendering.py).
        execution_context_class=shared_render_executor(
            RenderCache(settings.events.subscription_render_cache_size),
            LiveFanOut(settings.events.subscriber_buffer_bytes),
            settings.graphql.document_cache_size,
        ),
    )


def schema_sdl() -> str:
    """The SDL written to schema.graphql (independent of settings: limits are not part of it)."""
    return build_schema(Settings()).as_str() + "\n"
