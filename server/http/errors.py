"""The answer to an exception no route handler caught, for every Litestar app Darkroom runs."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from server.graphql.errors import FAULT_MESSAGE, fault_extensions

logger = logging.getLogger("server.app")  # the name these lines carried before the apps were two


def server_fault(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """An exception no handler caught: logged at ERROR with its traceback, answered 500 without details."""
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    if request.url.path.startswith("/graphql"):
        body: dict[str, Any] = {"errors": [{"message": FAULT_MESSAGE, "extensions": fault_extensions()}]}
    else:
        body = {"status_code": HTTP_500_INTERNAL_SERVER_ERROR, "detail": "Internal Server Error"}
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR, media_type=MediaType.JSON)
