"""Replicate's refusals in Darkroom's error codes.

A 422's ``invalid_fields`` use gojsonschema's error types ("required", "enum", "number_gte"...); each
becomes a Refusal with the path and the code Darkroom's own input validation uses for the same fault.
Any other failure reads as `server.provider.errors.general_refusal` says.
"""

from __future__ import annotations

from server.provider.errors import InvalidField, ProviderError, refusals_by_field
from server.provider.types import Refusal

# gojsonschema's error types onto the codes of server.services.catalogue.validation.
_CODES = {
    "required": "REQUIRED",
    "additional_property_not_allowed": "UNKNOWN_FIELD",
    "invalid_type": "INVALID_TYPE",
    "enum": "NOT_IN_ENUM",
    "const": "NOT_IN_ENUM",
    "number_gte": "OUT_OF_RANGE",
    "number_gt": "OUT_OF_RANGE",
    "number_lte": "OUT_OF_RANGE",
    "number_lt": "OUT_OF_RANGE",
    "multiple_of": "INVALID_VALUE",
    "string_gte": "INVALID_LENGTH",
    "string_lte": "INVALID_LENGTH",
    "array_min_items": "INVALID_LENGTH",
    "array_max_items": "INVALID_LENGTH",
    "format": "INVALID_FORMAT",
    "does_not_match_format": "INVALID_FORMAT",
    "does_not_match_pattern": "INVALID_FORMAT",
    "invalid_version": "INVALID_VERSION",
}


def refusals_for(exc: ProviderError) -> list[Refusal]:
    """Each invalid field of a 422 with its own path and code, else the one general reading of `exc`."""
    return refusals_by_field(exc, _field_refusal)


def _field_refusal(item: InvalidField) -> Refusal:
    parts = [part for part in item.field.split(".") if part]
    path: list[str] | None = None
    if parts[:1] == ["input"]:
        path = ["input", *parts[1:]]
        # A missing or extra property is reported on the object around it, named in the sentence.
        words = item.description.split()
        if item.type == "required" and words[1:] == ["is", "required"]:
            path.append(words[0])
        elif item.type == "additional_property_not_allowed" and words[:1] == ["Additional"]:
            path += words[2:3]
    elif parts[:1] == ["version"]:
        path = ["model"]
    code = _CODES.get(item.type, "PROVIDER_VALIDATION")
    if code == "INVALID_FORMAT" and "uri" in item.description:
        code = "INVALID_URI"
    name = ".".join(path[1:]) if path and len(path) > 1 else (path[0] if path else "the request")
    return Refusal(path, f"the provider refused {name}: {item.description}", code)
