"""Where a WebSocket operation's live events go: set by the protocol handler, read by the delivery."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from server.graphql.live.socket_writer import SocketWriter


@dataclass(frozen=True, slots=True)
class LiveSink:
    """A WebSocket operation's socket, and its frame envelope with the operation's id.

    `writer` is set when the socket can be written to without awaiting (socket_writer.py): live events
    then go through the group's fan-out (fan_out.py) rather than through this operation's own task.
    """

    prefix: str
    send_text: Callable[[str], Awaitable[None]]
    writer: SocketWriter | None = None

    @classmethod
    def for_operation(
        cls,
        message_type: str,
        operation_id: str,
        send_text: Callable[[str], Awaitable[None]],
        writer: SocketWriter | None = None,
    ) -> LiveSink:
        envelope = json.dumps({"type": message_type, "id": operation_id}, separators=(",", ":"))
        return cls(f'{envelope[:-1]},"payload":', send_text, writer)

    async def send(self, payload_json: str) -> None:
        await self.send_text(f"{self.prefix}{payload_json}}}")


# Set by the WebSocket protocol handlers (protocols.py) for the task running one operation.
LIVE_SINK: ContextVar[LiveSink | None] = ContextVar("darkroom_live_sink", default=None)
