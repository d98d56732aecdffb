"""GraphQL over HTTP on /graphql: Darkroom's rules on top of Strawberry's view.

Authentication: an HTTP request without a valid `Authorization: Bearer <token>` (when one is needed)
is answered 401 with a GraphQL-shaped body, `errors[0].extensions.code == "UNAUTHENTICATED"`, before
anything is parsed or run; GraphiQL's page itself still loads, so its headers tab can carry the key
(graphiql.py).

The route follows GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/). A client that
prefers `application/graphql-response+json` gets that media type and the spec's status codes: 400 when
the operation never ran (the document does not parse or validate, a variable does not coerce), with no
`data` entry, and 200 once it ran, field errors or not. `application/json` (the default, and what `*/*`
gets) keeps answering 200 for every GraphQL result. A request that is not a GraphQL request at all (a body
that is not a JSON object, an unsupported content type, a mutation over GET) gets a 4xx with a
GraphQL-shaped body, `{"errors": [{"message": ..., "extensions": {"code": "BAD_REQUEST"}}]}`, in either
media type. Subscriptions also stream over HTTP as multipart/mixed (`Accept: multipart/mixed;
subscriptionSpec="1.0"`); such a stream ends, as a socket does, when its key is revoked
(live/revocation.py).

Uploads (`uploadMedia`) come as multipart/form-data, the GraphQL multipart request spec. A browser sends
such a form to any site without asking first, so a multipart request must carry a header that only
passes a CORS preflight (PREFLIGHT_HEADERS; Apollo's CSRF prevention does the same), else it is a 400.
The route accepts bodies up to GRAPHQL_MAX_BODY_BYTES + UPLOAD_MAX_BYTES for them; every other body, and a
multipart request's own `operations` and `map`, stay within GRAPHQL_MAX_BODY_BYTES.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
from collections.abc import AsyncIterable
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException, LitestarRequestAdapter
from graphql import GraphQLError, get_operation_ast, parse
from graphql import OperationType as DocumentOperationType
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException as LitestarHTTPException
from litestar.response import Stream
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.parse_content_type import parse_content_type
from strawberry.litestar.controller import GraphQLController
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.graphql import OperationType

from server.graphql.context import Context
from server.graphql.errors import is_request_error, one_line
from server.graphql.live.admission import counted_stream
from server.graphql.live.revocation import ends_on_revocation
from server.services.access.rate_limits import RATE_LIMITED

logger = logging.getLogger(__name__)

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
SUBSCRIPTION_NEEDS_A_STREAM = (
    "Subscriptions run over a WebSocket (graphql-transport-ws or graphql-ws), or over HTTP as multipart/mixed "
    '(Accept: multipart/mixed;subscriptionSpec="1.0").'
)
# Headers a browser sends across origins only after a CORS preflight: a multipart request must carry one, so
# that no other site's page can make a visitor's browser upload (a form post needs no preflight). Apollo's
# CSRF-prevention headers, or the API key.
PREFLIGHT_HEADERS = ("authorization", "apollo-require-preflight", "x-apollo-operation-name")
MULTIPART_NEEDS_A_PREFLIGHT_HEADER = (
    "A multipart request must carry an Authorization, Apollo-Require-Preflight or X-Apollo-Operation-Name "
    "header (CSRF prevention)."
)
# The codes of the HTTP-level refusals (the request is not a GraphQL request Darkroom can run).
HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


def response_media_type(request: Request[Any, Any, Any]) -> str:
    """application/graphql-response+json when the client prefers it, else application/json (also for */*)."""
    return request.accept.best_match([MediaType.JSON, GRAPHQL_RESPONSE_JSON], default=MediaType.JSON)


def request_refused(
    status: int, message: str, media_type: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """A 4xx with a GraphQL-shaped body: the request was not one Darkroom could run."""
    code = HTTP_ERROR_CODES.get(status, "BAD_REQUEST")
    logger.info("GraphQL request refused (%s %s): %s", status, code, one_line(message), extra={"code": code})
    return Response(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
        media_type=media_type,
        headers=headers,
    )


def unauthenticated(message: str, media_type: str = MediaType.JSON) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}
    if media_type == MediaType.JSON:
        # What application/json clients have always had; GraphQL over HTTP's own media type has no `data` on a
        # request error.
        body = {"data": None, **body}
    return Response(
        body,
        status_code=401,
        media_type=media_type,
        headers={"WWW-Authenticate": 'Bearer realm="darkroom"'},
    )


def rate_limited_for(response_data: object) -> float | None:
    """The seconds to wait, when a result is a query refused by its rate limit (server.graphql.query_limits)."""
    if not isinstance(response_data, dict) or response_data.get("data") is not None:
        return None
    errors = response_data.get("errors") or []
    if len(errors) != 1:
        return None
    extensions = errors[0].get("extensions") or {}
    wait = extensions.get("retryAfterSeconds")
    if extensions.get("code") != RATE_LIMITED or not isinstance(wait, int | float):
        return None
    return float(wait)


def names_a_subscription(request_data: GraphQLRequestData, max_tokens: int) -> bool:
    """Whether the operation a request asks for is a subscription (or cannot be told: the stream reports why)."""
    try:
        document = parse(request_data.query or "", no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return True
    operation = get_operation_ast(document, request_data.operation_name)
    return operation is None or operation.operation == DocumentOperationType.SUBSCRIPTION


def forces_a_preflight(headers: Any) -> bool:
    return any(headers.get(name) for name in PREFLIGHT_HEADERS)


def bounded_request_adapter(max_body_bytes: int) -> type[LitestarRequestAdapter]:
    """The request adapter with GRAPHQL_MAX_BODY_BYTES on a JSON body: the route's own limit is higher, for
    multipart uploads."""

    class BoundedRequestAdapter(LitestarRequestAdapter):
        _body: bytes | None = None

        async def get_body(self) -> bytes:
            if self._body is not None:
                return self._body
            too_large = f"The request body is larger than {max_body_bytes} bytes (GRAPHQL_MAX_BODY_BYTES)."
            try:
                declared = int(self.request.headers.get("content-length") or 0)
            except ValueError:
                declared = 0
            if declared > max_body_bytes:
                raise HTTPException(413, too_large)
            received = bytearray()
            async for chunk in self.request.stream():
                received += chunk
                if len(received) > max_body_bytes:
                    raise HTTPException(413, too_large)
            self._body = bytes(received)
            return self._body

    return BoundedRequestAdapter


class GraphQLOverHTTP(GraphQLController):  # type: ignore[type-arg]
    """The HTTP side of the /graphql controller; `max_body_bytes` and `max_tokens` come from the settings."""

    max_body_bytes: int
    max_tokens: int

    def decode_json(self, data: str | bytes) -> object:
        # A body that is not UTF-8, nests deeper than the parser goes, or has an integer of more digits than
        # Python reads (4,300) is malformed JSON (400), not a server error. Decoded strictly first: json.loads
        # lets UTF-8-encoded lone surrogates through.
        try:
            return json.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("the body is not UTF-8", "", 0) from exc
        except RecursionError as exc:
            raise json.JSONDecodeError("the JSON nests too deeply", "", 0) from exc
        except json.JSONDecodeError:
            raise
        except ValueError as exc:
            raise json.JSONDecodeError("a number has too many digits", "", 0) from exc

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        # Strawberry reads a JSON body as a request object (or a batch, which is refused): a number, a
        # string or null would fail inside it. Anything that does not start as an object or an array is
        # refused here; the common case, an object, is decoded once, by Strawberry.
        if request.method == "POST" and "application/json" in parse_content_type(request.content_type or "")[0]:
            body = (await request.get_body()).removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
            if not body.startswith((b"{", b"[")):
                self.parse_json(body)  # 400 when it is not JSON at all
                raise HTTPException(400, "The request body must be a JSON object: a GraphQL request.")
        multipart = parse_content_type(request.content_type or "")[0] == "multipart/form-data"
        if request.method == "POST" and multipart and not forces_a_preflight(request.headers):
            raise HTTPException(400, MULTIPART_NEEDS_A_PREFLIGHT_HEADER)
        request_data = await super().parse_http_body(request)
        if isinstance(request_data, GraphQLRequestData) and not isinstance(request_data.operation_name, str | None):
            raise HTTPException(400, "The GraphQL operation's `operationName` must be a string or null.")
        return request_data

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, str]:
        # The operation and its map are JSON like any other request's: held to the same limit.
        form = (await request.get_form_data()).form
        for name in ("operations", "map"):
            value = form.get(name)
            if isinstance(value, str | bytes) and len(value) > self.max_body_bytes:
                raise HTTPException(413, f"The multipart `{name}` is larger than {self.max_body_bytes} bytes.")
        return await super().parse_multipart(request)

    async def execute_request(self, request: Request[Any, Any, Any], context: Any, root_value: Any) -> Any:
        media_type = response_media_type(request)
        if (
            isinstance(context, Context)
            and context.auth_error is not None
            and not self.should_render_graphql_ide(self.request_adapter_class(request))
        ):
            return unauthenticated(context.auth_error, media_type)
        try:
            response = await self.run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            headers = {"Allow": "POST"} if exc.status_code == 405 else None
            return request_refused(exc.status_code, exc.reason, media_type, headers)
        except LitestarHTTPException as exc:
            if exc.status_code >= 500:
                raise
            # Raised while the body is read, e.g. 413 past GRAPHQL_MAX_BODY_BYTES.
            return request_refused(exc.status_code, exc.detail, media_type)
        if (
            isinstance(response, Stream)
            and isinstance(response.iterator, AsyncIterable)
            and isinstance(context, Context)
        ):
            # A subscription streamed as multipart/mixed ends when its key is revoked, as a WebSocket does.
            response.iterator = ends_on_revocation(response.iterator, context.runtime.api_keys, context.viewer)
        if media_type == GRAPHQL_RESPONSE_JSON and response.media_type == MediaType.JSON:
            response.media_type = GRAPHQL_RESPONSE_JSON
        return response

    async def execute_operation(
        self,
        request: Request[Any, Any, Any],
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Any,
        root_value: Any,
        sub_response: Response[Any],
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        if (
            isinstance(request_data, GraphQLRequestData)
            and request_data.protocol != "http"
            and not names_a_subscription(request_data, self.max_tokens)
        ):
            # multipart/mixed streams subscriptions; a query or mutation sent with that Accept is answered
            # once, as JSON, rather than refused inside a stream.
            request_data.protocol = "http"
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        if isinstance(result, SubscriptionExecutionResult):
            return counted_stream(context, result)
        return result

    async def execute_single(
        self,
        request: Request[Any, Any, Any],
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response[Any],
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # One operation answered with one response. Strawberry would run a subscription here too (and fail
        # inside it): a subscription needs a stream, which execute_operation starts for multipart/mixed.
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            if exc.operation_type == OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_NEEDS_A_STREAM) from exc
            # GraphQL over HTTP: a mutation over GET is 405 Method Not Allowed.
            status = 405 if request_adapter.method == "GET" else 400
            raise HTTPException(status, exc.as_http_error_reason(request_adapter.method)) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def process_result(self, request: Request[Any, Any, Any], result: ExecutionResult) -> GraphQLHTTPResponse:
        response = process_result(result)
        if (
            result.data is None
            and is_request_error(result.errors or [])
            and response_media_type(request) == GRAPHQL_RESPONSE_JSON
        ):
            # The operation never ran: GraphQL over HTTP's response has no `data` entry then (and a 400,
            # given in create_response).
            del response["data"]
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response[bytes]
    ) -> Response[bytes]:
        response = super().create_response(response_data, sub_response)
        wait = rate_limited_for(response_data)
        if wait is not None:
            # A query refused by its rate limit is an HTTP matter in either media type: 429 and a
            # Retry-After that HTTP clients and proxies honour, beside the GraphQL error saying the same.
            response.status_code = 429
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        elif isinstance(response_data, dict) and "data" not in response_data:
            # Only process_result leaves `data` out, and only for application/graphql-response+json.
            response.status_code = 400
        return response
