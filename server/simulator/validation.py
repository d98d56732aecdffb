"""Checking prediction requests the way Replicate does, and reading its request headers.

Bodies may only hold Replicate's fields; `input` is validated against the version's Input schema with
`jsonschema`, and each failure becomes an invalid field shaped like Replicate's (gojsonschema error
types such as ``required``, ``invalid_type``, ``number_gte``, ``enum``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from server.simulator.catalogue import CatalogueModel, find_by_ref, find_by_version
from server.simulator.problems import InvalidField, Problem, bad_request, invalid

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
BODY_FIELDS = frozenset({"version", "input", "webhook", "webhook_events_filter", "webhook_completed", "stream"})
MAX_WAIT_SECONDS = 60.0
VERSION_NOT_PERMITTED = "The specified version does not exist (or perhaps you don't have permission to use it?)"

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait(?:\s*=\s*(\d+(?:\.\d+)?))?(?=$|[,;\s])", re.IGNORECASE)

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class PredictionRequest:
    """A valid request to create a prediction."""

    model: CatalogueModel
    input: dict[str, Any]
    webhook: str | None
    events: frozenset[str]
    stream: bool


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type check reports non-strings
    if value.startswith("data:"):
        return "," in value
    parsed = urlparse(value)
    return bool(parsed.scheme and parsed.netloc)


_FORMATS = FormatChecker(formats=())
_FORMATS.checks("uri")(_is_uri)


def _number(value: Any) -> str:
    return json.dumps(value)


def _field_error(error: ValidationError) -> list[InvalidField]:
    path = ".".join(["input", *(str(part) for part in error.absolute_path)])
    value: Any = error.validator_value
    kind = error.validator
    if kind == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        return [InvalidField("required", path, f"{name} is required") for name in value if name not in present]
    if kind == "type":
        given = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        expected = value if isinstance(value, str) else ", ".join(value)
        return [InvalidField("invalid_type", path, f"Invalid type. Expected: {expected}, given: {given}")]
    descriptions = {
        "minimum": ("number_gte", f"Must be greater than or equal to {_number(value)}"),
        "maximum": ("number_lte", f"Must be less than or equal to {_number(value)}"),
        "exclusiveMinimum": ("number_gt", f"Must be greater than {_number(value)}"),
        "exclusiveMaximum": ("number_lt", f"Must be less than {_number(value)}"),
        "multipleOf": ("multiple_of", f"Must be a multiple of {_number(value)}"),
        "minLength": ("string_gte", f"String length must be greater than or equal to {value}"),
        "maxLength": ("string_lte", f"String length must be less than or equal to {value}"),
        "format": ("format", f"Does not match format '{value}'"),
    }
    if kind == "enum":
        choices = ", ".join(json.dumps(choice) for choice in value)
        return [InvalidField("enum", path, f"{path} must be one of the following: {choices}")]
    error_type, description = descriptions.get(str(kind), (str(kind), error.message))
    return [InvalidField(error_type, path, description)]


def validate_input(model: CatalogueModel, value: Any) -> list[InvalidField]:
    """Every way `value` breaks the model's Input schema (empty when it is valid)."""
    schema = {**model.input_schema(), "components": model.openapi_schema()["components"]}
    validator = Draft7Validator(schema, format_checker=_FORMATS)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(part) for part in e.absolute_path])
    return [field for error in errors for field in _field_error(error)]


def not_permitted(detail: str, fields: list[InvalidField] | None = None) -> Problem:
    """Replicate's answer to a version it will not run: unknown, or a community model named without one."""
    return Problem(422, "Invalid version or not permitted", detail, fields)


def _resolve_version(version: Any) -> CatalogueModel:
    """The model a body's `version` names: "owner/name:<id>", a bare 64-hex id, or "owner/name" of an
    official model (a community model has to be named with its version)."""
    model: CatalogueModel | None = None
    if isinstance(version, str):
        ref, _, version_id = version.partition(":")
        if version_id:
            model = find_by_ref(ref)
            if model is not None and model.version_id != version_id:
                model = None
        elif _VERSION_ID.match(version):
            model = find_by_version(version)
        elif "/" in version:
            model = find_by_ref(version)
            if model is not None and not model.is_official:
                model = None
    if model is None:
        raise not_permitted(
            VERSION_NOT_PERMITTED, [InvalidField("invalid_version", "version", "Invalid version or not permitted")]
        )
    return model


def parse_prediction_request(body: Any, model: CatalogueModel | None) -> PredictionRequest:
    """Check a create-prediction body; `model` is the one named in the URL, None for ``/v1/predictions``.

    Raises Problem (422) listing every invalid field, or naming an unknown version. Only an official
    model runs through the models endpoint: another there is a version not permitted, as at Replicate.
    """
    if model is not None and not model.is_official:
        raise not_permitted(VERSION_NOT_PERMITTED)
    if not isinstance(body, dict):
        raise invalid("Invalid request", [InvalidField("invalid_type", "(root)", "Expected: object")])
    allowed = BODY_FIELDS if model is None else BODY_FIELDS - {"version"}
    problems = [
        InvalidField("additional_property_not_allowed", "(root)", f"Additional property {name} is not allowed")
        for name in body
        if name not in allowed
    ]
    if model is None and "version" not in body:
        problems.append(InvalidField("required", "(root)", "version is required"))
    if "input" not in body:
        problems.append(InvalidField("required", "(root)", "input is required"))
    elif not isinstance(body["input"], dict):
        problems.append(InvalidField("invalid_type", "input", "Invalid type. Expected: object"))
    webhook = body.get("webhook") or body.get("webhook_completed")
    if webhook is not None and not (
        isinstance(webhook, str) and urlparse(webhook).scheme in ("http", "https") and urlparse(webhook).netloc
    ):
        problems.append(InvalidField("format", "webhook", "Does not match format 'uri'"))
    events = body.get("webhook_events_filter")
    if events is not None and (not isinstance(events, list) or any(event not in WEBHOOK_EVENTS for event in events)):
        choices = ", ".join(json.dumps(event) for event in WEBHOOK_EVENTS)
        problems.append(
            InvalidField("enum", "webhook_events_filter", f"Each event must be one of the following: {choices}")
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        problems.append(InvalidField("invalid_type", "stream", "Invalid type. Expected: boolean"))
    if problems:
        raise invalid("Invalid request", problems)

    resolved = model or _resolve_version(body["version"])
    input_problems = validate_input(resolved, body["input"])
    if input_problems:
        raise invalid("Input validation failed", input_problems)
    if events is None:
        chosen = frozenset({"completed"}) if body.get("webhook_completed") and not body.get("webhook") else None
        events = chosen or frozenset(WEBHOOK_EVENTS)
    return PredictionRequest(resolved, dict(body["input"]), webhook, frozenset(events), stream)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("5s", "1m30s", "250ms"; a bare number is seconds).

    Raises Problem (400) when `text` is not one.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise bad_request(f"Cancel-After must be a duration such as 30s or 5m, not {text!r}")
    return total


def parse_prefer_wait(header: str | None) -> float | None:
    """Seconds a ``Prefer: wait`` / ``Prefer: wait=N`` header asks to hold the request; None without one."""
    if not header:
        return None
    match = _PREFER_WAIT.search(header)
    if match is None:
        return None
    seconds = float(match.group(1)) if match.group(1) else MAX_WAIT_SECONDS
    return min(MAX_WAIT_SECONDS, max(1.0, seconds))
