"""How long a model's runs take: the history an estimate before the start rests on.

Run time follows the part of the input that sizes the work: how many outputs, how many pixels, how many
frames or seconds of video. An input is put in a bucket by those (each rounded to a power of two, so
that 1024x1024 and 1000x1000 share one), and a model's past runs of the same bucket give the median time
from sent to started (the provider's queue and boot) and from started to completed (the run). Only
succeeded runs count: a failed run stops early, a canceled one whenever the caller chose.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Generation
from server.domain import GenerationStatus

# Fewer runs than this are an anecdote, not a history: no estimate is made from them.
MIN_RUNS = 3
# How long a model's history is reused before it is read again (a run that finishes here clears it).
CACHE_SECONDS = 30.0

# The input fields that size the work, by what they count; the first one an input has is taken.
_SIZE_FIELDS: dict[str, tuple[str, ...]] = {
    "n": ("num_outputs", "num_images", "batch_size", "number_of_images", "n"),
    "f": ("num_frames", "frames", "video_length", "length"),
    "s": ("duration", "seconds", "video_duration", "duration_seconds"),
    "t": ("num_inference_steps", "steps", "sample_steps", "num_steps"),
}
# Counts past this are not a size any model runs; a bucket is no place to store a hostile number.
_LARGEST = 2**40


def _count(value: Any) -> float | None:
    """A positive size, from a number only (a number written as text is not converted: see hostile input)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 < value <= _LARGEST:  # compared before any conversion: a huge int overflows a float; NaN fails it
        return None
    return float(value)


def _power_of_two(value: float) -> int:
    return round(math.log2(value))


def duration_bucket(input_schema: dict[str, Any] | None, input: dict[str, Any]) -> str:
    """The input's bucket: e.g. "n0.p20" for one 1024x1024 output (exponents of two), "" when nothing in
    it sizes the work. A size the input leaves out is the schema's default, so that leaving out the
    default and giving it share a bucket."""
    properties = (input_schema or {}).get("properties")
    if isinstance(properties, dict):
        defaults = {
            name: spec["default"] for name, spec in properties.items() if isinstance(spec, dict) and "default" in spec
        }
        input = {**defaults, **input}
    parts = []
    for tag, names in _SIZE_FIELDS.items():
        for name in names:
            count = _count(input.get(name))
            if count is not None:
                parts.append(f"{tag}{_power_of_two(count)}")
                break
    width, height = _count(input.get("width")), _count(input.get("height"))
    if width is not None and height is not None:
        parts.append(f"p{_power_of_two(width * height)}")
    elif isinstance(input.get("aspect_ratio"), str):
        parts.append(f"a{input['aspect_ratio'][:9]}")
    return ".".join(sorted(parts))[:64]


@dataclass(frozen=True, slots=True)
class Durations:
    """Median seconds from sent to started and from started to completed, over `runs` past runs."""

    start_seconds: float
    run_seconds: float
    runs: int

    @property
    def total_seconds(self) -> float:
        return self.start_seconds + self.run_seconds


def durations_of(runs: list[tuple[datetime, datetime, datetime]]) -> Durations | None:
    """The medians of (sent, started, completed) times; None with fewer than MIN_RUNS."""
    if len(runs) < MIN_RUNS:
        return None
    starts = [max(0.0, (started - sent).total_seconds()) for sent, started, _ in runs]
    spans = [max(0.0, (completed - started).total_seconds()) for _, started, completed in runs]
    return Durations(statistics.median(starts), statistics.median(spans), len(runs))


class DurationHistory:
    """Each model's durations per bucket, read from its last `runs` succeeded generations and kept a while."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], runs: int) -> None:
        self._sessions = sessions
        self._runs = runs
        self._cache: dict[tuple[str, str, str], tuple[float, Durations | None]] = {}

    async def of(
        self, provider: str, model_ref: str, bucket: str | None, session: AsyncSession | None = None
    ) -> Durations | None:
        """The durations of `model_ref`'s runs in `bucket`; read in `session` when the caller is in a
        transaction already (SQLite has one writer: a second connection would wait for it)."""
        key = (provider, model_ref, bucket or "")
        known, cached = self.cached(provider, model_ref, bucket)
        if known:
            return cached
        if session is not None:
            found = await self.read(session, *key)
        else:
            async with self._sessions() as own:
                found = await self.read(own, *key)
        if len(self._cache) > 10_000:  # models x buckets stay few; this only bounds a flood of odd inputs
            self._cache.clear()
        self._cache[key] = (time.monotonic(), found)
        return found

    def cached(self, provider: str, model_ref: str, bucket: str | None) -> tuple[bool, Durations | None]:
        """(True, the durations) when they were read lately, else (False, None): for a caller that holds a
        connection already, and must not wait for another."""
        cached = self._cache.get((provider, model_ref, bucket or ""))
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return True, cached[1]
        return False, None

    async def read(self, session: AsyncSession, provider: str, model_ref: str, bucket: str) -> Durations | None:
        sent = Generation.dispatched_at
        rows = await session.execute(
            select(sent, Generation.created_at, Generation.started_at, Generation.completed_at)
            .where(
                Generation.model_ref == model_ref,
                Generation.duration_bucket == bucket,
                Generation.provider == provider,
                Generation.status == GenerationStatus.SUCCEEDED,
            )
            .order_by(Generation.completed_at.desc())
            .limit(self._runs)
        )
        return durations_of(
            [
                (dispatched or created, started, completed)
                for dispatched, created, started, completed in rows
                if started is not None and completed is not None
            ]
        )

    def forget(self, model_ref: str) -> None:
        """A run of `model_ref` finished here: its history is read afresh next time."""
        for key in [key for key in self._cache if key[1] == model_ref]:
            del self._cache[key]
