"""Problem details (application/problem+json), the error body of every Replicate endpoint.

``{"title", "detail", "status"}``; validation errors (422) add
``invalid_fields: [{"type", "field", "description"}]`` and list each one in `detail` as
``- field: description``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class InvalidField:
    """One reason a request was rejected: a gojsonschema-style `type`, the `field` path, a `description`."""

    type: str
    field: str
    description: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "field": self.field, "description": self.description}


class Problem(Exception):
    """Raised by a handler to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        invalid_fields: list[InvalidField] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_fields = invalid_fields
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"title": self.title, "detail": self.detail, "status": self.status}
        if self.invalid_fields is not None:
            body["invalid_fields"] = [field.to_json() for field in self.invalid_fields]
        return body

    def response(self) -> Response[dict[str, Any]]:
        return Response(self.to_json(), status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=self.headers)


def invalid(title: str, fields: list[InvalidField]) -> Problem:
    """A 422 listing every invalid field, e.g. title "Input validation failed"."""
    detail = "\n".join(f"- {field.field}: {field.description}" for field in fields)
    return Problem(422, title, detail, fields)


def not_found(detail: str = "Not found.") -> Problem:
    return Problem(404, "Not found", detail)


def unauthenticated(detail: str) -> Problem:
    return Problem(401, "Unauthenticated", detail, headers={"www-authenticate": "Bearer"})


def bad_request(detail: str) -> Problem:
    return Problem(400, "Bad request", detail)


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return exc.response()


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's own errors (unknown route, wrong method, body too large) in Replicate's shape."""
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request entity too large"}
    status = exc.status_code
    detail = "Not found." if status == 404 else str(exc.detail)
    return Problem(status, titles.get(status, "Error"), detail, headers=exc.headers).response()


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("simulator request failed", extra={"path": request.url.path})
    return Problem(500, "Internal server error", "The simulator failed to handle this request.").response()


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
