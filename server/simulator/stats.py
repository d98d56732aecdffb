"""What the simulator did, for tests to assert on: file downloads, webhook attempts, predictions created
(the route each came through, its webhook and its Cancel-After).

`Stats` reads both ways: attributes (``stats.file_hits``) and keys (``stats["file_hits"]``), the latter
matching the JSON of ``GET /_control/stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import urlparse


class WebhookRecord(TypedDict):
    """One webhook delivery attempt (or one drop: `dropped` true, `attempt` 0, never sent)."""

    prediction_id: str
    event: str
    status: str
    attempt: int
    delivered: bool
    response_status: int | None
    webhook_id: str
    url: str
    dropped: bool
    duplicate: bool
    error: str | None


class CreateRecord(TypedDict):
    """One prediction created: its model, the webhook it asked for (None: none), the path it was posted
    to, the body's `version` (None on the models endpoint) and the Cancel-After header as sent (None
    without one)."""

    prediction_id: str
    model: str
    webhook: str | None
    path: str
    version: str | None
    cancel_after: str | None


@dataclass
class Stats:
    file_hits: dict[str, int] = field(default_factory=dict)
    """GETs per served file, keyed by path below the simulator's base URL ("/files/<id>/out-0.webp")."""
    webhooks: list[WebhookRecord] = field(default_factory=list)
    """Every webhook attempt, in the order they were made."""
    predictions_created: int = 0
    creates: list[CreateRecord] = field(default_factory=list)
    """Every prediction created, in order."""
    rate_limited: int = 0
    """Creates refused with 429 (`rate_limited_creates`)."""

    def hit(self, path: str) -> None:
        self.file_hits[path] = self.file_hits.get(path, 0) + 1

    def hits(self, url_or_path: str, base_url: str = "") -> int:
        """GETs of one file, given its full URL (on `base_url`) or its path below the base URL."""
        if base_url and url_or_path.startswith(base_url):
            url_or_path = url_or_path[len(base_url) :]
        elif "://" in url_or_path:
            url_or_path = urlparse(url_or_path).path
        return self.file_hits.get(url_or_path, 0)

    def webhooks_for(self, prediction_id: str) -> list[WebhookRecord]:
        return [record for record in self.webhooks if record["prediction_id"] == prediction_id]

    def create_of(self, prediction_id: str) -> CreateRecord:
        """How the prediction `prediction_id` was created (KeyError when this simulator did not)."""
        return next(record for record in self.creates if record["prediction_id"] == prediction_id)

    def reset(self) -> None:
        self.file_hits.clear()
        self.webhooks.clear()
        self.predictions_created = 0
        self.creates.clear()
        self.rate_limited = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "file_hits": dict(self.file_hits),
            "webhooks": [dict(record) for record in self.webhooks],
            "predictions_created": self.predictions_created,
            "creates": [dict(record) for record in self.creates],
            "rate_limited": self.rate_limited,
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]
