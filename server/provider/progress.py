"""Progress from the lines models print while they sample: tqdm bars and the common step-count variants.

Models print them whichever provider runs them; an adapter reads its provider's logs with this when the
provider gives no progress of its own (`PredictionUpdate.progress`). Besides the fraction done, a line often
tells the step, the step count, the time left and the rate, which a client can show as "step 12 of 50, ~8 s".

Logs come from a provider and are hostile: only their tail is read, every pattern is bounded (no nested
repetition, digit runs of at most 9, so `int()` never sees a huge number), and a line must look like progress:
a date, a count of images or a fraction in a URL is no step count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Enough for the last redraws of a bar, and for a bar line of a few KiB; a model logs its progress last, so
# older text could only be outdated.
_TAIL_CHARS = 16384

# A number can't be the end of a longer one (`99999999999/3` is no count of 9 digits) nor part of a path/date.
_INT = r"(?<![\w./:-])(\d{1,9})"
_CLOCK = r"\d{1,4}(?::\d{2}){1,2}"  # tqdm's `mm:ss` or `h:mm:ss`
_RATE = r"(?<![\w.])(\?|\d{1,9}(?:\.\d{1,9})?)\s?(?:([A-Za-z]{1,16})/s|s/([A-Za-z]{1,16}))(?![\w/])"

# tqdm: `9/20 [00:01<00:01,  7.1it/s]`, with or without a bar and a description before it; the bracket must
# open with a clock, so `[12/50]` or a date isn't taken for one.
_TQDM = re.compile(_INT + r"/(\d{1,9})\s{0,4}\[(" + _CLOCK + r")(?:<(\?|" + _CLOCK + r"))?(?:,\s{0,8}" + _RATE + r")?")
# The `rich` bar SD.Next draws: `28.50s/it ███▋  96% 48/50 22:40 00:57`, the clocks being elapsed and left.
_RICH = re.compile(
    r"(?<![\w.])(\d{1,3})%\s{1,4}(\d{1,9})/(\d{1,9})(?![\w/.])(?:\s{1,4}(" + _CLOCK + r")\s{1,4}(" + _CLOCK + r"))?"
)
_ANY_RATE = re.compile(_RATE)
# `Step 12/50`, `step 12 of 50`, `Sampling step 12/50`, `Denoising step 12 / 50`.
_STEP_WORD = re.compile(
    r"(?<![\w/.=?&-])steps?:?\s{1,3}" + _INT + r"\s{0,3}(?:/|of)\s{0,3}(\d{1,9})(?![\w/.])", re.IGNORECASE
)
# `12/50 steps`.
_STEPS_AFTER = re.compile(_INT + r"\s{0,3}/\s{0,3}(\d{1,9})\s{1,3}steps?\b", re.IGNORECASE)
# `[12/50]`, not inside a path or a longer bracket.
_BRACKETED = re.compile(r"(?<![\w/])\[(\d{1,9})/(\d{1,9})\](?![\w/])")
# tqdm with a bar but no counts: ` 45%|████▌     |`.
_PERCENT_BAR = re.compile(r"(?<![\w.])(\d{1,3})%\s{0,4}\|")
# `Progress: 45%`, `progress 45.5 %`.
_PERCENT_WORD = re.compile(r"(?<![\w/.])progress\s{0,3}[:=]?\s{0,3}(\d{1,3}(?:\.\d{1,3})?)\s?%", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ProgressReading:
    """What one progress line says; fields the line doesn't show are None."""

    fraction: float  # 0-1, clamped
    step: int | None = None  # steps done, when the line says n/total
    total_steps: int | None = None
    remaining_seconds: float | None = None  # the line's own estimate of the time left
    seconds_per_step: float | None = None  # from the rate: `4.5it/s` -> 1/4.5, `2.78s/it` -> 2.78


def read_progress(logs: str | None) -> ProgressReading | None:
    """The last progress line of `logs`, read; None when there is none."""
    if not logs:
        return None
    tail = logs[-_TAIL_CHARS:]
    lines = tail.replace("\r", "\n").split("\n")
    if len(tail) < len(logs):
        lines = lines[1:]  # the cut made the first line a fragment: `112/50 steps` would read as `12/50`
    for line in reversed(lines):
        reading = _read_line(line)
        if reading is not None:
            return reading
    return None


def parse_progress(logs: str | None) -> float | None:
    """The fraction done according to the last progress line of `logs`, or None when there is none."""
    reading = read_progress(logs)
    return reading.fraction if reading else None


def _read_line(line: str) -> ProgressReading | None:
    if tqdm := _TQDM.search(line):
        done, total, _elapsed, left, *rate_parts = tqdm.groups()
        reading = _steps(done, total, _clock(left), _seconds_per_step(*rate_parts))
        if reading is not None:
            return reading
    if rich := _RICH.search(line):
        _percent, done, total, _elapsed, left = rich.groups()
        rate = _ANY_RATE.search(line)
        reading = _steps(done, total, _clock(left), _seconds_per_step(*rate.groups()) if rate else None)
        if reading is not None:
            return reading
    for pattern in (_STEP_WORD, _STEPS_AFTER):
        if counted := pattern.search(line):
            reading = _steps(counted.group(1), counted.group(2), None, None)
            if reading is not None:
                return reading
    # `[0/2] [1/13] Generating frames` nests counters: which one is the progress is anyone's guess, so neither.
    bracketed = _BRACKETED.findall(line)
    if len(bracketed) == 1 and (reading := _steps(bracketed[0][0], bracketed[0][1], None, None)) is not None:
        return reading
    if percent := _PERCENT_BAR.search(line) or _PERCENT_WORD.search(line):
        value = float(percent.group(1))
        if math.isfinite(value):
            return ProgressReading(fraction=min(1.0, value / 100))
    return None


def _steps(done: str, total: str, left: float | None, per_step: float | None) -> ProgressReading | None:
    """A reading of `done`/`total` steps; None for a total of 0, which says nothing of progress."""
    steps, count = int(done), int(total)
    if count <= 0:
        return None
    steps = min(steps, count)
    return ProgressReading(
        fraction=steps / count, step=steps, total_steps=count, remaining_seconds=left, seconds_per_step=per_step
    )


def _clock(text: str | None) -> float | None:
    """Seconds of a tqdm clock (`mm:ss`, `h:mm:ss`); None for `?` or none."""
    if not text or text == "?":
        return None
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(seconds)


def _seconds_per_step(number: str | None, _steps_a_second: str | None, seconds_a_step: str | None) -> float | None:
    """Seconds a step takes, from `4.5it/s` (1/4.5) or `2.78s/it`; None for `?`, 0 or none.

    The last two are the unit of the rate's two forms (`it` of `it/s`, of `s/it`): which one is set tells them apart.
    """
    if not number or number == "?":
        return None
    value = float(number)
    if not math.isfinite(value) or value <= 0:
        return None
    seconds = value if seconds_a_step else 1 / value
    return seconds if math.isfinite(seconds) else None
