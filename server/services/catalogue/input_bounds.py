"""The size of a client's input, checked before any other work is done on it.

Every later step (looking up Media IDs, converting, jsonschema, storing, sending) costs in proportion to
the input, and some recurse into it; so a generation's input is first walked once, without recursion,
and refused when it is beyond the INPUT_* settings. Each problem is a FieldError at the offending path:

    INVALID_LENGTH   text longer than INPUT_MAX_STRING_CHARS, a list longer than INPUT_MAX_ARRAY_ITEMS
    TOO_DEEP         lists and objects nested deeper than INPUT_MAX_DEPTH (the input itself is depth 1)
    OUT_OF_RANGE     a number with more than INPUT_MAX_NUMBER_DIGITS digits
    INVALID_TYPE     NaN or Infinity (JSON has neither; Python's reader lets them through)
    INVALID_VALUE    text that is not valid Unicode (a lone surrogate, from a \\ud800 escape)
    INPUT_TOO_LARGE  the whole input, as compact JSON, larger than INPUT_MAX_BYTES

A file input's text (a `format: uri` field, or a list of them) may be a data: URI, so it is held to
INPUT_MAX_BYTES only. The walk reports at most MAX_REPORTED problems and stops early once the input is
known to be too large.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.provider.model_schema import is_file_input
from server.quoting import cut_text
from server.services.catalogue.numbers import has_at_most_digits
from server.services.errors import FieldError, ServiceError
from server.settings import InputsSettings

MAX_REPORTED = 20
# What a JSON scalar other than text adds to the size, at most (a number within the digit limit adds less).
SCALAR_BYTES = 8


@dataclass(frozen=True, slots=True)
class _Node:
    path: tuple[str, ...]
    value: Any
    depth: int
    long_text: bool  # a file input's text, which may be a data: URI


def check_input_bounds(raw: Any, schema: dict[str, Any] | None, limits: InputsSettings) -> None:
    """Raise ServiceError listing where `raw` is beyond `limits`; nothing of it is converted or copied."""
    problems = list(_problems(raw, _file_inputs(schema), limits))
    if not problems:
        size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())
        if size > limits.max_bytes:
            problems.append(_too_large(limits))
    if problems:
        raise ServiceError(problems)


def _file_inputs(schema: dict[str, Any] | None) -> frozenset[str]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return frozenset()
    return frozenset(name for name, prop in properties.items() if isinstance(prop, dict) and is_file_input(prop))


def _problems(raw: Any, file_inputs: frozenset[str], limits: InputsSettings) -> Iterator[FieldError]:
    reported = 0
    size = 0
    stack = [_Node((), raw, 1, False)]
    while stack and reported < MAX_REPORTED:
        node = stack.pop()
        problem = _problem(node, limits)
        if problem is not None:
            reported += 1
            yield problem
            continue
        value = node.value
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                path = (*node.path, str(key))
                if len(key) > limits.max_string_chars or not _is_unicode(key):
                    reported += 1
                    yield _bad_name(path, limits)
                    if reported >= MAX_REPORTED:
                        return
                    continue
                long_text = node.long_text or (not node.path and key in file_inputs)
                stack.append(_Node(path, item, node.depth + 1, long_text))
                size += len(key) + 4
            size += 2
        elif isinstance(value, list):
            stack.extend(
                _Node((*node.path, str(index)), item, node.depth + 1, node.long_text)
                for index, item in reversed(list(enumerate(value)))
            )
            size += len(value) + 2
        else:
            size += len(value) + 2 if isinstance(value, str) else SCALAR_BYTES
        if size > limits.max_bytes:
            yield _too_large(limits)
            return


def _problem(node: _Node, limits: InputsSettings) -> FieldError | None:
    """What is wrong with this one value, not looking inside it."""
    value = node.value
    path = ["input", *node.path]
    name = _name(node.path)
    if isinstance(value, dict | list):
        if node.depth > limits.max_depth:
            return FieldError(path, f"{name} nests deeper than {limits.max_depth} levels", "TOO_DEEP")
        if isinstance(value, list) and len(value) > limits.max_array_items:
            message = f"{name} must have at most {limits.max_array_items} items; got {len(value)}"
            return FieldError(path, message, "INVALID_LENGTH")
    elif isinstance(value, str):
        most = limits.max_bytes if node.long_text else limits.max_string_chars
        if len(value) > most:
            return FieldError(path, f"{name} must have at most {most} characters; got {len(value)}", "INVALID_LENGTH")
        if not _is_unicode(value):
            return _not_unicode(node.path)
    elif isinstance(value, float) and not math.isfinite(value):
        message = f"{name} must be a finite number (not NaN, Infinity, or beyond a float's range like 1e400)"
        return FieldError(path, message, "INVALID_TYPE")
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not has_at_most_digits(value, limits.max_number_digits)
    ):
        message = f"{name} must have at most {limits.max_number_digits} digits"
        return FieldError(path, message, "OUT_OF_RANGE")
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _name(path: tuple[str, ...]) -> str:
    """The path as a message names it ("x.0.y"), cut short."""
    return cut_text(".".join(path) or "input")


def _bad_name(path: tuple[str, ...], limits: InputsSettings) -> FieldError:
    where = _name(path[:-1])
    if len(path[-1]) > limits.max_string_chars:
        message = f"{where} has a field name longer than {limits.max_string_chars} characters"
        return FieldError(["input", *path[:-1]], message, "INVALID_LENGTH")
    return _not_unicode(path)


def _not_unicode(path: tuple[str, ...]) -> FieldError:
    # Named by its parent: the text itself may be the key at fault.
    where = _name(path[:-1])
    message = f"{where} holds text that is not valid Unicode (a lone surrogate)"
    return FieldError(["input", *path], message, "INVALID_VALUE")


def _too_large(limits: InputsSettings) -> FieldError:
    return FieldError(["input"], f"input must be at most {limits.max_bytes} bytes as JSON", "INPUT_TOO_LARGE")
