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
