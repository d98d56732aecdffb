"""Reading a model's input JSON Schema, whichever provider wrote it: refs resolved, its fields, its image input.

Providers publish a model's inputs as a JSON Schema object inside an OpenAPI document. Properties may
carry `x-order` (form order); enums may be wrapped as `{"allOf": [{"$ref": "#/components/schemas/x"}],
"default": ...}` or inlined; optional values may be `nullable` (OpenAPI 3.0) or `anyOf: [..., {"type":
"null"}]`. Each adapter finds the schema in its provider's document (Replicate's in Cog's layout:
server/provider/replicate/models.py); everything here is pure, no I/O, so it is tested table-driven.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32

# Names image-to-video models are known to use for the picture to animate, most telling first. Only a
# tie-breaker: detection works from the schema (a URI string whose name or description says image).
PREFERRED_IMAGE_NAMES = (
    "image",
    "first_frame_image",
    "start_image",
    "input_image",
    "init_image",
    "first_frame",
    "start_frame",
    "image_url",
    "start_image_url",
    "first_frame_url",
    "input",
)
IMAGE_WORDS = ("image", "img", "frame", "photo", "picture", "still")
# Words of file inputs that take a picture of some sort, for a form's image picker.
PICTURE_WORDS = (*IMAGE_WORDS, "mask")
FIRST_WORDS = ("first", "start", "starting", "initial", "init", "input", "source", "begin")
# Name parts that mark an image input that is not the picture to animate (the last frame, a mask, a
# style or character reference, a control map) or not an image at all.
EXCLUDED_NAME_PARTS = frozenset(
    {
        "mask",
        "end",
        "last",
        "tail",
        "final",
        "ending",
        "reference",
        "references",
        "ref",
        "refs",
        "style",
        "control",
        "depth",
        "pose",
        "canny",
        "video",
        "audio",
        "music",
        "voice",
        "lora",
        "weights",
        "background",
        "bg",
        "face",
        "subject",
        "character",
        "logo",
    }
)
END_FRAME_PHRASES = ("last frame", "end frame", "final frame", "ending frame", "tail frame", "end image")


def _pointer(document: dict[str, Any], ref: str) -> Any:
    """The node a local JSON pointer (`#/components/schemas/x`) names, or None when it names nothing."""
    if not ref.startswith("#"):
        return None
    node: Any = document
    for raw in ref[1:].lstrip("/").split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _merge_all_of(parts: list[dict[str, Any]], siblings: dict[str, Any]) -> dict[str, Any]:
    """Fold allOf entries into one schema; the property's own keys (default, title, x-order) win."""
    merged: dict[str, Any] = {}
    for part in [*parts, siblings]:
        for key, value in part.items():
            if key == "properties" and isinstance(merged.get(key), dict) and isinstance(value, dict):
                merged[key] = {**merged[key], **value}
            elif key == "required" and isinstance(merged.get(key), list) and isinstance(value, list):
                merged[key] = list(dict.fromkeys([*merged[key], *value]))
            else:
                merged[key] = value
    return merged


def resolve_refs(schema: Any, document: dict[str, Any], _seen: tuple[str, ...] = (), _depth: int = 0) -> Any:
    """A copy of `schema` with every local `$ref` inlined from `document` and `allOf` folded.

    `document` is the whole OpenAPI document (or anything holding the pointed-to nodes; a bare
    `components.schemas` mapping is accepted too, for refs like `#/components/schemas/x`). A ref that
    points nowhere, or back into itself, becomes `{}` (anything goes) so validation never trips on it.
    """
    if _depth > MAX_DEPTH:
        return {}
    if isinstance(schema, list):
        return [resolve_refs(item, document, _seen, _depth + 1) for item in schema]
    if not isinstance(schema, dict):
        return schema
    siblings = {key: value for key, value in schema.items() if key != "$ref"}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _pointer(document, ref)
        if target is None and ref.startswith("#/components/schemas/"):
            target = _pointer({"components": {"schemas": document}}, ref)
        if target is None or ref in _seen:
            resolved_target: dict[str, Any] = {}
        else:
            resolved = resolve_refs(copy.deepcopy(target), document, (*_seen, ref), _depth + 1)
            resolved_target = resolved if isinstance(resolved, dict) else {}
        return _merge_all_of([resolved_target], resolve_refs(siblings, document, _seen, _depth + 1))
    resolved_schema = {key: resolve_refs(value, document, _seen, _depth + 1) for key, value in siblings.items()}
    all_of = resolved_schema.get("allOf")
    if isinstance(all_of, list) and all(isinstance(part, dict) for part in all_of):
        rest = {key: value for key, value in resolved_schema.items() if key != "allOf"}
        return _merge_all_of(all_of, rest)
    return resolved_schema


# --- one property -------------------------------------------------------------------------------------
def _non_null_branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if isinstance(branches, list):
            return [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
    return []


def effective_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """The schema a value must meet once "or null" is taken away (`anyOf: [X, null]` gives X + prop)."""
    branches = _non_null_branches(prop)
    if len(branches) == 1:
        outer = {key: value for key, value in prop.items() if key not in ("anyOf", "oneOf")}
        return {**branches[0], **outer}
    return prop


def is_nullable(prop: dict[str, Any]) -> bool:
    """Whether null is an accepted value (OpenAPI `nullable`, a type list, or a null anyOf branch)."""
    if prop.get("nullable") is True:
        return True
    kind = prop.get("type")
    if isinstance(kind, list) and "null" in kind:
        return True
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if isinstance(branches, list) and any(isinstance(b, dict) and b.get("type") == "null" for b in branches):
            return True
    return False


def field_type(prop: dict[str, Any]) -> str:
    """The JSON type of a property: string, integer, number, boolean, array, object, or any."""
    schema = effective_schema(prop)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(kind, str) and kind != "null":
        return kind
    options = schema.get("enum")
    if isinstance(options, list) and options:
        if all(isinstance(o, bool) for o in options):
            return "boolean"
        if all(isinstance(o, int) and not isinstance(o, bool) for o in options):
            return "integer"
        if all(isinstance(o, int | float) and not isinstance(o, bool) for o in options):
            return "number"
        if all(isinstance(o, str) for o in options):
            return "string"
    if schema.get("format") == "uri":
        return "string"
    return "any"


def is_uri_string(prop: dict[str, Any]) -> bool:
    schema = effective_schema(prop)
    return field_type(schema) == "string" and schema.get("format") == "uri"


def is_file_input(prop: dict[str, Any]) -> bool:
    """A URI input (or a list of them): cog's `Path`/`File` inputs, which take a file by URL."""
    schema = effective_schema(prop)
    if is_uri_string(schema):
        return True
    items = schema.get("items")
    return field_type(schema) == "array" and isinstance(items, dict) and is_uri_string(items)


def is_secret(prop: dict[str, Any]) -> bool:
    schema = effective_schema(prop)
    return schema.get("format") == "password" or bool(schema.get("x-cog-secret"))


def _name_parts(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [part for part in re.split(r"[^a-z0-9]+", spaced.lower()) if part]


def _text(prop: dict[str, Any]) -> str:
    return f"{prop.get('title') or ''} {prop.get('description') or ''}".lower()


def looks_like_image(name: str, prop: dict[str, Any]) -> bool:
    """A file input whose name, title or description speaks of a picture (masks included)."""
    if not is_file_input(prop):
        return False
    parts = _name_parts(name)
    text = _text(prop)
    return any(word in part for part in parts for word in PICTURE_WORDS) or any(w in text for w in PICTURE_WORDS)


def image_field_score(name: str, prop: dict[str, Any], required: bool) -> int | None:
    """How likely `name` is the input taking the picture to animate; None when it cannot be.

    It must be a single URI string with an image-ish name or description, and not a mask, a last
    frame, a reference, a control map or another medium.
    """
    if not isinstance(prop, dict) or not is_uri_string(prop):
        return None
    parts = _name_parts(name)
    if EXCLUDED_NAME_PARTS.intersection(parts):
        return None
    text = _text(prop)
    name_says_image = any(word in part for part in parts for word in IMAGE_WORDS)
    text_says_image = any(word in text for word in IMAGE_WORDS)
    if not (name_says_image or text_says_image):
        return None
    says_first = any(word in parts for word in FIRST_WORDS) or any(word in text for word in FIRST_WORDS)
    if any(phrase in text for phrase in END_FRAME_PHRASES) and not says_first:
        return None
    score = 0
    if name.lower() in PREFERRED_IMAGE_NAMES:
        score += 40 - PREFERRED_IMAGE_NAMES.index(name.lower())
    if name_says_image:
        score += 20
    if text_says_image:
        score += 5
    if says_first:
        score += 10
    if required:
        score += 15
    return score


def find_image_field(input_schema: dict[str, Any] | None) -> str | None:
    """The input that takes the image to animate (best score, then lowest x-order), or None."""
    if not isinstance(input_schema, dict):
        return None
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return None
    required = set(input_schema.get("required") or [])
    ranked: list[tuple[int, float, str]] = []
    for index, (name, prop) in enumerate(properties.items()):
        score = image_field_score(name, prop, name in required) if isinstance(prop, dict) else None
        if score is not None:
            ranked.append((-score, field_order(prop, index), name))
    return min(ranked)[2] if ranked else None


def unmet_requirements(
    input_schema: dict[str, Any] | None, given: Mapping[str, Any], *, filled: Iterable[str | None] = ()
) -> list[str]:
    """Required inputs that neither `given`, `filled` (inputs Darkroom fills itself) nor a default provide.

    A given value of null or blank text does not count: the model would refuse it. The names come in
    the schema's order.
    """
    if not isinstance(input_schema, dict):
        return []
    properties = input_schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    skip = {name for name in filled if name}
    unmet = []
    for name in input_schema.get("required") or []:
        if not isinstance(name, str) or name in skip:
            continue
        prop = properties.get(name)
        if isinstance(prop, dict) and "default" in effective_schema(prop):
            continue
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            unmet.append(name)
    return sorted(unmet, key=lambda name: field_order(properties.get(name), len(properties)))


def field_order(prop: Any, index: int) -> float:
    """A property's `x-order`; properties without one come after all ordered ones, as listed."""
    if not isinstance(prop, dict):
        return 10_000.0 + index
    order = prop.get("x-order")
    if isinstance(order, int | float) and not isinstance(order, bool):
        return float(order)
    return 10_000.0 + index


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- the form ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InputField:
    """One input of a model, described for building a form."""

    name: str
    type: str
    title: str | None
    description: str | None
    default: Any
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    exclusive_maximum: bool
    options: list[Any] | None
    format: str | None
    item_type: str | None
    required: bool
    nullable: bool
    is_file: bool
    is_image: bool
    is_image_input: bool
    is_secret: bool
    order: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str) -> tuple[float | None, bool]:
    """A bound and whether it is exclusive, from either JSON Schema spelling (number or boolean form)."""
    value = schema.get(exclusive)
    if _number(value) is not None:
        return _number(value), True
    return _number(schema.get(inclusive)), value is True


def _description(schema: dict[str, Any]) -> str | None:
    text = schema.get("description")
    # Cog gives every enum it lifts into components this placeholder; it tells a person nothing.
    if not isinstance(text, str) or text.strip() in ("", "An enumeration."):
        return None
    return text


def describe_field(
    name: str, prop: dict[str, Any], *, required: bool, image_field: str | None, index: int
) -> InputField:
    schema = effective_schema(prop)
    minimum, exclusive_min = _bound(schema, "minimum", "exclusiveMinimum")
    maximum, exclusive_max = _bound(schema, "maximum", "exclusiveMaximum")
    options = schema.get("enum")
    items = schema.get("items")
    order = field_order(prop, index)
    return InputField(
        name=name,
        type=field_type(schema),
        title=schema.get("title") if isinstance(schema.get("title"), str) else None,
        description=_description(schema),
        default=copy.deepcopy(schema.get("default")),
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_min,
        exclusive_maximum=exclusive_max,
        options=[o for o in options if o is not None] if isinstance(options, list) else None,
        format=schema.get("format") if isinstance(schema.get("format"), str) else None,
        item_type=field_type(items) if isinstance(items, dict) else None,
        required=required,
        nullable=is_nullable(prop),
        is_file=is_file_input(schema),
        is_image=looks_like_image(name, schema),
        is_image_input=name == image_field,
        is_secret=is_secret(schema),
        order=int(order),
    )


def list_inputs(input_schema: dict[str, Any] | None, image_field: str | None) -> list[InputField]:
    """The Input schema's properties as form fields, in `x-order` order (unordered ones last, as listed).

    `image_field` marks the input animateImage fills (`find_image_field` finds it).
    """
    if not isinstance(input_schema, dict):
        return []
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(input_schema.get("required") or [])
    fields = [
        describe_field(name, prop, required=name in required, image_field=image_field, index=index)
        for index, (name, prop) in enumerate(properties.items())
        if isinstance(prop, dict)
    ]
    positions = {name: index for index, name in enumerate(properties)}
    return sorted(fields, key=lambda field: (field.order, positions[field.name]))


def produces_files(output_schema: Any, _depth: int = 0) -> bool:
    """Whether an Output schema yields file URLs (a URI string, a list of them, an object holding them)."""
    if not isinstance(output_schema, dict) or _depth > MAX_DEPTH:
        return False
    schema = effective_schema(output_schema)
    if is_uri_string(schema):
        return True
    nested = [schema.get("items"), *(schema.get("properties") or {}).values()]
    nested += [b for key in ("anyOf", "oneOf", "allOf") for b in schema.get(key) or [] if isinstance(b, dict)]
    return any(produces_files(part, _depth + 1) for part in nested)
