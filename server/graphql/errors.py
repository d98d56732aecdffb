"""Whose fault a GraphQL error is, the code it carries, the one log line it gets, and what the client sees.

Errors the request caused (a syntax error, a failed validation, a variable that does not coerce, a
malformed ID, a page too large) are the client's to fix: each result logs them on one INFO line with the
request id and their codes, and no traceback. An exception that escaped a resolver is the server's
fault: it is logged at ERROR with its traceback, then masked in place, so that every transport (HTTP,
WebSocket, multipart stream, the shared live render) sends a generic message with the request id and
never the exception's text (an SQL statement, a driver's message). Every error gets an `extensions.code`
when it has none, so clients can tell them apart too:

- GRAPHQL_PARSE_FAILED: the document does not parse (or has more than GRAPHQL_MAX_TOKENS tokens);
- GRAPHQL_VALIDATION_FAILED: it parses, but does not validate against the schema or the limits;
- QUERY_TOO_COSTLY: it validates, but would resolve more than GRAPHQL_MAX_COST fields (cost.py);
- BAD_USER_INPUT: a variable's value does not coerce to its type, or an argument is refused (a malformed
  cursor or ID among them);
- INTERNAL_SERVER_ERROR: a fault of the server, with `extensions.requestId`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from server.log import request_id_var

logger = logging.getLogger("server.graphql")

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


FAULT_MESSAGE = "Internal server error: the server failed to answer this; quote the request id when reporting it."


def is_server_fault(error: GraphQLError) -> bool:
    """An exception other than a GraphQLError escaped while running the operation."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def is_masked(error: GraphQLError) -> bool:
    """A fault already logged and masked (the same result can pass through here twice)."""
    return error.original_error is None and (error.extensions or {}).get("code") == INTERNAL_SERVER_ERROR


def error_code(error: GraphQLError) -> str:
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if is_server_fault(error):
        return INTERNAL_SERVER_ERROR
    if isinstance(error, GraphQLSyntaxError):
        return PARSE_FAILED
    if error.path is None and error.original_error is None:
        # Raised before execution with no cause of its own: a validation rule refused the document.
        return VALIDATION_FAILED
    # Variable coercion (before execution, wrapping the scalar's refusal) or a resolver's GraphQLError.
    return BAD_USER_INPUT


def is_request_error(errors: Iterable[GraphQLError]) -> bool:
    """The operation never ran: every error came before execution (none has a path) and none is a fault."""
    errors = list(errors)
    return bool(errors) and all(
        error.path is None and not is_server_fault(error) and not is_masked(error) for error in errors
    )


# Messages can quote the request (a bad ID, a value that does not coerce): logged on one line, and cut short.
MAX_LOGGED_MESSAGE = 300


def one_line(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_LOGGED_MESSAGE else text[: MAX_LOGGED_MESSAGE - 1] + "…"


def fault_extensions() -> dict[str, Any]:
    """What a fault's error says of itself: its code, and the request id to quote when reporting it."""
    request_id = request_id_var.get()
    return {"code": INTERNAL_SERVER_ERROR, **({"requestId": request_id} if request_id else {})}


def mask(error: GraphQLError) -> None:
    """Replace a fault's text by the generic message and the request id, in place: every transport sends it."""
    error.message = FAULT_MESSAGE
    error.original_error = None
    error.extensions = fault_extensions()


def log_errors(errors: list[GraphQLError], operation_name: str | None) -> None:
    """Give every error its code; log the client's on one INFO line, each fault at ERROR with its traceback,
    then mask it."""
    client: list[tuple[str, str]] = []
    for error in errors:
        if is_masked(error):
            continue
        code = error_code(error)
        if (error.extensions or {}).get("code") != code:
            error.extensions = {**(error.extensions or {}), "code": code}
        if is_server_fault(error):
            logger.error(
                "GraphQL operation failed at %s: %s",
                ".".join(str(part) for part in error.path or []) or "the operation",
                one_line(error.message),
                exc_info=error.original_error,
                extra={"code": code, "operation": operation_name},
            )
            mask(error)
        else:
            client.append((code, one_line(error.message)))
    if client:
        logger.info(
            "GraphQL errors caused by the request: %s",
            "; ".join(f"{code}: {message}" for code, message in client),
            extra={"codes": sorted({code for code, _ in client}), "operation": operation_name},
        )
