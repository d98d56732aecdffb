"""The rules of live progress, without a server: phases, input buckets, duration medians, the time left and
its smoothing, and which updates are progress alone (what PROGRESS_MIN_INTERVAL_SECONDS may coalesce)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from server.db.models import Generation, utcnow
from server.domain import EtaBasis, GenerationPhase, GenerationStatus, MediaStatus, phase_of
from server.provider.progress import ProgressReading
from server.provider.types import PredictionUpdate
from server.services.generations import eta
from server.services.generations.durations import Durations, duration_bucket, durations_of
from server.services.generations.previews import generation_of_key, preview_key, take_new_output, yields_previews
from server.services.generations.service import progress_only

HISTORY = Durations(start_seconds=4.0, run_seconds=10.0, runs=5)


def generation(status: GenerationStatus, **values: object) -> Generation:
    now = utcnow()
    defaults: dict[str, object] = {
        "id": uuid.uuid4(),
        "status": status,
        "created_at": now,
        "updated_at": now,
        "dispatched_at": now,
        "previews_seen": 0,
        "yields_previews": True,
        "logs": None,
    }
    return Generation(**{**defaults, **values})


@pytest.mark.parametrize(
    ("status", "has_logs", "media", "current", "phase"),
    [
        (GenerationStatus.QUEUED, False, None, None, GenerationPhase.QUEUED),
        (GenerationStatus.STARTING, False, None, None, GenerationPhase.WAITING),
        (GenerationStatus.STARTING, True, None, "WAITING", GenerationPhase.BOOTING),
        (GenerationStatus.PROCESSING, True, None, "BOOTING", GenerationPhase.RUNNING),
        (GenerationStatus.SUCCEEDED, True, [MediaStatus.PENDING, MediaStatus.READY], "RUNNING", GenerationPhase.SAVING),
        (GenerationStatus.SUCCEEDED, True, [MediaStatus.READY, MediaStatus.FAILED], "SAVING", GenerationPhase.FINISHED),
        # A change that concerns no media leaves a saving generation saving.
        (GenerationStatus.SUCCEEDED, True, None, "SAVING", GenerationPhase.SAVING),
        (GenerationStatus.FAILED, True, None, "RUNNING", GenerationPhase.FINISHED),
    ],
)
def test_the_phase_follows_status_logs_and_media(
    status: GenerationStatus,
    has_logs: bool,
    media: list[MediaStatus] | None,
    current: str | None,
    phase: GenerationPhase,
) -> None:
    assert phase_of(status, has_logs=has_logs, media=media, current=current) is phase


SCHEMA = {"properties": {"num_outputs": {"type": "integer", "default": 1}, "width": {"default": 1024}}}


def test_inputs_of_the_same_size_share_a_bucket() -> None:
    one = duration_bucket(SCHEMA, {"prompt": "a", "width": 1024, "height": 1024})
    assert one == duration_bucket(SCHEMA, {"prompt": "b", "num_outputs": 1, "width": 1000, "height": 1000})
    assert one != duration_bucket(SCHEMA, {"num_outputs": 4, "width": 1024, "height": 1024})
    assert one != duration_bucket(SCHEMA, {"width": 2048, "height": 2048})
    assert duration_bucket(None, {"num_frames": 81}) != duration_bucket(None, {"num_frames": 161})
    assert duration_bucket(None, {"prompt": "nothing sizes it"}) == ""


@pytest.mark.parametrize("hostile", ["1e300000", float("nan"), float("inf"), -3, 10**400, True, [1], {"a": 1}])
def test_a_hostile_size_is_no_size(hostile: object) -> None:
    assert duration_bucket(None, {"num_outputs": hostile, "width": hostile, "height": 64}) == ""


def test_durations_are_medians_and_need_three_runs() -> None:
    base = utcnow()
    runs = [
        (base, base + timedelta(seconds=start), base + timedelta(seconds=start + run))
        for start, run in ((1, 10), (3, 12), (2, 50))
    ]
    assert durations_of(runs[:2]) is None
    assert durations_of(runs) == Durations(start_seconds=2.0, run_seconds=12.0, runs=3)


def test_no_basis_no_estimate() -> None:
    for status in GenerationStatus:
        row = generation(status, queue_position=2)
        eta.expect(row, None, None, utcnow())
        assert row.expected_finish_at is None and row.eta_basis is None


def test_before_it_runs_the_estimate_rests_on_history_and_the_place_in_line() -> None:
    now = utcnow()
    queued = generation(GenerationStatus.QUEUED, queue_position=3)
    eta.expect(queued, HISTORY, None, now)
    assert queued.eta_basis == EtaBasis.QUEUE
    assert eta.seconds_left(queued.expected_finish_at, now) == pytest.approx(3 * 14.0)

    starting = generation(GenerationStatus.STARTING)
    eta.expect(starting, HISTORY, None, now)
    assert starting.eta_basis == EtaBasis.HISTORY
    assert eta.seconds_left(starting.expected_finish_at, now) == pytest.approx(14.0)

    running = generation(GenerationStatus.PROCESSING, started_at=now - timedelta(seconds=4))
    eta.expect(running, HISTORY, None, now)
    assert eta.seconds_left(running.expected_finish_at, now) == pytest.approx(6.0)
    # Past its median, it is due: never a negative figure.
    late = generation(GenerationStatus.PROCESSING, started_at=now - timedelta(seconds=40))
    eta.expect(late, HISTORY, None, now)
    assert eta.seconds_left(late.expected_finish_at, now) == 0.0


def test_while_it_runs_its_progress_lines_tell_smoothed() -> None:
    now = utcnow()
    running = generation(GenerationStatus.PROCESSING, started_at=now - timedelta(seconds=2))
    eta.expect(running, HISTORY, ProgressReading(0.2, 4, 20, remaining_seconds=8.0), now)
    assert running.eta_basis == EtaBasis.PROGRESS
    assert eta.seconds_left(running.expected_finish_at, now) == pytest.approx(8.0)
    # One slow step says 30 s are left: the figure moves toward it, it does not jump.
    later = now + timedelta(seconds=1)
    eta.expect(running, HISTORY, ProgressReading(0.25, 5, 20, remaining_seconds=30.0), later)
    left = eta.seconds_left(running.expected_finish_at, later)
    assert left is not None and 7.0 < left < 15.0
    # Without a figure of its own, the rate gives one: 10 steps left at 0.5 s each.
    other = generation(GenerationStatus.PROCESSING, started_at=now)
    eta.expect(other, None, ProgressReading(0.5, 10, 20, seconds_per_step=0.5), now)
    assert eta.seconds_left(other.expected_finish_at, now) == pytest.approx(5.0)
    # Step 0 of 20 says nothing yet.
    fresh = generation(GenerationStatus.PROCESSING, started_at=now)
    eta.expect(fresh, None, ProgressReading(0.0, 0, 20), now)
    assert fresh.expected_finish_at is None


def update(status: GenerationStatus, logs: str, outputs: tuple[str, ...] = ()) -> PredictionUpdate:
    return PredictionUpdate("p", status, status.lower(), logs=logs, output_urls=outputs)


def test_only_more_log_lines_are_progress_alone() -> None:
    running = generation(GenerationStatus.PROCESSING, logs="a\n")
    assert progress_only(running, update(GenerationStatus.PROCESSING, "a\nb\n"))
    assert not progress_only(running, update(GenerationStatus.SUCCEEDED, "a\nb\n", ("https://x/1.png",)))
    assert not progress_only(running, update(GenerationStatus.PROCESSING, "a\nb\n", ("https://x/1.png",)))
    # The first log line of a starting job is a change of phase (booting), never held back.
    waiting = generation(GenerationStatus.STARTING, logs=None)
    assert not progress_only(waiting, update(GenerationStatus.STARTING, "Booting\n"))


def test_a_new_intermediate_output_is_taken_once_newest_first() -> None:
    running = generation(GenerationStatus.PROCESSING)
    shown = update(GenerationStatus.PROCESSING, "", ("https://x/1.png", "https://x/2.png"))
    assert take_new_output(running, shown, keep=3) == "https://x/2.png"
    assert take_new_output(running, shown, keep=3) is None
    assert take_new_output(generation(GenerationStatus.PROCESSING), shown, keep=0) is None
    # A model that yields nothing while it runs shows its final files just before it ends: no preview.
    assert take_new_output(generation(GenerationStatus.PROCESSING, yields_previews=False), shown, keep=3) is None
    assert yields_previews({"type": "array", "x-cog-array-type": "iterator"})
    assert not yields_previews({"type": "array"}) and not yields_previews(None)
    final = update(GenerationStatus.SUCCEEDED, "", ("https://x/final.png",))
    assert take_new_output(generation(GenerationStatus.PROCESSING), final, keep=3) is None


def test_preview_keys_name_their_generation_and_nothing_else() -> None:
    generation_id = uuid.uuid4()
    key = preview_key(generation_id, "image/png")
    assert key.endswith(".png") and generation_of_key(key) == generation_id
    assert generation_of_key("ab/" + generation_id.hex + ".png") is None
    assert generation_of_key("previews/not-a-uuid/x.png") is None
