"""The vocabulary every layer shares: kinds, statuses and the rules between them."""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"


# File endings that name a video (an output URL, a model's example); anything else is taken for an image.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".m4v", ".mkv", ".gif")


class GenerationStatus(StrEnum):
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
        return 2 if self.is_terminal else (0 if self is GenerationStatus.STARTING else 1)


TERMINAL_GENERATION_STATUSES = frozenset(
    {
        GenerationStatus.SUCCEEDED,
        GenerationStatus.FAILED,
        GenerationStatus.CANCELED,
        GenerationStatus.TIMED_OUT,
    }
)


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
