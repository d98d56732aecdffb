"""fal's refusals in Darkroom's error codes.

fal's endpoints validate their input with pydantic and refuse it with a 422 whose body is
``{"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}, ...]}``. Each item
becomes a `server.provider.errors.InvalidField` (field ``input.<name>``), and each of those a Refusal
with the path and the code Darkroom's own input validation uses for the same fault (the codes
`server.provider.replicate.refusals` uses for Replicate's gojsonschema types). Any other failure reads
as `server.provider.errors.general_refusal` says.
"""

from __future__ import annotations

from typing import Any

from server.provider.errors import (
    MAX_INVALID_FIELDS,
    InvalidField,
    ProviderError,
    ProviderValidationError,
    refusals_by_field,
)
from server.provider.types import Refusal

_MAX_LOC_PARTS = 10

# pydantic's error types (v2 names, and v1's dotted ones by their last word) onto the codes of
# server.services.catalogue.validation.
_CODES = {
    "missing": "REQUIRED",
    "value_error.missing": "REQUIRED",
    "extra_forbidden": "UNKNOWN_FIELD",
    "literal_error": "NOT_IN_ENUM",
    "enum": "NOT_IN_ENUM",
    "greater_than": "OUT_OF_RANGE",
    "greater_than_equal": "OUT_OF_RANGE",
    "less_than": "OUT_OF_RANGE",
    "less_than_equal": "OUT_OF_RANGE",
    "multiple_of": "INVALID_VALUE",
    "string_too_short": "INVALID_LENGTH",
    "string_too_long": "INVALID_LENGTH",
    "too_short": "INVALID_LENGTH",
    "too_long": "INVALID_LENGTH",
    "string_pattern_mismatch": "INVALID_FORMAT",
    "url_parsing": "INVALID_URI",
    "url_scheme": "INVALID_URI",
    "url_type": "INVALID_URI",
}
_TYPE_SUFFIXES = ("_type", "_parsing")


def _field(loc: Any) -> str:
    """``input.<name>[.<more>]`` for a pydantic `loc`; fal's own prefix ("body") is dropped."""
    parts = [str(part) for part in loc[:_MAX_LOC_PARTS] if isinstance(part, str | int)] if isinstance(loc, list) else []
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return ".".join(["input", *parts])


def validation_error(detail: list[Any], *, retry_after_seconds: float | None = None) -> ProviderValidationError:
    """The ProviderValidationError of a fal 422 whose `detail` is a list of pydantic errors."""
    fields = [
        InvalidField.of(item.get("type"), _field(item.get("loc")), item.get("msg"))
        for item in detail[:MAX_INVALID_FIELDS]
        if isinstance(item, dict)
    ]
    summary = "; ".join(f"{item.field}: {item.description}" for item in fields[:5])
    return ProviderValidationError(
        "Unprocessable Entity", summary, status=422, retry_after_seconds=retry_after_seconds, invalid_fields=fields
    )


def refusals_for(exc: ProviderError) -> list[Refusal]:
    """Each invalid field of a 422 with its own path and code, else the one general reading of `exc`."""
    return refusals_by_field(exc, _field_refusal)


def _code(error_type: str) -> str:
    if error_type in _CODES:
        return _CODES[error_type]
    last = error_type.rsplit(".", 1)[-1]
    if error_type.startswith("type_error") or last.endswith(_TYPE_SUFFIXES) or error_type.endswith(_TYPE_SUFFIXES):
        return "INVALID_TYPE"
    if error_type.startswith("value_error.number"):
        return "OUT_OF_RANGE"
    return "PROVIDER_VALIDATION"


def _field_refusal(item: InvalidField) -> Refusal:
    parts = [part for part in item.field.split(".") if part]
    path = parts if parts[:1] == ["input"] and len(parts) > 1 else None
    name = ".".join(path[1:]) if path else "the request"
    return Refusal(path, f"the provider refused {name}: {item.description}", _code(item.type))
