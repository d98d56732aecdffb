"""Authentication on connect: a socket's API key, checked once, and the socket closed when it is revoked.

A WebSocket gives the token in its `connection_init` payload (`Authorization`, `authorization` or `token`;
the handshake's own Authorization header is the fallback) and is refused with the protocol's answer:
close code 4403 on graphql-transport-ws, `connection_error` and a close on graphql-ws. Accepted sockets
are registered with the API key service, which closes them (4403) when their key is revoked. How many
streams a key may hold is capped (admission.py).
"""

from __future__ import annotations

import logging

from strawberry.exceptions import ConnectionRejectionError

from server.graphql.context import Context
from server.graphql.live.admission import claim_for_key
from server.services.access.api_keys import AuthError, bearer_token

logger = logging.getLogger(__name__)

# Close code for a socket whose key was revoked (graphql-transport-ws's Forbidden, used on both protocols).
CLOSE_FORBIDDEN = 4403


def socket_token(context: Context) -> str | None:
    """The token a socket presents: in its connection_init payload, else on its handshake."""
    params = context.connection_params or {}
    headers = params.get("headers")
    sources = [params, headers] if isinstance(headers, dict) else [params]
    for source in sources:
        for name in ("Authorization", "authorization", "token"):
            if source.get(name) is not None:
                return bearer_token(source[name], scheme_required=False)
    if context.websocket is not None:
        return bearer_token(context.websocket.headers.get("authorization"))
    return None


async def accept_socket(context: Context) -> None:
    """Who the socket's connection_init speaks for; refused (UNAUTHENTICATED) when its key is not valid."""
    runtime = context.runtime
    try:
        context.viewer = await runtime.api_keys.viewer_for(socket_token(context))
    except AuthError as exc:
        logger.info("WebSocket refused", extra={"reason": str(exc)})
        raise ConnectionRejectionError({"message": str(exc), "code": "UNAUTHENTICATED"}) from None
    claim_for_key(context)
    websocket = context.websocket
    if websocket is not None:

        async def close(reason: str) -> None:
            await websocket.close(code=CLOSE_FORBIDDEN, reason=reason)

        context.socket_handle = runtime.api_keys.register_socket(context.viewer, close)
