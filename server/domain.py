"""The vocabulary every layer shares: kinds, statuses and the rules between them."""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"


# File endings that name a video (an output URL, a model's example); anything else is taken for an image.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".m4v", ".mkv", ".gif")


class GenerationStatus(StrEnum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_GENERATION_STATUSES

    @property
    def rank(self) -> int:
        """Position on the forward path; an update may only move a generation to a higher rank."""
        return _RANKS.get(self, 3)

    @property
    def is_running(self) -> bool:
        """Sent to the provider and not finished: what takes one of the queue's slots."""
        return self in RUNNING_GENERATION_STATUSES


TERMINAL_GENERATION_STATUSES = frozenset(
    {
        GenerationStatus.SUCCEEDED,
        GenerationStatus.FAILED,
        GenerationStatus.CANCELED,
        GenerationStatus.TIMED_OUT,
    }
)

RUNNING_GENERATION_STATUSES = frozenset({GenerationStatus.STARTING, GenerationStatus.PROCESSING})
# QUEUED waits at Darkroom, STARTING at the provider; every terminal status ranks 3.
_RANKS = {GenerationStatus.QUEUED: 0, GenerationStatus.STARTING: 1, GenerationStatus.PROCESSING: 2}


class MediaStatus(StrEnum):
    PENDING = "PENDING"
    DOWNLOADING = "DOWNLOADING"
    READY = "READY"
    FAILED = "FAILED"

    @property
    def is_settled(self) -> bool:
        return self in (MediaStatus.READY, MediaStatus.FAILED)


def generation_status_for(reported: GenerationStatus | None, current: GenerationStatus) -> GenerationStatus:
    """The status a provider's report gives a generation now at `current`. A report in a word Darkroom
    does not know (None; a provider may add some) says the prediction is not finished: a running
    generation stays as it is, and is still polled and timed out."""
    if reported is not None:
        return reported
    return current if not current.is_terminal else GenerationStatus.PROCESSING


class GenerationPhase(StrEnum):
    """What a generation is doing, in words a UI can show; finer than its status while it is unfinished."""

    QUEUED = "QUEUED"  # waiting in Darkroom's own queue
    WAITING = "WAITING"  # sent, waiting for the provider to give it a worker
    BOOTING = "BOOTING"  # the provider is starting a worker for it: it logs, but has not started running
    RUNNING = "RUNNING"
    SAVING = "SAVING"  # finished at the provider; Darkroom is copying its files
    FINISHED = "FINISHED"


class EtaBasis(StrEnum):
    """What an estimate of the time left rests on."""

    PROGRESS = "PROGRESS"  # the job's own progress lines
    HISTORY = "HISTORY"  # its model's past runs here, of inputs of the same size
    QUEUE = "QUEUE"  # its place in Darkroom's queue times that history


def shown_phase(stored: str | None, status: GenerationStatus) -> GenerationPhase:
    """The phase a generation shows: the one stored with its last change, or, for a row written before
    phases were stored, the one its status implies."""
    if stored is not None:
        return GenerationPhase(stored)
    return phase_of(status, has_logs=False, media=None, current=None)


def phase_of(
    status: GenerationStatus, *, has_logs: bool, media: list[MediaStatus] | None, current: str | None
) -> GenerationPhase:
    """The phase of a generation at `status`. A STARTING job that writes logs is booting (a provider logs
    a cold worker's setup before the run starts), one that does not is still waiting for a worker.
    A SUCCEEDED one is saving until each of its `media` settles; None when the change at hand concerns no
    media, which leaves the `current` phase as it was."""
    if status is GenerationStatus.QUEUED:
        return GenerationPhase.QUEUED
    if status is GenerationStatus.STARTING:
        return GenerationPhase.BOOTING if has_logs else GenerationPhase.WAITING
    if status is GenerationStatus.PROCESSING:
        return GenerationPhase.RUNNING
    if status is GenerationStatus.SUCCEEDED:
        if media is None:
            return GenerationPhase(current) if current == GenerationPhase.SAVING else GenerationPhase.FINISHED
        return GenerationPhase.SAVING if any(not item.is_settled for item in media) else GenerationPhase.FINISHED
    return GenerationPhase.FINISHED
