"""Render once, send to many: one execution and one encoding per event for every subscriber alike.

Strawberry (like graphql-core) executes a subscription's selection once per subscriber and event, and
encodes a frame for each. Here subscribers are grouped, as graphql-ruby's broadcast subscriptions and
Hasura's cohorts group them, by what the result can depend on:

- the document and operation (its source text),
- the values of the variables the selection reads below the subscription field (the field's own
  arguments, such as `id`, `filter` or `after`, only choose which events come, not how they render),
- the viewer's visibility scope, since what a nested field may show depends on who asks.

Each event is a `SharedEvent`: a key naming it and a way to build the root object. The executor below
looks the (group, event) pair up in a small cache: the first subscriber to get there builds the object
and executes the selection; the others await and reuse that result, whose data is a `RenderedData`
encoded to JSON once.

Live events on a WebSocket then skip the per-subscriber pipeline altogether (delivery.py). Replayed and
initial events, and every event on other transports, are yielded as usual; the controller's `encode_json`
still reuses their shared JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, cast

from graphql import (
    ExecutionResult,
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    Visitor,
    visit,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from server.graphql.errors import log_errors
from server.graphql.live.fan_out import LiveFanOut
from server.metrics import SUBSCRIPTION_RENDERS

_EXECUTED = SUBSCRIPTION_RENDERS.labels("executed")
_SHARED = SUBSCRIPTION_RENDERS.labels("shared")


# Set by the executor when it builds a subscription, for the same task.
SUBSCRIPTION_EXECUTOR: ContextVar[Any] = ContextVar("darkroom_subscription_executor", default=None)


class SharedEvent:
    """What a subscription yields: `key` names the event (the same for every subscriber that gets it)."""

    __slots__ = ("build", "key")

    def __init__(self, key: Hashable, build: Callable[[], object]) -> None:
        self.key = key
        self.build = build


def shared(key: Hashable, build: Callable[[], Any]) -> Any:
    """A SharedEvent, typed as the object it stands for (the executor builds that object when needed)."""
    return SharedEvent(key, build)


class RenderedData(dict[str, Any]):
    """The data of an event's result, shared by its group: encoded to JSON at most once."""

    __slots__ = ("_payload_json",)

    def payload_json(self) -> str:
        """`{"data": ...}` as JSON: the payload of a next (or data) frame."""
        try:
            return self._payload_json
        except AttributeError:
            self._payload_json: str = json.dumps({"data": self}, separators=(",", ":"))
            return self._payload_json


def encode_frame(message: object) -> str | None:
    """A protocol frame whose payload is exactly a shared result, encoded around its shared JSON; else None."""
    if not isinstance(message, dict):
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or len(payload) != 1 or not isinstance(payload.get("data"), RenderedData):
        return None
    envelope = json.dumps({k: v for k, v in message.items() if k != "payload"}, separators=(",", ":"))
    separator = "" if envelope == "{}" else ","
    return f'{envelope[:-1]}{separator}"payload":{payload["data"].payload_json()}}}'


class RenderCache:
    """The newest executions, by (group, event): awaited by every subscriber of the group for that event."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, asyncio.Future[ExecutionResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Hashable) -> asyncio.Future[ExecutionResult] | None:
        return self._entries.get(key)

    def claim(self, key: Hashable) -> asyncio.Future[ExecutionResult]:
        future: asyncio.Future[ExecutionResult] = asyncio.get_running_loop().create_future()
        self._entries[key] = future
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return future

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


class _VariablesBelow(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.names.add(node.name.value)


def selection_variables(operation: OperationDefinitionNode, fragments: list[Any]) -> list[str]:
    """The variables read below the subscription field (and by fragments): the ones a result depends on."""
    collector = _VariablesBelow()
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.selection_set is not None:
                visit(selection.selection_set, collector)
            for directive in selection.directives or ():
                visit(directive, collector)
        else:
            visit(selection, collector)
    for fragment in fragments:
        visit(fragment, collector)
    return sorted(collector.names)


def shared_render_executor(
    cache: RenderCache, fan_out: LiveFanOut, documents: int
) -> type[StrawberryGraphQLCoreExecutionContext]:
    """Strawberry's executor, sharing each SharedEvent's execution through `cache`, live events through `fan_out`;
    the plans of up to `documents` subscription documents are kept."""

    # The variables each document's selection reads, by (source, operation name): what a group key needs.
    plans: dict[tuple[str, str | None], list[str]] = {}

    class SharedRenderExecutor(StrawberryGraphQLCoreExecutionContext):
        live_fan_out = fan_out
        group: Hashable = None
        _claim: tuple[Hashable, asyncio.Future[ExecutionResult]] | None = None

        @classmethod
        def build(cls, *args: Any, **kwargs: Any) -> Any:
            executor = super().build(*args, **kwargs)
            if isinstance(executor, cls) and executor.operation.operation is OperationType.SUBSCRIPTION:
                # At subscribe time, so that no event (not even the first) pays for it.
                executor.group = executor._group_key()
                SUBSCRIPTION_EXECUTOR.set(executor)
            return executor

        async def render_json(self, event: SharedEvent) -> str:
            """The payload of `event` for this subscription as JSON, executed and encoded once per group."""
            done = cache.lookup((self.group, event.key))
            if done is not None and done.done() and not done.cancelled() and done.exception() is None:
                _SHARED.inc()  # the common case: another member already rendered it, nothing to await
                result = done.result()
            else:
                result = await self.build_per_event_executor(event).execute_operation(False)
            if isinstance(result.data, RenderedData) and not result.errors:
                return result.data.payload_json()
            payload: dict[str, Any] = {"data": result.data}
            if result.errors:
                payload["errors"] = [error.formatted for error in result.errors]
            return json.dumps(payload, separators=(",", ":"))

        def build_per_event_executor(self, payload: Any) -> Any:
            if not isinstance(payload, SharedEvent):
                return super().build_per_event_executor(payload)
            key = (self.group, payload.key)
            pending = cache.lookup(key)
            if pending is None:
                _EXECUTED.inc()
                executor = cast("SharedRenderExecutor", super().build_per_event_executor(payload))
                executor._claim = (key, cache.claim(key))
                return executor
            _SHARED.inc()
            return _Reuse(self._await_group(pending, payload, key))

        def execute_operation(self, serially: bool | None = None) -> Any:
            claim = self._claim
            if claim is None:
                return super().execute_operation(serially)
            key, future = claim
            return self._execute_for_group(self.root_value, key, future, serially)

        async def _await_group(
            self, pending: asyncio.Future[ExecutionResult], event: SharedEvent, key: Hashable
        ) -> ExecutionResult:
            # Shielded: a member that goes away while waiting must not cancel the others' execution.
            with contextlib.suppress(asyncio.CancelledError):
                return await asyncio.shield(pending)
            if not pending.cancelled():
                raise asyncio.CancelledError  # this member itself was canceled
            # The member executing for the group went away mid-way: execute for the group again.
            claimed = cache.lookup(key)
            if claimed is not None and claimed is not pending:
                return await self._await_group(claimed, event, key)
            executor = cast("SharedRenderExecutor", super().build_per_event_executor(event))
            return await executor._execute_for_group(event, key, cache.claim(key), False)

        async def _execute_for_group(
            self, event: SharedEvent, key: Hashable, future: asyncio.Future[ExecutionResult], serially: bool | None
        ) -> ExecutionResult:
            try:
                self.root_value = event.build()
                reset = getattr(self.context_value, "reset_loaders", None)
                if reset is not None:
                    reset()  # a socket's context outlives many events: each must read fresh rows
                result = StrawberryGraphQLCoreExecutionContext.execute_operation(self, serially)
                if isinstance(result, Awaitable):
                    result = await result
                result = cast("ExecutionResult", result)
                if not result.errors and isinstance(result.data, dict):
                    result = ExecutionResult(RenderedData(result.data), None, result.extensions)
                else:
                    cache.forget(key)  # a later subscriber executes again rather than inherit a failure
                    name = self.operation.name.value if self.operation.name is not None else None
                    log_errors(list(result.errors or ()), name)
            except asyncio.CancelledError:
                cache.forget(key)
                future.cancel()  # the members waiting on it execute for themselves
                raise
            except BaseException as exc:
                cache.forget(key)
                future.set_exception(exc)
                future.exception()  # retrieved: no "exception never retrieved" warning when nobody waits
                raise
            future.set_result(result)
            return result

        def _group_key(self) -> Hashable:
            operation = self.operation
            source = operation.loc.source.body if operation.loc is not None else repr(operation)
            name = operation.name.value if operation.name is not None else None
            coerced = self.variable_values.coerced
            planned = plans.get((source, name))
            if planned is None:
                # Once per document: a subscriber joining a group plans nothing again (nor parses or validates:
                # the schema's ParserCache and ValidationCache hold those).
                planned = selection_variables(operation, list(self.fragment_definitions.values()))
                plans[(source, name)] = planned
                while len(plans) > documents:
                    del plans[next(iter(plans))]
            variables = {variable: coerced.get(variable) for variable in planned}
            viewer = getattr(self.context_value, "viewer", None)
            scope = (viewer.owner_id, viewer.sees_all) if viewer is not None else None
            return (source, name, json.dumps(variables, sort_keys=True, default=repr), scope)

    return SharedRenderExecutor


class _Reuse:
    """Stands in for a per-event executor when the group's execution of the event is under way or done."""

    __slots__ = ("_result",)

    def __init__(self, result: Awaitable[ExecutionResult]) -> None:
        self._result = result

    def execute_operation(self, serially: bool | None = None) -> Awaitable[ExecutionResult]:
        return self._result
