"""A value a client sent, quoted in a message or a log line: as JSON, cut short, at a bounded cost.

A refusal that quotes what it refused helps the caller, but the value may be a 900 KB prompt, a list of
100,000 items, an integer Python will not write out, or a nest deeper than the recursion limit: only as
much as the quote shows is ever looked at.
"""

from __future__ import annotations

import json
import math
from typing import Any

ELLIPSIS = "..."
# Containers deeper than this are shown as [...] or {...}.
MAX_QUOTED_DEPTH = 3


def quote_value(value: Any, limit: int = 80) -> str:
    """`value` as JSON text of at most `limit` characters (cut with "..." when longer)."""
    return cut_text(_render(value, limit + 1, 0), limit)


def cut_text(text: str, limit: int = 80) -> str:
    """`text` itself when it has at most `limit` characters, else its start and "..." in as many."""
    return text if len(text) <= limit else text[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS


def _render(value: Any, budget: int, depth: int) -> str:
    """JSON for `value`, stopping once about `budget` characters are written."""
    if isinstance(value, str):
        return json.dumps(value[:budget], ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        # Written out only when short: Python refuses to write more than 4,300 digits, slowly.
        return str(value) if value.bit_length() <= 4 * budget else f"<a number of {_digits(value)} digits>"
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else ("NaN" if math.isnan(value) else str(value))
    if isinstance(value, list | tuple | dict):
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        if depth >= MAX_QUOTED_DEPTH:
            return f"{opening}{ELLIPSIS}{closing}" if value else opening + closing
        parts: list[str] = []
        used = 1
        items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        for key, item in items:
            if used >= budget:
                parts.append(ELLIPSIS)
                break
            part = _render(item, budget - used, depth + 1)
            if isinstance(value, dict):
                part = f"{_render(str(key), budget - used, depth + 1)}: {part}"
            parts.append(part)
            used += len(part) + 2
        return opening + ", ".join(parts) + closing
    return _render(str(value), budget, depth)


def _digits(value: int) -> int:
    """About how many decimal digits a whole number has (from its bit length, not by writing it)."""
    return max(1, math.ceil(abs(value).bit_length() * math.log10(2)))
