"""Outgoing webhooks in GraphQL: the endpoint and delivery types, their inputs, queries and mutations.

Thin over server.services.webhooks_out: IDs and cursors are decoded here, the rules live in the service.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial

import strawberry
from graphql import GraphQLError

from server.db.models import WebhookDelivery as DeliveryRow
from server.db.models import WebhookEndpoint as EndpointRow
from server.graphql.context import Info
from server.graphql.ids import decode_id, encode_id
from server.graphql.mutations import attempt
from server.graphql.pagination import bad_cursor, database_integer, decode_event_cursor, encode_cursor, page_size
from server.graphql.pagination import decode_text_cursor as decode_two_part_cursor
from server.graphql.types import Connection, Node, UserError
from server.services.errors import ServiceError
from server.services.webhooks_out.endpoints import Changes, WithSecret


@strawberry.type(description="A URL Darkroom sends the event log to, as signed webhooks (Standard Webhooks).")
class WebhookEndpoint(Node):
    id: strawberry.ID
    url: str
    description: str | None
    event_types: list[str] | None = strawberry.field(
        description="The event types it is sent (GENERATION_CREATED, GENERATION_UPDATED, MEDIA_UPDATED); null: all."
    )
    enabled: bool
    disabled_reason: str | None = strawberry.field(
        description="Why it was disabled: by its owner, a 410 answer, or failing for too long."
    )
    disabled_at: datetime | None
    cursor: str | None = strawberry.field(
        description="The feed cursor of the last event it was sent (or skipped); null before the first event of "
        "the log."
    )
    failed_attempts: int = strawberry.field(description="Failed tries of the next event so far (0: not failing).")
    failing_since: datetime | None = strawberry.field(description="When the first of those tries failed.")
    next_attempt_at: datetime | None = strawberry.field(description="When the next try is due, while it fails.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: EndpointRow) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(encode_id("WebhookEndpoint", row.id)),
            url=row.url,
            description=row.description,
            event_types=list(row.event_types) if row.event_types is not None else None,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            disabled_at=row.disabled_at,
            cursor=encode_cursor("event", row.cursor) if row.cursor else None,
            failed_attempts=row.attempt,
            failing_since=row.failing_since,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.type(description="One attempt to deliver one event to a webhook endpoint.")
class WebhookDelivery:
    id: strawberry.ID
    cursor: str = strawberry.field(description="The feed cursor of the event it delivered.")
    message_id: str = strawberry.field(description="Its `webhook-id` header: the same on every attempt of the event.")
    attempt: int = strawberry.field(description="1 for the event's first try, then 2, 3...")
    status_code: int | None = strawberry.field(description="The HTTP status answered; null when none came.")
    response_excerpt: str | None = strawberry.field(description="The start of the answer's body.")
    duration_ms: float
    error: str | None = strawberry.field(description="What went wrong (a status, a timeout, a refused address).")
    next_retry_at: datetime | None = strawberry.field(description="When the event is tried again, after a failure.")
    created_at: datetime

    @classmethod
    def from_row(cls, row: DeliveryRow) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(encode_id("WebhookDelivery", str(row.id))),
            cursor=encode_cursor("event", row.event_id),
            message_id=row.message_id,
            attempt=row.attempt,
            status_code=row.status_code,
            response_excerpt=row.response_excerpt,
            duration_ms=row.duration_ms,
            error=row.error,
            next_retry_at=row.next_retry_at,
            created_at=row.created_at,
        )


WebhookDeliveryConnection = Connection[WebhookDelivery]


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="An http(s) URL on a public address, without credentials.")
    event_types: list[str] | None = strawberry.field(default=None, description="Null: every event type.")
    description: str | None = None


@strawberry.input
class UpdateWebhookEndpointInput:
    id: strawberry.ID
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = strawberry.field(
        default=None, description="false disables it; true enables it again and clears its failures."
    )


@strawberry.input
class WebhookEndpointIdInput:
    id: strawberry.ID


@strawberry.input
class ReplayWebhookEndpointInput:
    id: strawberry.ID
    after: str | None = strawberry.field(
        default=None,
        description="A feed cursor (as `generationEvents` gives): the endpoint is sent every event after it. "
        "Null: from the beginning of the log.",
    )


@strawberry.type
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointSecretPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret (whsec_...), shown this once: keep it, it cannot be read again.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted_endpoint_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _with_secret(made: WithSecret) -> WebhookEndpointSecretPayload:
    return WebhookEndpointSecretPayload(endpoint=WebhookEndpoint.from_row(made.endpoint), secret=made.secret)


def _with_endpoint(row: EndpointRow) -> WebhookEndpointPayload:
    return WebhookEndpointPayload(endpoint=WebhookEndpoint.from_row(row))


def _endpoint_id(global_id: str) -> uuid.UUID:
    return decode_id(global_id, "WebhookEndpoint")


async def endpoint_node(info: Info, global_id: str) -> WebhookEndpoint | None:
    """The endpoint behind a global ID, when the caller may see it (`node(id:)` and `webhookEndpoint`)."""
    row = await info.context.runtime.webhook_endpoints.get(info.context.viewer, _endpoint_id(global_id))
    return WebhookEndpoint.from_row(row) if row is not None else None


def _delivery_before(cursor: str) -> int:
    kind, raw = decode_two_part_cursor(cursor)
    if kind != "delivery":
        raise bad_cursor(cursor)
    try:
        return database_integer(raw)
    except ValueError:
        raise bad_cursor(cursor) from None


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="Your webhook endpoints, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        rows = await info.context.runtime.webhook_endpoints.of(info.context.viewer)
        return [WebhookEndpoint.from_row(row) for row in rows]

    @strawberry.field(description="One of your webhook endpoints.")
    async def webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint | None:
        return await endpoint_node(info, id)

    @strawberry.field(description="The delivery attempts to one of your webhook endpoints, newest first.")
    async def webhook_deliveries(
        self, info: Info, endpoint_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> WebhookDeliveryConnection:
        limit = page_size(first, info.context.runtime.settings)
        before = _delivery_before(after) if after else None
        try:
            rows, more = await info.context.runtime.webhook_endpoints.deliveries(
                info.context.viewer, _endpoint_id(endpoint_id), before=before, limit=limit
            )
        except ServiceError as exc:
            raise GraphQLError(str(exc), extensions={"code": exc.errors[0].code}) from None
        pairs = [(encode_cursor("delivery", row.id), WebhookDelivery.from_row(row)) for row in rows]
        return WebhookDeliveryConnection.build(pairs, more, after is not None)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="Register a URL to be sent the events of the log from now on, signed; answers its signing "
        "secret, this once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> WebhookEndpointSecretPayload:
        create = partial(
            info.context.runtime.webhook_endpoints.create,
            info.context.viewer,
            input.url,
            input.event_types,
            input.description,
        )
        return await attempt(info, create, _with_secret, WebhookEndpointSecretPayload)

    @strawberry.mutation(description="Change a webhook endpoint; `enabled: false` disables it.")
    async def update_webhook_endpoint(self, info: Info, input: UpdateWebhookEndpointInput) -> WebhookEndpointPayload:
        changes = Changes(
            url=input.url, event_types=input.event_types, description=input.description, enabled=input.enabled
        )
        update = partial(
            info.context.runtime.webhook_endpoints.update, info.context.viewer, _endpoint_id(input.id), changes
        )
        return await attempt(info, update, _with_endpoint, WebhookEndpointPayload)

    @strawberry.mutation(description="Give a webhook endpoint a new signing secret, answered this once.")
    async def rotate_webhook_endpoint_secret(
        self, info: Info, input: WebhookEndpointIdInput
    ) -> WebhookEndpointSecretPayload:
        rotate = partial(
            info.context.runtime.webhook_endpoints.rotate_secret, info.context.viewer, _endpoint_id(input.id)
        )
        return await attempt(info, rotate, _with_secret, WebhookEndpointSecretPayload)

    @strawberry.mutation(description="Delete a webhook endpoint and its delivery log.")
    async def delete_webhook_endpoint(self, info: Info, input: WebhookEndpointIdInput) -> DeleteWebhookEndpointPayload:
        delete = partial(info.context.runtime.webhook_endpoints.delete, info.context.viewer, _endpoint_id(input.id))
        return await attempt(
            info,
            delete,
            lambda _: DeleteWebhookEndpointPayload(deleted_endpoint_id=input.id),
            DeleteWebhookEndpointPayload,
        )

    @strawberry.mutation(
        description="Send a webhook endpoint the log again from a point: every event after `after` (null: from "
        "the beginning), with its retry state reset."
    )
    async def replay_webhook_endpoint(self, info: Info, input: ReplayWebhookEndpointInput) -> WebhookEndpointPayload:
        after = decode_event_cursor(input.after) if input.after else 0
        replay = partial(
            info.context.runtime.webhook_endpoints.replay, info.context.viewer, _endpoint_id(input.id), after
        )
        return await attempt(info, replay, _with_endpoint, WebhookEndpointPayload)
