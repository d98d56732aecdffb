"""Errors the service layer reports to callers: each becomes a GraphQL `userErrors` entry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field. `field` is a path such as ["input", "num_outputs"]."""

    field: list[str] | None
    message: str
    code: str
    retry_after_seconds: float | None = None


class ServiceError(Exception):
    """A request the service refused; nothing was written. Carries one or more field errors."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors

    @classmethod
    def single(cls, code: str, message: str, field: list[str] | None = None) -> ServiceError:
        return cls([FieldError(field=field, message=message, code=code)])


class NotFound(ServiceError):
    """The thing does not exist, or the caller may not see it (the two are never distinguished)."""

    def __init__(self, what: str, field: list[str] | None = None) -> None:
        super().__init__([FieldError(field=field, message=f"{what} not found", code="NOT_FOUND")])
