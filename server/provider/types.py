"""The provider's answers in Darkroom's words: one prediction's state, and one reason a request was refused.

Every provider implementation reads its own wire format into these, so the services never see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.domain import GenerationStatus

# What a provider status may be: a word, not a document (generations.provider_status holds this many characters).
MAX_STATUS_LENGTH = 64


@dataclass(frozen=True, slots=True)
class PredictionUpdate:
    """What the provider says of one prediction, from a webhook, a poll or a call's answer.

    `status` is Darkroom's reading of the provider's own word `provider_status` (kept as sent, it is stored
    as providerStatus); None when the provider used a word Darkroom does not know, which says the work is
    not finished: the generation keeps its status, and is still polled and timed out. `output_urls` lists
    every file the prediction produced, in order; `error` says why it failed or was canceled.
    `predict_time` is how many seconds the model ran, as the provider measured it (None until it says).
    """

    prediction_id: str
    status: GenerationStatus | None
    provider_status: str
    version: str | None = None
    logs: str | None = None
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # The provider deleted the outputs (and the input) already: nothing can be downloaded any more.
    data_removed: bool = False
    predict_time: float | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason the provider refused a request, in Darkroom's error codes (those input validation uses,
    or PROVIDER_* ones). `field` is the path of the input it concerns (["input", "width"]), or None."""

    field: list[str] | None
    message: str
    code: str
    retry_after_seconds: float | None = None
