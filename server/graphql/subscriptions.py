"""Subscriptions: live state from the event hub, resumable from the event log.

The hub's tailer offers every committed event in log order, so a subscriber never has to skip on a
guess: it registers with the hub first, then reads what is already stored, then passes on the live
events after what that read covered (by per-generation sequence, or by event id for the feed). Each
value is yielded as a SharedEvent, so subscribers alike execute and encode it once (live/rendering.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError

from server.domain import GenerationStatus, MediaStatus
from server.graphql.context import Info
from server.graphql.ids import decode_id
from server.graphql.inputs import GenerationEventFilter
from server.graphql.live.delivery import follow_live
from server.graphql.live.rendering import shared
from server.graphql.pagination import decode_event_cursor, encode_cursor
from server.graphql.types import Generation, GenerationEvent
from server.metrics import open_subscription
from server.services.event_log.public_fields import owner_of, parse_datetime
from server.services.generations import queries


def settled(event: dict[str, Any]) -> bool:
    """Terminal, with every media file READY or FAILED: nothing more will happen to it."""
    if not GenerationStatus(event["generation"]["status"]).is_terminal or event.get("mediaTruncated"):
        return False
    return all(MediaStatus(media["status"]).is_settled for media in event.get("media", []))


def to_event(event: dict[str, Any]) -> GenerationEvent:
    return GenerationEvent(
        cursor=encode_cursor("event", event["id"]),
        sequence=event["seq"],
        type=event["type"],
        at=parse_datetime(event["at"]),
        generation=Generation.from_event(event),
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The generation's current state at once, then every change; completes once it and its "
        "media have settled."
    )
    async def generation(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Generation, None]:
        generation_id = decode_id(id, "Generation")
        context = info.context
        runtime = context.runtime
        key = str(generation_id)
        hub = runtime.hub
        async with (
            hub.subscribe(lambda event: event["generationId"] == key) as live,
            hub.states.hold(key),
            open_subscription(),
        ):
            # Read once per generation followed, then kept from the events (server/events/current_states.py).
            current = await hub.states.current(key)
            if current is None or not context.viewer.can_see(owner_of(current)):
                raise GraphQLError("generation not found", extensions={"code": "NOT_FOUND"})
            sent = current["seq"]
            yield shared(("state", key, sent), partial(Generation.from_event, current))
            if settled(current):
                return
            # After the stored state: every later event, until the generation settles.
            async for item in follow_live(live, "seq", sent, Generation.from_event, until=settled):
                yield item

    @strawberry.subscription(
        description="Every change to generations you can see, live. Pass the cursor of the last event you "
        "received as `after` to replay what you missed first, with no gap and no duplicate."
    )
    async def generation_events(
        self, info: Info, filter: GenerationEventFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[GenerationEvent, None]:
        context = info.context
        runtime = context.runtime
        viewer = context.viewer
        flt = queries.EventFilter(
            generation_ids=[decode_id(gid, "Generation") for gid in (filter.generation_ids or [])] if filter else [],
            kinds=[kind.value for kind in (filter.kind or [])] if filter else [],
        )
        last_id = decode_event_cursor(after) if after else None

        def wanted(event: dict[str, Any]) -> bool:
            return viewer.can_see(owner_of(event)) and flt.matches(event)

        async with runtime.hub.subscribe(wanted) as live, open_subscription():
            if last_id is None:
                last_id = live.registered_at
            else:
                # Subscribers resuming together share their reads of the log (server/events/replay.py).
                reached_end = False
                while not reached_end:
                    stored = await runtime.hub.replay.after(last_id, live.registered_at)
                    reached_end = stored.reached_end
                    for event in stored:
                        last_id = event["id"]
                        if wanted(event):
                            yield shared(("event", event["id"]), partial(to_event, event))
            async for item in follow_live(live, "id", last_id, to_event):
                yield item
