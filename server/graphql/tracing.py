"""The GraphQL operation's span: Strawberry's OpenTelemetryExtension, told to record no values.

Strawberry's extension records the document's text (which may hold literal arguments) and every
resolver's arguments; this one records the operation's type and name only, and no resolver spans.
Subscriptions get no span here: a subscription lives as long as its socket, and each event's render is
spanned once per render group by the fan-out (server/graphql/live/fan_out.py). A traced response carries its
trace id in `extensions.traceId`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from inspect import isawaitable
from typing import Any

from graphql import GraphQLResolveInfo
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from strawberry.extensions.tracing import OpenTelemetryExtension
from strawberry.types.graphql import OperationType


def _no_arguments(_args: dict[str, Any], _info: GraphQLResolveInfo) -> dict[str, Any]:
    return {}


class OperationSpan(OpenTelemetryExtension):
    def __init__(self) -> None:
        super().__init__(arg_filter=_no_arguments)
        self._span: Span | None = None
        self._started = 0

    def on_operation(self) -> Generator[None, None, None]:
        # The span is opened once the operation's type is known (on_execute), from this start time.
        self._started = time.time_ns()
        try:
            yield
        finally:
            if self._span is None and not self._is_subscription():
                # Refused before it ran (a syntax error, a failed validation): still one span for it.
                self._open().set_status(Status(StatusCode.ERROR))
            if self._span is not None:
                self._span.end()

    def on_parse(self) -> Generator[None, None, None]:
        yield

    def on_validate(self) -> Generator[None, None, None]:
        yield

    def on_execute(self) -> Generator[None, None, None]:
        if self._is_subscription():
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(self._open()))
        try:
            yield
        finally:
            otel_context.detach(token)

    async def resolve(
        self, _next: Callable[..., Any], root: Any, info: GraphQLResolveInfo, *args: Any, **kwargs: Any
    ) -> Any:
        # No span per resolver: a page's items would be hundreds, and the operation's span is the one the
        # mutation's work (the provider call, the event) hangs under and a generation's row names.
        result = _next(root, info, *args, **kwargs)
        return await result if isawaitable(result) else result

    def get_results(self) -> dict[str, Any]:
        if self._span is None:
            return {}
        context = self._span.get_span_context()
        return {"traceId": format(context.trace_id, "032x")} if context.is_valid else {}

    def _is_subscription(self) -> bool:
        try:
            return self.execution_context.operation_type is OperationType.SUBSCRIPTION
        except Exception:
            return False  # not parsed (a syntax error): not a subscription that runs

    def _open(self) -> Span:
        try:
            kind = self.execution_context.operation_type.value
        except Exception:
            kind = "operation"
        name = self.execution_context.operation_name
        self._span = self._tracer.start_span(
            f"GraphQL {kind}: {name}" if name else f"GraphQL {kind}",
            kind=SpanKind.SERVER,
            start_time=self._started,
            attributes={
                "component": "graphql",
                "graphql.operation.type": kind,
                **({"graphql.operation.name": name} if name else {}),
            },
        )
        return self._span
