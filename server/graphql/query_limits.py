"""The query rate limit, as a schema extension: every query operation (over HTTP or a WebSocket) spends one
of its API key's RATE_LIMIT_QUERIES; past the limit it is answered, without running, with one error coded
RATE_LIMITED whose extensions.retryAfterSeconds says when to try again (as the mutations' userErrors do);
over HTTP the controller answers it 429 with a Retry-After header.
Mutations are counted by their resolvers (server.graphql.mutations), subscriptions by the socket caps."""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from server.services.access.rate_limits import Limited, RateLimited


class QueryRateLimit(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        runtime, viewer = getattr(context, "runtime", None), getattr(context, "viewer", None)
        if runtime is not None and viewer is not None and execution.operation_type is OperationType.QUERY:
            try:
                await runtime.rate_limits.take(viewer, Limited.QUERIES)
            except RateLimited as exc:
                refusal = exc.errors[0]
                extensions = {"code": refusal.code, "retryAfterSeconds": exc.retry_after_seconds}
                # A result set before execution stands in for it: nothing runs.
                execution.result = ExecutionResult(
                    data=None, errors=[GraphQLError(refusal.message, extensions=extensions)]
                )
        yield
