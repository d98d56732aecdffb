"""Reading a number a client gave, as a JSON number or as text, at a cost that stays small.

`int(Decimal("1e300000"))` takes seconds and Python refuses to read an integer of more than 4,300
digits, so nothing here converts a number before its size is known: text must look like a decimal
number (`-12`, `0.5`, `2.5e3`), its significant digits are counted, and its exponent is bounded before
it becomes an int or a float. NaN and Infinity are refused in every spelling.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any

# A decimal number as people type it: an optional sign, digits with an optional point, an exponent.
NUMBER_TEXT = re.compile(r"[+-]?(?P<whole>\d*)(?:\.(?P<fraction>\d*))?(?:[eE](?P<exponent>[+-]?\d+))?", re.ASCII)
# Past this an exponent names no number a model takes (a float ends near 1e308); refused before reading.
MAX_EXPONENT_DIGITS = 4


class NumberProblem(StrEnum):
    NOT_A_NUMBER = "not a number"
    NOT_FINITE = "not finite"
    NOT_WHOLE = "not a whole number"
    TOO_LARGE = "too large"


class NumberRefused(ValueError):
    """The value is no number Darkroom reads: `problem` says why."""

    def __init__(self, problem: NumberProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def has_at_most_digits(value: int, max_digits: int) -> bool:
    """Whether a whole number has at most `max_digits` digits, found without writing it out."""
    return abs(value) < 10**max_digits


def _decimal(text: str, max_digits: int) -> Decimal:
    """`text` read exactly, once its digits and exponent are known to be few."""
    match = NUMBER_TEXT.fullmatch(text.strip())
    if match is None or not (match["whole"] or match["fraction"]):
        raise NumberRefused(NumberProblem.NOT_A_NUMBER)
    significant = f"{match['whole']}{match['fraction'] or ''}".strip("0")
    exponent = (match["exponent"] or "").lstrip("+-").lstrip("0")
    if len(significant) > max_digits or len(exponent) > MAX_EXPONENT_DIGITS:
        raise NumberRefused(NumberProblem.TOO_LARGE)
    return Decimal(text.strip())


def read_integer(value: Any, max_digits: int) -> int:
    """A whole number from an int, a float with no fraction, or text; NumberRefused otherwise."""
    if isinstance(value, bool):
        raise NumberRefused(NumberProblem.NOT_A_NUMBER)
    if isinstance(value, int):
        if not has_at_most_digits(value, max_digits):
            raise NumberRefused(NumberProblem.TOO_LARGE)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NumberRefused(NumberProblem.NOT_FINITE)
        if not value.is_integer():
            raise NumberRefused(NumberProblem.NOT_WHOLE)
        return read_integer(int(value), max_digits)
    if not isinstance(value, str):
        raise NumberRefused(NumberProblem.NOT_A_NUMBER)
    number = _decimal(value, max_digits)
    if number != number.to_integral_value():
        raise NumberRefused(NumberProblem.NOT_WHOLE)
    # adjusted() is the power of ten of the first digit: 1e49 has 50 digits.
    if number and number.adjusted() >= max_digits:
        raise NumberRefused(NumberProblem.TOO_LARGE)
    return int(number)


def read_number(value: Any, max_digits: int) -> int | float:
    """A number from an int (kept whole), a finite float, or text (a float); NumberRefused otherwise."""
    if isinstance(value, bool):
        raise NumberRefused(NumberProblem.NOT_A_NUMBER)
    if isinstance(value, int):
        return read_integer(value, max_digits)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NumberRefused(NumberProblem.NOT_FINITE)
        return value
    if not isinstance(value, str):
        raise NumberRefused(NumberProblem.NOT_A_NUMBER)
    number = float(_decimal(value, max_digits))
    if not math.isfinite(number):
        raise NumberRefused(NumberProblem.TOO_LARGE)
    return number
