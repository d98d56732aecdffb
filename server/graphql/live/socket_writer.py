"""Synchronous text frames onto a WebSocket served by uvicorn's websockets-sansio protocol.

An ASGI `send` is a coroutine that passes through Litestar's and uvicorn's wrappers before a frame is
written; fanning one event out to thousands of sockets pays that per socket. Under uvicorn's
websockets-sansio protocol (what `darkroom serve` runs) the application can instead frame the message
with the connection's own websockets state machine (so compression, when negotiated, and the closing
handshake stay consistent) and hand the bytes to the transport at once. The application exposes the
protocol in the connection's scope, as a server extension; under any other server there is none, and
frames take the ASGI send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar.types import Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState, ProtocolError

EXTENSION = "darkroom.socket"


def expose_socket(scope: Scope, send: Send) -> None:
    """Record the server's protocol object of a WebSocket connection in its scope, when it is one we can write to."""
    protocol = getattr(send, "__self__", None)
    if scope["type"] == "websocket" and isinstance(protocol, WebSocketsSansIOProtocol):
        extensions: dict[str, Any] | None = scope.get("extensions")
        if extensions is None:
            extensions = {}
            scope["extensions"] = extensions  # type: ignore[typeddict-item]
        extensions[EXTENSION] = protocol


class SocketWriter:
    """Writes whole text frames to one socket, without awaiting: the transport buffers what the kernel cannot take."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, scope: Mapping[str, Any]) -> SocketWriter | None:
        protocol = (scope.get("extensions") or {}).get(EXTENSION)
        return cls(protocol) if isinstance(protocol, WebSocketsSansIOProtocol) else None

    def write_text(self, frame: bytes) -> bool:
        """Send `frame` (UTF-8 text) as one message; False when the socket is closing or gone."""
        protocol = self._protocol
        if protocol.close_sent or protocol.transport.is_closing():
            return False
        try:
            protocol.conn.send_text(frame)
        except (InvalidState, ProtocolError):
            return False
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        return True

    @property
    def unsent_bytes(self) -> int:
        """Bytes written to this socket that the kernel has not taken yet: how far its reader is behind."""
        return self._protocol.transport.get_write_buffer_size()
