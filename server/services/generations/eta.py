"""When a generation is expected to finish, and what that rests on.

While it runs, its own progress lines tell best: the time left they print (tqdm's), or their rate times
the steps left. That figure is smoothed, so that one slow or fast step does not make it jump. Before it
runs, only Darkroom's history of the model can tell (server.services.generations.durations); in
Darkroom's queue, its place in line times that history. With neither there is no estimate: null, never
a made-up number. The expectation is stored as a time (`expected_finish_at`), so the seconds left that a
client is shown go down between changes too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.db.models import AnyGeneration
from server.domain import EtaBasis, GenerationStatus
from server.provider.progress import ProgressReading
from server.services.generations.durations import Durations

# The weight of a new reading against the expectation it revises (tqdm smooths its own rate with 0.3).
SMOOTHING = 0.3


def _seconds_left(reading: ProgressReading, running_for: float) -> float | None:
    """The time left by the progress lines: their own figure, or their rate (or ours) times the steps left."""
    if reading.remaining_seconds is not None:
        return reading.remaining_seconds
    if not reading.step or not reading.total_steps:
        return None
    steps_left = max(0, reading.total_steps - reading.step)
    per_step = reading.seconds_per_step if reading.seconds_per_step is not None else running_for / reading.step
    return steps_left * per_step


def expect(
    generation: AnyGeneration, history: Durations | None, reading: ProgressReading | None, now: datetime
) -> None:
    """Set `generation.expected_finish_at` and `eta_basis` for the state it is now in."""
    finish, basis = _expected(generation, history, reading, now)
    generation.expected_finish_at = finish
    generation.eta_basis = basis


def _expected(
    generation: AnyGeneration, history: Durations | None, reading: ProgressReading | None, now: datetime
) -> tuple[datetime | None, EtaBasis | None]:
    status = GenerationStatus(generation.status)
    if status.is_terminal:
        return None, None
    if status is GenerationStatus.PROCESSING and reading is not None:
        running_for = (now - (generation.started_at or now)).total_seconds()
        left = _seconds_left(reading, running_for)
        if left is not None:
            finish = now + timedelta(seconds=left)
            previous = generation.expected_finish_at
            if generation.eta_basis == EtaBasis.PROGRESS and previous is not None:
                finish = previous + (finish - previous) * SMOOTHING
            return max(finish, now), EtaBasis.PROGRESS
    if history is None:
        return None, None
    if status is GenerationStatus.QUEUED:
        place = max(1, generation.queue_position or 1)
        return now + timedelta(seconds=place * history.total_seconds), EtaBasis.QUEUE
    if status is GenerationStatus.STARTING:
        sent = generation.dispatched_at or generation.created_at
        started = max(sent + timedelta(seconds=history.start_seconds), now)
        return started + timedelta(seconds=history.run_seconds), EtaBasis.HISTORY
    started_at = generation.started_at or now
    if generation.eta_basis == EtaBasis.PROGRESS and generation.expected_finish_at is not None:
        return generation.expected_finish_at, EtaBasis.PROGRESS  # a line without a figure changes nothing
    return max(started_at + timedelta(seconds=history.run_seconds), now), EtaBasis.HISTORY


def seconds_left(expected_finish_at: datetime | None, now: datetime) -> float | None:
    """What a client is shown: the seconds until the expected finish, never below zero."""
    if expected_finish_at is None:
        return None
    return round(max(0.0, (expected_finish_at - now).total_seconds()), 1)
