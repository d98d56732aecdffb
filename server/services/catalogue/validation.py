"""Checking a generation's input against the model's Input schema before anything is sent.

The caller's values are first converted the way the schema asks ("4" -> 4 for an integer, "true" ->
true, "0.5" -> 0.5 for a number), then checked with `jsonschema` (Draft 2020-12, with a format checker
for `uri`). Every problem is reported at once, each with its field path (["input", "<name>", ...]), a
sentence a person understands and a stable code:

    INVALID_INPUT   the input is not a JSON object
    EMPTY_PROMPT    the prompt is empty or only whitespace
    UNKNOWN_FIELD   the model has no such input
    REQUIRED        a required input is missing
    INVALID_TYPE    a value of the wrong type that cannot be converted
    OUT_OF_RANGE    a number below the minimum or above the maximum
    NOT_IN_ENUM     a value outside the allowed options
    INVALID_URI     a file input that is not an http(s) or data: URL
    INVALID_LENGTH  too short or too long (text or list)
    INVALID_FORMAT  a value not matching the schema's pattern or format
    INVALID_VALUE   anything else the schema refuses

A number, given as a number or as text, is read by `server.services.catalogue.numbers`: one with more
than INPUT_MAX_NUMBER_DIGITS digits is OUT_OF_RANGE before it is converted, NaN and Infinity are
INVALID_TYPE. The size of the whole input is checked before this (`input_bounds`).

Defaults: the provider applies the schema's defaults itself, so only the caller's values are sent
(`CheckedInput.given`); the generation stores them with the defaults filled in (`CheckedInput.explicit`),
so its record says exactly what ran. Secret inputs (`format: password`, `x-cog-secret`) are sent but
never stored, and a refusal of one never quotes its value. Other values are quoted cut short.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

from server.db.models import CatalogModel
from server.provider.model_schema import effective_schema, field_order, field_type, is_nullable, is_secret
from server.quoting import cut_text, quote_value
from server.services.catalogue.numbers import NumberProblem, NumberRefused, read_integer, read_number
from server.services.errors import FieldError, ServiceError
from server.settings import InputsSettings

SECRET_MASK = "**********"
PROMPT_FIELD = "prompt"
TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "string": "text",
    "array": "a list",
    "object": "a JSON object",
    "null": "null",
}
TRUE_WORDS = frozenset({"true", "yes", "on", "1", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "off", "0", "n", "f"})
DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*(;base64)?,", re.IGNORECASE)
RANGE_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
LENGTH_KEYWORDS = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
DEFAULT_LIMITS = InputsSettings()


def is_fetchable_uri(value: str) -> bool:
    """An http(s) URL with a host, or a data: URI: the only file references the provider can read."""
    if any(ch.isspace() for ch in value):
        return False
    if value[:5].lower() == "data:":
        return DATA_URI.match(value) is not None
    parts = urlsplit(value)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


FORMAT_CHECKER = FormatChecker(formats=())
FORMAT_CHECKER.checks("uri")(lambda value: not isinstance(value, str) or is_fetchable_uri(value))


@dataclass(frozen=True, slots=True)
class CheckedInput:
    """A validated input: `given` is sent to the provider, `stored()` is what the generation records."""

    given: dict[str, Any]
    explicit: dict[str, Any]
    secret_fields: frozenset[str] = field(default_factory=frozenset)

    def stored(self) -> dict[str, Any]:
        """`explicit` with secret values masked: the database and the API never hold a secret."""
        return {k: (SECRET_MASK if k in self.secret_fields else v) for k, v in self.explicit.items()}


class _Unquoted:
    """No value to quote after the sentence."""


UNQUOTED = _Unquoted()


def refusal(sentence: str, value: Any = UNQUOTED, *, secret: bool = False) -> str:
    """A refusal's message: the sentence, then the value it refused, cut short; a secret is never quoted."""
    return sentence if secret or value is UNQUOTED else f"{sentence}; got {quote_value(value)}"


class _Invalid(Exception):
    def __init__(self, code: str, sentence: str, value: Any = UNQUOTED, path: tuple[str, ...] = ()) -> None:
        super().__init__(sentence)
        self.code = code
        self.sentence = sentence
        self.value = value
        self.path = path

    def message(self, *, secret: bool) -> str:
        return refusal(self.sentence, self.value, secret=secret)


class _Omit:
    """A value that counts as not given: null for a non-nullable input, a blank number box."""


OMIT = _Omit()


# --- conversion ---------------------------------------------------------------------------------------
def _wrong_type(name: str, expected: str, value: Any) -> _Invalid:
    return _Invalid("INVALID_TYPE", f"{name} must be {TYPE_WORDS.get(expected, expected)}", value)


def _refused_number(name: str, expected: str, value: Any, exc: NumberRefused, max_digits: int) -> _Invalid:
    if exc.problem is NumberProblem.TOO_LARGE:
        sentence = f"{name} must be {TYPE_WORDS[expected]} of at most {max_digits} digits"
        if expected == "number":
            sentence += ", within a float's range (about 1e308)"
        return _Invalid("OUT_OF_RANGE", sentence, value)
    return _wrong_type(name, expected, value)


def _to_integer(name: str, value: Any, max_digits: int) -> Any:
    if isinstance(value, str) and not value.strip():
        return OMIT
    try:
        return read_integer(value, max_digits)
    except NumberRefused as exc:
        raise _refused_number(name, "integer", value, exc, max_digits) from None


def _to_number(name: str, value: Any, max_digits: int) -> Any:
    if isinstance(value, str) and not value.strip():
        return OMIT
    try:
        return read_number(value, max_digits)
    except NumberRefused as exc:
        raise _refused_number(name, "number", value, exc, max_digits) from None


def _to_boolean(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return OMIT
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    raise _wrong_type(name, "boolean", value)


def _to_string(name: str, value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if schema.get("format") == "uri":
            # A blank file box means "no file"; a URL pasted with spaces around it is still that URL.
            return value.strip() or OMIT
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and schema.get("format") != "uri":
        return str(value)
    raise _wrong_type(name, "string", value)


def _to_array(name: str, value: Any, schema: dict[str, Any], limits: InputsSettings) -> Any:
    if not isinstance(value, list):
        raise _wrong_type(name, "array", value)
    items = schema.get("items")
    if not isinstance(items, dict):
        return value
    converted = []
    for index, item in enumerate(value):
        try:
            result = convert(f"{name}[{index}]", item, items, limits)
        except _Invalid as exc:
            raise _Invalid(exc.code, exc.sentence, exc.value, (str(index), *exc.path)) from None
        converted.append(None if result is OMIT else result)
    return converted


def _match_option(value: Any, options: list[Any]) -> Any:
    """An enum option equal to `value` once both are read as text ("5" for 5), else `value` as it was."""
    if value in options:
        return value
    wanted = _as_text(value)
    matches = [option for option in options if wanted is not None and _as_text(option) == wanted]
    return matches[0] if len(matches) == 1 else value


def _as_text(value: Any) -> str | None:
    """A text or number option as text; None for a number too long to write out cheaply."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return None
    return str(value)


def convert(name: str, value: Any, prop: dict[str, Any], limits: InputsSettings = DEFAULT_LIMITS) -> Any:
    """`value` converted to the property's type, OMIT when it counts as not given, or _Invalid."""
    schema = effective_schema(prop)
    if value is None:
        return None if is_nullable(prop) else OMIT
    kind = field_type(schema)
    converted: Any
    if kind == "integer":
        converted = _to_integer(name, value, limits.max_number_digits)
    elif kind == "number":
        converted = _to_number(name, value, limits.max_number_digits)
    elif kind == "boolean":
        converted = _to_boolean(name, value)
    elif kind == "string":
        converted = _to_string(name, value, schema)
    elif kind == "array":
        converted = _to_array(name, value, schema, limits)
    elif kind == "object":
        if not isinstance(value, dict):
            raise _wrong_type(name, "object", value)
        converted = value
    else:
        converted = value
    options = schema.get("enum")
    if isinstance(options, list) and converted is not OMIT:
        converted = _match_option(converted, options)
    return converted


# --- jsonschema -------------------------------------------------------------------------------------------
def _for_validator(schema: Any) -> Any:
    """OpenAPI 3.0 spellings rewritten for a Draft 2020-12 validator: `nullable`, boolean exclusives."""
    if isinstance(schema, list):
        return [_for_validator(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _for_validator(value) for key, value in schema.items()}
    if out.pop("nullable", None) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and inclusive in out:
            out[exclusive] = out.pop(inclusive)
    return out


def _range_message(name: str, schema: dict[str, Any]) -> str:
    low = schema.get("exclusiveMinimum", schema.get("minimum"))
    high = schema.get("exclusiveMaximum", schema.get("maximum"))
    low_word = "greater than" if "exclusiveMinimum" in schema else "at least"
    high_word = "less than" if "exclusiveMaximum" in schema else "at most"
    if low is not None and high is not None:
        if "exclusiveMinimum" in schema or "exclusiveMaximum" in schema:
            return f"{name} must be {low_word} {quote_value(low)} and {high_word} {quote_value(high)}"
        return f"{name} must be between {quote_value(low)} and {quote_value(high)}"
    if low is not None:
        return f"{name} must be {low_word} {quote_value(low)}"
    return f"{name} must be {high_word} {quote_value(high)}"


def _field_error(error: ValidationError, secrets: frozenset[str]) -> FieldError:
    """One jsonschema error as a FieldError with a code and a sentence (anyOf: its most telling branch).

    The refused value is quoted, cut short, unless it lies in a secret input."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = best_match(error.context)
        if deepest is not None:
            return _field_error(deepest, secrets)
    path = ["input", *(str(part) for part in error.absolute_path)]
    name = ".".join(path[1:]) or "input"
    keyword = str(error.validator)
    schema = error.schema if isinstance(error.schema, dict) else {}
    rule = error.validator_value
    secret = len(path) > 1 and path[1] in secrets

    def refused(sentence: str, code: str) -> FieldError:
        return FieldError(path, refusal(sentence, error.instance, secret=secret), code)

    if keyword == "type":
        expected = next((t for t in rule if t != "null"), "null") if isinstance(rule, list) else rule
        return refused(f"{name} must be {TYPE_WORDS.get(str(expected), str(expected))}", "INVALID_TYPE")
    if keyword in ("enum", "const"):
        options: list[Any] = list(rule) if keyword == "enum" and isinstance(rule, list) else [rule]
        shown = ", ".join(quote_value(option) for option in options[:20] if option is not None)
        more = ", ..." if len(options) > 20 else ""
        return refused(f"{name} must be one of {shown}{more}", "NOT_IN_ENUM")
    if keyword in RANGE_KEYWORDS:
        return refused(_range_message(name, schema), "OUT_OF_RANGE")
    if keyword == "format" and rule == "uri":
        return refused(f"{name} must be a URL the provider can fetch (http://, https:// or data:)", "INVALID_URI")
    if keyword in LENGTH_KEYWORDS:
        what = "characters" if "Length" in keyword else "items"
        bound = "at least" if keyword.startswith("min") else "at most"
        return FieldError(path, f"{name} must have {bound} {quote_value(rule)} {what}", "INVALID_LENGTH")
    if keyword == "pattern":
        return refused(f"{name} does not have the expected format (the pattern {quote_value(rule)})", "INVALID_FORMAT")
    if keyword == "format":
        return refused(f"{name} does not have the expected format ({quote_value(rule)})", "INVALID_FORMAT")
    if keyword == "multipleOf":
        return refused(f"{name} must be a multiple of {quote_value(rule)}", "INVALID_VALUE")
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        properties = schema.get("properties")
        known = properties if isinstance(properties, dict) else {}
        extra = [key for key in error.instance if key not in known]
        names = ", ".join(quote_value(key, 40) for key in extra[:5]) + (", ..." if len(extra) > 5 else "")
        return FieldError(path, f"{name} has no field named {names}", "UNKNOWN_FIELD")
    # The validator's own sentence quotes the whole value: the rule is named instead.
    return refused(f"{name} does not meet the schema's rule {keyword}: {quote_value(rule, 60)}", "INVALID_VALUE")


def _schema_errors(schema: dict[str, Any], values: dict[str, Any], secrets: frozenset[str]) -> list[FieldError]:
    validator = Draft202012Validator(_for_validator(schema), format_checker=FORMAT_CHECKER)
    errors = []
    for error in validator.iter_errors(values):
        # Missing inputs are found beforehand, knowing defaults; jsonschema would repeat them.
        if error.validator == "required" and not error.absolute_path:
            continue
        errors.append(_field_error(error, secrets))
    return errors


# --- the whole input -------------------------------------------------------------------------------------
def _unknown(name: str, known: list[str], model_ref: str) -> FieldError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return FieldError(["input", name], f"{model_ref} has no input named '{cut_text(name, 60)}'{hint}", "UNKNOWN_FIELD")


def not_an_object(raw: Any) -> FieldError:
    return FieldError(["input"], refusal("input must be a JSON object", raw), "INVALID_INPUT")


def check_input(
    schema: dict[str, Any] | None, raw: Any, *, model_ref: str = "the model", limits: InputsSettings = DEFAULT_LIMITS
) -> CheckedInput:
    """Convert and check `raw` against an Input schema; ServiceError lists every problem found.

    With no schema (a model whose version the provider does not describe), only the prompt is checked
    and the input is passed on as given. `raw` is expected within `limits` already (`input_bounds`);
    here they bound how many digits a number is read with.
    """
    if not isinstance(raw, dict):
        raise ServiceError([not_an_object(raw)])
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(schema, dict) or not isinstance(properties, dict):
        prompt = raw.get(PROMPT_FIELD)
        if isinstance(prompt, str) and not prompt.strip():
            raise ServiceError([_empty_prompt()])
        return CheckedInput(dict(raw), dict(raw))

    secrets = frozenset(name for name, prop in properties.items() if isinstance(prop, dict) and is_secret(prop))
    errors: dict[str, list[FieldError]] = {}
    given: dict[str, Any] = {}
    open_ended = schema.get("additionalProperties") not in (None, False)
    for name, value in raw.items():
        prop = properties.get(name)
        if not isinstance(prop, dict):
            if open_ended:
                given[name] = value
            else:
                errors[name] = [_unknown(name, list(properties), model_ref)]
            continue
        if name == PROMPT_FIELD and isinstance(value, str) and not value.strip():
            errors[name] = [_empty_prompt()]
            continue
        try:
            converted = convert(name, value, prop, limits)
        except _Invalid as exc:
            message = exc.message(secret=name in secrets)
            errors[name] = [FieldError(["input", name, *exc.path], message, exc.code)]
            continue
        if converted is not OMIT:
            given[name] = converted

    for name in schema.get("required") or []:
        if name not in given and name not in errors and _default(properties.get(name)) is OMIT:
            errors[name] = [FieldError(["input", name], f"{name} is required", "REQUIRED")]

    for error in _schema_errors(schema, given, secrets):
        top = error.field[1] if error.field and len(error.field) > 1 else ""
        found = errors.setdefault(top, [])
        if all((e.field, e.code) != (error.field, error.code) for e in found):
            found.append(error)

    if errors:
        order = {name: index for index, name in enumerate(_ordered(properties))}
        ranked = sorted(errors.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
        raise ServiceError([error for _, found in ranked for error in found])

    explicit: dict[str, Any] = {}
    for name in [*_ordered(properties), *given]:
        if name in given:
            explicit[name] = given[name]
        elif name in properties and (default := _default(properties[name])) is not OMIT:
            explicit[name] = default
    return CheckedInput(given=given, explicit=explicit, secret_fields=secrets)


def validate_input(model: CatalogModel, raw: Any) -> dict[str, Any]:
    """The input with the schema's defaults filled in, or ServiceError listing every problem.

    Field paths start at "input". See `check_input` for what is sent versus what is stored.
    """
    return check_input(model.input_schema, raw, model_ref=model.ref).explicit


def _empty_prompt() -> FieldError:
    return FieldError(["input", PROMPT_FIELD], "prompt must not be empty or only spaces", "EMPTY_PROMPT")


def _default(prop: Any) -> Any:
    """The property's default as a value to store, OMIT when it has none (null only counts if allowed)."""
    if not isinstance(prop, dict):
        return OMIT
    schema = effective_schema(prop)
    if "default" not in schema:
        return OMIT
    default = schema["default"]
    if default is None and not is_nullable(prop):
        return OMIT
    return copy.deepcopy(default)


def _ordered(properties: dict[str, Any]) -> list[str]:
    """Property names in form order (x-order, then as listed)."""
    ranked = sorted(enumerate(properties.items()), key=lambda item: (field_order(item[1][1], item[0]), item[0]))
    return [name for _, (name, _prop) in ranked]
