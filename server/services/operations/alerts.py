"""Alerts on repeated failures: one WARNING with a stable message and `alert` field an alert rule can key on.

Failures are counted per process in a sliding window of ALERT_WINDOW_SECONDS: generations of one model
that end FAILED or TIMED_OUT, and failed download attempts. When a count reaches
ALERT_FAILURE_THRESHOLD, one WARNING is logged; it is repeated at most once per window while the
failures go on.

    {"level": "WARNING", "message": "repeated generation failures", "alert": "generation_failures",
     "model": "owner/name", "kind": "IMAGE", "failures": 5, "window_seconds": 900.0, ...}
    {"level": "WARNING", "message": "repeated download failures", "alert": "download_failures", ...}
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from server.domain import GenerationStatus

logger = logging.getLogger("server.alerts")

GENERATION_FAILURES = "generation_failures"
DOWNLOAD_FAILURES = "download_failures"
FAILED_STATUSES = frozenset({GenerationStatus.FAILED, GenerationStatus.TIMED_OUT})


class FailureAlerts:
    def __init__(self, threshold: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: defaultdict[tuple[str, ...], deque[float]] = defaultdict(deque)
        self._alerted_at: dict[tuple[str, ...], float] = {}

    def generation_finished(self, model: str, kind: str, status: str) -> None:
        if status in FAILED_STATUSES:
            self._failure(
                (GENERATION_FAILURES, model, kind),
                "repeated generation failures",
                {"alert": GENERATION_FAILURES, "model": model, "kind": kind},
            )

    def download_failed(self, error: str) -> None:
        self._failure((DOWNLOAD_FAILURES,), "repeated download failures", {"alert": DOWNLOAD_FAILURES, "error": error})

    def _failure(self, key: tuple[str, ...], message: str, extra: dict[str, Any]) -> None:
        if self.threshold <= 0:
            return
        now = self._clock()
        recent = self._failures[key]
        recent.append(now)
        while recent and recent[0] <= now - self.window_seconds:
            recent.popleft()
        if len(recent) < self.threshold:
            return
        last = self._alerted_at.get(key)
        if last is not None and now - last < self.window_seconds:
            return
        self._alerted_at[key] = now
        logger.warning(message, extra={**extra, "failures": len(recent), "window_seconds": self.window_seconds})
