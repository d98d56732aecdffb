"""Replicate's prediction objects as Darkroom reads them, their outputs, and the neutral update each gives."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.provider.progress import parse_progress
from server.provider.replicate.statuses import PROVIDER_STATUSES, PROVIDER_TERMINAL_STATUSES, STATUS_MAP
from server.provider.types import MAX_STATUS_LENGTH, PredictionUpdate

logger = logging.getLogger(__name__)

# Unknown statuses already reported by this process (each is logged once; the set is capped).
_reported_statuses: set[str] = set()
MAX_REPORTED_STATUSES = 100


def _report_unknown_status(status: str) -> None:
    if status in _reported_statuses or len(_reported_statuses) >= MAX_REPORTED_STATUSES:
        return
    _reported_statuses.add(status)
    logger.warning(
        "the provider sent a prediction status Darkroom does not know; treated as still running",
        extra={"provider_status": status},
    )


def parse_timestamp(value: Any) -> datetime | None:
    """Parse Replicate's ISO-8601 timestamps ("2024-01-01T00:00:00.123456Z"); None stays None."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A prediction object, exactly the fields Darkroom uses; `raw` keeps the whole body. `status` is the
    provider's own word, one Darkroom does not know included (see `to_update`)."""

    id: str
    status: str
    model: str | None = None
    version: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    error: str | None = None
    logs: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    data_removed: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in PROVIDER_TERMINAL_STATUSES

    def to_update(self) -> PredictionUpdate:
        """The prediction in Darkroom's words: its status read through STATUS_MAP (None for a word Darkroom
        does not know), its output files listed, and a reason given for an abort that came without one."""
        error = self.error
        if self.status == "aborted" and error is None:
            error = "aborted by the provider before it started"
        return PredictionUpdate(
            prediction_id=self.id,
            status=STATUS_MAP.get(self.status),
            provider_status=self.status,
            version=self.version,
            logs=self.logs,
            output_urls=tuple(output_urls(self.output)),
            error=error,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            data_removed=self.data_removed,
            predict_time=self.predict_time,
            progress=parse_progress(self.logs),
        )

    @property
    def predict_time(self) -> float | None:
        """`metrics.predict_time`: seconds the model ran, what Replicate bills by; None when absent."""
        value = self.metrics.get("predict_time")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
            return None
        return float(value)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Prediction:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ValueError("a prediction needs a string id")
        status = body.get("status")
        if not isinstance(status, str) or not status or len(status) > MAX_STATUS_LENGTH:
            raise ValueError(f"a prediction needs a status (a word), got {status!r:.80}")
        if status not in PROVIDER_STATUSES:
            # Kept as sent (it is stored as providerStatus); the generation counts as still running.
            _report_unknown_status(status)
        error = body.get("error")
        logs = body.get("logs")
        return cls(
            id=body["id"],
            status=status,
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            version=body.get("version") if isinstance(body.get("version"), str) else None,
            input=_object(body.get("input")),
            output=body.get("output"),
            error=None if error is None else str(error),
            logs=logs if isinstance(logs, str) else None,
            created_at=parse_timestamp(body.get("created_at")),
            started_at=parse_timestamp(body.get("started_at")),
            completed_at=parse_timestamp(body.get("completed_at")),
            data_removed=bool(body.get("data_removed", False)),
            metrics=_object(body.get("metrics")),
            urls={str(k): str(v) for k, v in _object(body.get("urls")).items()},
            raw=body,
        )


def output_urls(output: Any) -> list[str]:
    """Every file an output names, in order: a URL, a list of URLs, a data: URI, or an object of URLs.

    Nested lists and objects are walked depth first; values that are not URL-like strings are skipped.
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value.startswith(("http://", "https://", "data:")):
                found.append(value)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(output)
    return found


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
