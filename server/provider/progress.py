"""Progress (0-1) from the tqdm lines diffusion models print, e.g. ` 45%|████▌     | 9/20 [00:01<...]`.

Models print them whichever provider runs them; an adapter reads its provider's logs with this when the
provider gives no progress of its own (`PredictionUpdate.progress`)."""

from __future__ import annotations

import re

_PERCENT = re.compile(r"(\d{1,3})%\|")
_STEPS = re.compile(r"\|\s*(\d{1,9})/(\d{1,9})\s*\[")


def parse_progress(logs: str | None) -> float | None:
    """The fraction done according to the last progress line of `logs`, or None when there is none."""
    if not logs:
        return None
    for line in reversed(logs.replace("\r", "\n").splitlines()):
        steps = _STEPS.search(line)
        if steps and int(steps.group(2)) > 0:
            return min(1.0, int(steps.group(1)) / int(steps.group(2)))
        percent = _PERCENT.search(line)
        if percent:
            return min(1.0, int(percent.group(1)) / 100)
    return None
