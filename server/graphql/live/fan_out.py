"""Live fan-out: one task per render group writes each event's frame to every member's socket.

Once a WebSocket subscription has sent what it read from the log, it hands its hub subscription to its
render group (subscribers alike, see rendering.py) when its socket can be written to directly
(socket_writer.py). From then on the tailer's delivery appends each event the member may see to the
group's queue, and the group's task executes the selection once and writes the frame to each member,
in log order. What used to happen per subscriber and event (a queue, a task switch, the generator
chain of Strawberry's protocol handler, an ASGI send through Litestar's and uvicorn's wrappers) is one
step of a loop over the members. The member's own task only waits for the end: its `until` event,
its socket going away, or its falling behind.

A member whose socket stops reading falls behind alone: once more than SUBSCRIBER_BUFFER_BYTES of its
frames wait unsent it is told (SUBSCRIBER_OVERFLOW), as a queued subscriber is when its queue fills.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from server import telemetry
from server.events import SubscriberOverflow
from server.events import Subscription as HubSubscription
from server.graphql.live.socket_writer import SocketWriter
from server.metrics import LIVE_FRAMES, SUBSCRIPTION_RENDERS

_SHARED = SUBSCRIPTION_RENDERS.labels("shared")
_WRITTEN = LIVE_FRAMES.labels("fan_out")

Event = dict[str, Any]

# Sockets written before the loop runs anything else: a webhook or a query waits at most one such slice
# (a few milliseconds), not a whole fan-out of thousands of frames.
WRITES_BETWEEN_YIELDS = 100


@dataclass(eq=False, slots=True)
class Member:
    """One subscription in a group: its socket, its frame prefix and how far it has been sent."""

    writer: SocketWriter
    prefix: bytes  # the protocol's envelope up to the payload, with this operation's id
    position: str  # "seq" or "id": what `after` counts
    after: int
    render: Callable[[Event], Awaitable[str]]  # the event's payload JSON, executed once per group
    until: Callable[[Event], bool] | None = None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def send(
        self, event: Event, frame_tail: bytes, buffer_limit: int, ends: dict[Callable[[Event], bool], bool]
    ) -> bool:
        """Write the event's frame unless this member ended or already has it; whether it was written.

        `ends` holds what each `until` said of this event, asked once for all the members sharing it.
        """
        if self.done.done() or event[self.position] <= self.after:
            return False  # ended, or already covered by what was read from the log first
        self.after = event[self.position]
        if not self.writer.write_text(self.prefix + frame_tail):
            self.done.cancel()  # the socket went away: the operation ends quietly
            return False
        if self.writer.unsent_bytes > buffer_limit:
            self.done.set_exception(SubscriberOverflow("this subscriber's socket fell behind"))
        elif self.until is not None:
            ended = ends.get(self.until)
            if ended is None:
                ended = ends[self.until] = self.until(event)
            if ended:
                self.done.set_result(None)
        return True


class RenderGroup:
    """The members alike; its task drains the events offered to them, oldest first, one render each."""

    def __init__(self, buffer_limit: int) -> None:
        self._buffer_limit = buffer_limit
        self._pending: deque[tuple[Event, list[Member]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.members = 0

    def offer(self, member: Member, event: Event) -> None:
        """Called in the tailer's delivery: queue `event` for `member` (every member alike shares the entry)."""
        if self._pending and self._pending[-1][0] is event:
            self._pending[-1][1].append(member)
        else:
            self._pending.append((event, [member]))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="graphql-fan-out")

    async def _drain(self) -> None:
        try:
            while self._pending:
                event, members = self._pending[0]
                live = [member for member in members if not member.done.done()]
                if live:
                    if telemetry.enabled():
                        # One span per group and event, however many sockets; linked to the span that logged it.
                        with telemetry.span(
                            "darkroom.fan_out",
                            {
                                telemetry.GENERATION_ID: event.get("generationId"),
                                "darkroom.event_id": event.get("id"),
                                "darkroom.subscribers": len(live),
                            },
                            links=telemetry.links_to([event.get("traceparent")]),
                            root=True,
                        ):
                            await self._render_and_write(event, live)
                    else:
                        await self._render_and_write(event, live)
                self._pending.popleft()
        except asyncio.CancelledError:
            for _, members in self._pending:
                for member in members:
                    member.done.cancel()
            raise
        finally:
            self._task = None

    async def _render_and_write(self, event: Event, live: list[Member]) -> None:
        try:
            payload = await live[0].render(event)
        except Exception as exc:
            for member in live:
                if not member.done.done():
                    member.done.set_exception(exc)
            return
        _SHARED.inc(len(live) - 1)  # the others reuse the first member's render
        tail = f"{payload}}}".encode()
        ends: dict[Callable[[Event], bool], bool] = {}
        for start in range(0, len(live), WRITES_BETWEEN_YIELDS):
            if start:
                await asyncio.sleep(0)
            written = sum(
                member.send(event, tail, self._buffer_limit, ends)
                for member in live[start : start + WRITES_BETWEEN_YIELDS]
            )
            _WRITTEN.inc(written)


class LiveFanOut:
    """The render groups of one schema, by (group key, position): members join while they follow live events."""

    def __init__(self, buffer_limit: int) -> None:
        self._buffer_limit = buffer_limit
        self._groups: dict[Hashable, RenderGroup] = {}

    def __len__(self) -> int:
        return len(self._groups)

    async def follow(self, live: HubSubscription, member: Member, group_key: Hashable) -> None:
        """Until `member` ends: its `until` event returns, SubscriberOverflow raises, a lost socket cancels."""
        key = (group_key, member.position)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = RenderGroup(self._buffer_limit)
        group.members += 1
        try:
            live.hand_over(partial(group.offer, member))
            await member.done
        finally:
            if not member.done.done():
                member.done.cancel()  # the operation was canceled: the group skips it from now on
            else:
                with contextlib.suppress(BaseException):
                    member.done.exception()  # retrieved: no "exception never retrieved" warning
            group.members -= 1
            if group.members == 0 and self._groups.get(key) is group:
                del self._groups[key]
