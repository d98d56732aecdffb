"""The pure rules under the pipeline: ordering of updates, progress, outputs, event size, URL checks."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.db.models import Generation, Media
from server.domain import GenerationStatus
from server.origins import origin_allowed
from server.provider.progress import parse_progress
from server.provider.replicate import ReplicateClient, ReplicateProvider
from server.provider.replicate.prediction import Prediction, output_urls
from server.provider.types import PredictionUpdate
from server.services.event_log.snapshots import MAX_EVENT_BYTES, event_payload
from server.services.generations.service import UpdateOutcome, decide, incoming_status, media_kind_for
from server.storage.local import LocalStorage
from server.storage.port import StorageError, check_key, store_bytes
from server.workers.downloader import DownloadError, decode_data_uri


def _generation(status: str, logs: str | None = None) -> Generation:
    return Generation(
        provider="replicate",
        id=uuid.uuid4(),
        kind="IMAGE",
        model_ref="a/b",
        input={},
        status=status,
        logs=logs,
        event_seq=0,
    )


def _prediction(status: str, logs: str | None = None) -> PredictionUpdate:
    return Prediction.from_json({"id": "p", "status": status, "logs": logs}).to_update()


@pytest.mark.parametrize(
    ("stored", "stored_logs", "incoming", "incoming_logs", "outcome"),
    [
        ("STARTING", None, "starting", None, UpdateOutcome.DUPLICATE),
        ("STARTING", None, "processing", "", UpdateOutcome.APPLIED),
        ("STARTING", None, "succeeded", None, UpdateOutcome.APPLIED),
        ("PROCESSING", "ab", "processing", "abc", UpdateOutcome.APPLIED),
        ("PROCESSING", "abc", "processing", "abc", UpdateOutcome.DUPLICATE),
        ("PROCESSING", "abc", "processing", "ab", UpdateOutcome.STALE),
        ("PROCESSING", "abc", "starting", None, UpdateOutcome.STALE),
        ("SUCCEEDED", "abc", "succeeded", "abc", UpdateOutcome.DUPLICATE),
        ("SUCCEEDED", "abc", "processing", "abcdef", UpdateOutcome.STALE),
        ("SUCCEEDED", None, "failed", None, UpdateOutcome.STALE),
        ("CANCELED", None, "aborted", None, UpdateOutcome.DUPLICATE),
        ("TIMED_OUT", None, "succeeded", None, UpdateOutcome.STALE),
        # A status Darkroom does not know: still running, so only more logs are news.
        ("STARTING", None, "queued_somewhere", None, UpdateOutcome.DUPLICATE),
        ("PROCESSING", "ab", "queued_somewhere", "abc", UpdateOutcome.APPLIED),
        ("PROCESSING", "abc", "queued_somewhere", "abc", UpdateOutcome.DUPLICATE),
        ("SUCCEEDED", None, "queued_somewhere", None, UpdateOutcome.STALE),
    ],
)
def test_updates_only_move_forward(
    stored: str, stored_logs: str | None, incoming: str, incoming_logs: str | None, outcome: UpdateOutcome
) -> None:
    assert decide(_generation(stored, stored_logs), _prediction(incoming, incoming_logs)) is outcome


@pytest.mark.parametrize(
    ("stored", "incoming", "outcome"),
    [
        (None, 4, UpdateOutcome.APPLIED),  # the first word of a place in the queue
        (4, 2, UpdateOutcome.APPLIED),  # nearer the front
        (2, 2, UpdateOutcome.DUPLICATE),
        (2, 4, UpdateOutcome.STALE),  # an older answer, late: a queue only moves forward
        (2, None, UpdateOutcome.DUPLICATE),
    ],
)
def test_a_place_nearer_the_front_of_the_queue_is_news(
    stored: int | None, incoming: int | None, outcome: UpdateOutcome
) -> None:
    generation = _generation("STARTING")
    generation.queue_position = stored
    update = dataclasses.replace(_prediction("starting"), queue_position=incoming)
    assert decide(generation, update) is outcome


@pytest.mark.parametrize(
    ("status", "after_seconds", "stored", "incoming", "outcome"),
    [
        ("aborted", 60.0, "STARTING", "TIMED_OUT", UpdateOutcome.APPLIED),  # never started, deadline reached
        ("canceled", 60.2, "PROCESSING", "TIMED_OUT", UpdateOutcome.APPLIED),  # stopped while running
        ("aborted", 59.8, "STARTING", "TIMED_OUT", UpdateOutcome.APPLIED),  # within the timer's slack
        ("aborted", 3.0, "STARTING", "CANCELED", UpdateOutcome.APPLIED),  # not the deadline's doing
        ("canceled", 3.0, "PROCESSING", "CANCELED", UpdateOutcome.APPLIED),
        ("canceled", 61.0, "TIMED_OUT", "TIMED_OUT", UpdateOutcome.DUPLICATE),  # Darkroom timed it out first
        ("failed", 61.0, "PROCESSING", "FAILED", UpdateOutcome.APPLIED),
    ],
)
def test_a_cancellation_at_the_deadline_is_a_timeout(
    status: str, after_seconds: float, stored: str, incoming: str, outcome: UpdateOutcome
) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    update = Prediction.from_json(
        {
            "id": "p",
            "status": status,
            "created_at": created.isoformat(),
            "completed_at": (created + timedelta(seconds=after_seconds)).isoformat(),
        }
    ).to_update()
    generation = _generation(stored)
    # Replicate's clock measures the run when it gives both times; ours says nothing here.
    at_deadline = ReplicateProvider(ReplicateClient("http://127.0.0.1:9", "r8_unused")).stopped_by_deadline(
        update, 60.0, elapsed_seconds=0.0
    )
    assert incoming_status(generation, update, at_deadline) is GenerationStatus(incoming)
    assert decide(generation, update, at_deadline) is outcome
    assert incoming_status(generation, update) is not GenerationStatus.TIMED_OUT or stored == "TIMED_OUT"


def test_predict_time_is_read_from_the_metrics() -> None:
    def read(metrics: Mapping[str, object]) -> float | None:
        return Prediction.from_json({"id": "p", "status": "succeeded", "metrics": metrics}).to_update().predict_time

    assert read({"predict_time": 2.5}) == 2.5
    for metrics in ({}, {"predict_time": None}, {"predict_time": "2"}, {"predict_time": -1}, {"predict_time": True}):
        assert read(metrics) is None


def test_a_prediction_with_a_status_darkroom_does_not_know_still_reads() -> None:
    prediction = Prediction.from_json({"id": "p", "status": "brand-new-status"})
    assert prediction.status == "brand-new-status" and not prediction.is_terminal
    for status in (None, 5, "", ["processing"], "x" * 65):
        with pytest.raises(ValueError):
            Prediction.from_json({"id": "p", "status": status})


@pytest.mark.parametrize(
    ("logs", "progress"),
    [
        (None, None),
        ("Using seed: 1\nloading", None),
        (" 45%|████▌     | 9/20 [00:01<00:01,  7.1it/s]", 0.45),
        ("  0%|          | 0/20 [00:00<?, ?it/s]\n 50%|█████     | 10/20 [00:01<00:01,  7.1it/s]\n", 0.5),
        ("100%|██████████| 20/20 [00:02<00:00,  7.1it/s]\nsaving", 1.0),
        ("\r 10%|█ | 1/10 [00:00]\r 30%|███ | 3/10 [00:00]", 0.3),
        # A provider's logs are hostile: a step count of 5,000 digits is no progress line, not a ValueError.
        (f" 7%|█ | {'9' * 5000}/{'9' * 5000} [00:00]", 0.07),
        (f"| {'9' * 5000}/20 [00:00]", None),
    ],
)
def test_progress_comes_from_the_last_progress_line(logs: str | None, progress: float | None) -> None:
    assert parse_progress(logs) == progress


def test_every_output_shape_yields_its_urls_in_order() -> None:
    assert output_urls("https://replicate.delivery/a.mp4") == ["https://replicate.delivery/a.mp4"]
    assert output_urls(["https://x/1.png", "https://x/2.png"]) == ["https://x/1.png", "https://x/2.png"]
    assert output_urls({"video": "https://x/v.mp4", "poster": "https://x/p.jpg", "fps": 8}) == [
        "https://x/v.mp4",
        "https://x/p.jpg",
    ]
    assert output_urls("data:image/png;base64,AAAA") == ["data:image/png;base64,AAAA"]
    assert output_urls(None) == [] and output_urls("just text") == [] and output_urls(42) == []


def test_media_kind_follows_the_file_not_only_the_model() -> None:
    assert media_kind_for("https://x/out.mp4", "IMAGE") == "VIDEO"
    assert media_kind_for("https://x/out.webp", "VIDEO") == "IMAGE"
    assert media_kind_for("data:video/mp4;base64,AAAA", "IMAGE") == "VIDEO"
    assert media_kind_for("https://x/output", "VIDEO") == "VIDEO"


def test_events_stay_under_the_notify_limit_however_many_outputs() -> None:
    generation = _generation("SUCCEEDED")
    generation.error = "e" * 10_000
    media = [
        Media(
            id=uuid.uuid4(),
            generation_id=generation.id,
            position=n,
            kind="IMAGE",
            status="PENDING",
            download_attempts=0,
            download_error="x" * 5000,
        )
        for n in range(40)
    ]
    payload = event_payload(event_id=1, seq=1, type_="T", generation=generation, media=media, at=generation_time())
    assert len(json.dumps(payload)) <= MAX_EVENT_BYTES < 8000
    assert payload["mediaTruncated"] is True
    small = event_payload(event_id=1, seq=1, type_="T", generation=generation, media=media[:4], at=generation_time())
    assert small["mediaTruncated"] is False and len(small["media"]) == 4


def generation_time():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://replicate.delivery/pbxt/a.png", True),
        ("https://pbxt.replicate.delivery/a.png", True),
        ("https://replicate.delivery.evil.com/a.png", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("file:///etc/passwd", False),
        ("ftp://replicate.delivery/a.png", False),
        ("https://evilreplicate.delivery/a.png", False),
    ],
)
def test_only_allowed_file_hosts_are_downloaded(url: str, allowed: bool) -> None:
    assert origin_allowed(url, ["replicate.delivery", "*.replicate.delivery"]) is allowed


def test_data_uris_decode_and_malformed_ones_fail_for_good() -> None:
    assert decode_data_uri("data:image/png;base64,aGVsbG8=") == (b"hello", "image/png")
    assert decode_data_uri("data:text/plain,hi%20there") == (b"hi there", "text/plain")
    for bad in ("data:image/png;base64,@@@", "data:nocomma"):
        with pytest.raises(DownloadError) as caught:
            decode_data_uri(bad)
        assert caught.value.retryable is False


async def test_storage_keys_cannot_leave_the_media_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    for key in ("../secret", "/etc/passwd", "a/../../b", ".tmp/x.part", "", "a//b", "./a"):
        with pytest.raises(StorageError):
            storage.path(key)
        with pytest.raises(StorageError):
            check_key(key)
    await store_bytes(storage, "ab/abc.png", b"x", "image/png")
    assert [entry.key async for entry in storage.list_files()] == ["ab/abc.png"]
    assert await storage.used_bytes() == 1
