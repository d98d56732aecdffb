"""The one way a subscription's live events leave: `follow_live`.

Each live event takes one of three paths, chosen here and nowhere else:

- fan-out: on a WebSocket the server lets us write to directly (socket_writer.py), the subscription
  joins its render group (fan_out.py), whose one task renders each event once and writes it to every
  member's socket;
- direct: on another WebSocket, this operation's task sends the group's shared rendering itself;
- yielded: on any other transport (multipart/mixed), each event is yielded through Strawberry as usual.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import Any

from graphql import GraphQLError

from server.events import SubscriberOverflow
from server.events import Subscription as HubSubscription
from server.graphql.live.fan_out import Member
from server.graphql.live.rendering import SUBSCRIPTION_EXECUTOR, SharedEvent
from server.graphql.live.sink import LIVE_SINK
from server.metrics import LIVE_FRAMES

_SENT_BY_OPERATION = LIVE_FRAMES.labels("operation")

Event = dict[str, Any]


def overflow_error() -> GraphQLError:
    return GraphQLError(
        "this subscription fell behind and missed events; resubscribe with your last cursor",
        extensions={"code": "SUBSCRIBER_OVERFLOW"},
    )


async def follow_live(
    live: HubSubscription,
    position: str,
    after: int,
    build: Callable[[Event], object],
    until: Callable[[Event], bool] | None = None,
) -> AsyncGenerator[Any, None]:
    """The live events whose `position` ("seq" or "id") is above `after`, once each and in order.

    Ends after an event `until` accepts; a subscriber that fell behind gets SUBSCRIBER_OVERFLOW and resumes
    from its cursor.
    """
    sink, executor = LIVE_SINK.get(), SUBSCRIPTION_EXECUTOR.get()
    try:
        if sink is not None and executor is not None and sink.writer is not None:

            def render(event: Event) -> Awaitable[str]:
                return executor.render_json(SharedEvent(("event", event["id"]), partial(build, event)))

            member = Member(sink.writer, sink.prefix.encode(), position, after, render, until)
            await executor.live_fan_out.follow(live, member, executor.group)
            return
        async for event in live:
            if event[position] <= after:
                continue  # what was read from the log first already covered it
            after = event[position]
            item = SharedEvent(("event", event["id"]), partial(build, event))
            if sink is not None and executor is not None:
                await sink.send(await executor.render_json(item))
                _SENT_BY_OPERATION.inc()
            else:
                yield item
            if until is not None and until(event):
                return
    except SubscriberOverflow:
        raise overflow_error() from None
