"""Per-key rate limits on mutations: a token bucket per API key, held in this process.

Each key may make RATE_LIMIT_MUTATIONS_BURST mutations at once, refilled at
RATE_LIMIT_MUTATIONS_PER_MINUTE. The buckets live in memory, so with several server processes a key
may make that many in each of them. The open server's anonymous caller is not limited.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from server.services.access.viewer import Viewer
from server.services.errors import FieldError, ServiceError
from server.settings import Settings


class RateLimited(ServiceError):
    """Too many mutations: `retry_after_seconds` says when the next one will be accepted."""

    def __init__(self, retry_after_seconds: float) -> None:
        wait = math.ceil(retry_after_seconds * 10) / 10
        super().__init__(
            [
                FieldError(
                    field=None,
                    message=f"too many mutations for this API key: try again in {wait:g} s",
                    code="RATE_LIMITED",
                    retry_after_seconds=wait,
                )
            ]
        )
        self.retry_after_seconds = wait


@dataclass
class _Bucket:
    tokens: float
    updated: float


class MutationRateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[uuid.UUID, _Bucket] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> MutationRateLimiter:
        return cls(settings.access.rate_limit_mutations_per_minute, settings.access.rate_limit_mutations_burst)

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, viewer: Viewer) -> None:
        """Spend one mutation of `viewer`'s key; raises RateLimited when its bucket is empty."""
        if not self.enabled or viewer.owner_id is None:
            return
        now = self._clock()
        bucket = self._buckets.get(viewer.owner_id)
        if bucket is None:
            bucket = self._buckets[viewer.owner_id] = _Bucket(tokens=self._capacity, updated=now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise RateLimited((1.0 - bucket.tokens) / self._rate)
        bucket.tokens -= 1.0
