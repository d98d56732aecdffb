"""The provider's answers in Darkroom's words: one prediction's state, and one reason a request was refused.

Every provider implementation reads its own wire format into these, so the services never see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.domain import GenerationStatus, MediaKind
from server.provider.progress import ProgressReading, read_progress

# A client's `on_request(method, path_template, status_or_None, seconds)`, called once per HTTP attempt.
RequestHook = Callable[[str, str, int | None, float], None]

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
    # How many jobs wait ahead of this one in the provider's queue, where it says (fal does).
    queue_position: int | None = None
    # How far along the job is (0-1), as the provider says or its logs show; None when nothing tells.
    progress: float | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal

    def steps(self) -> ProgressReading | None:
        """The last progress line of its logs, read (models print the same lines whichever provider runs them)."""
        return read_progress(self.logs)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason the provider refused a request, in Darkroom's error codes (those input validation uses,
    or PROVIDER_* ones). `field` is the path of the input it concerns (["input", "width"]), or None."""

    field: list[str] | None
    message: str
    code: str
    retry_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job at its provider as Darkroom stores it: the provider's id for it (what its webhooks name) and
    the model reference it runs, which some providers need to reach it again (fal's status, result and
    cancel URLs are under the model's app id)."""

    id: str
    model_ref: str


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """One model as the provider describes it, in Darkroom's words.

    `ref` is written as the provider writes it ("owner/name", or fal's "fal-ai/flux/dev"). `kind` is None
    for a model that makes neither images nor videos. `input_schema` is the JSON Schema of the input
    object with every ``$ref`` resolved; `image_input` names the input that takes an image. `version_id`
    is the version a start runs unless the caller pins one; None when the model runs by its name.
    `groups` are the provider's listings it appears in ("text-to-image", "image-to-video", ...).
    """

    ref: str
    kind: MediaKind | None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    image_input: str | None = None
    example: dict[str, Any] | None = None
    run_count: int | None = None
    cover_image_url: str | None = None
    version_id: str | None = None
    groups: tuple[str, ...] = ()
