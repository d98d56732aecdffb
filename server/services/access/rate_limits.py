"""Rate limits per API key: a token bucket per key for its mutations, and another for its queries.

Each key may make RATE_LIMIT_MUTATIONS_BURST mutations at once, refilled at
RATE_LIMIT_MUTATIONS_PER_MINUTE, and likewise RATE_LIMIT_QUERIES_BURST and RATE_LIMIT_QUERIES_PER_MINUTE
queries. The buckets live where `server.services.access.buckets` puts them: in Redis or PostgreSQL when
several processes share those, so a key gets the limit once in all of them, not once in each. The open
server's anonymous caller is not limited (it is one local user; a deployment that faces others has keys).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from server.services.access.buckets import TokenBuckets
from server.services.access.viewer import Viewer
from server.services.errors import FieldError, ServiceError
from server.settings import Settings


class Limited(enum.StrEnum):
    """What a limit counts; the value names it in messages and in its buckets' keys."""

    MUTATIONS = "mutations"
    QUERIES = "queries"


# The code of every refusal by a rate limit (a mutation's userError, a query's GraphQL error).
RATE_LIMITED = "RATE_LIMITED"


class RateLimited(ServiceError):
    """Too many requests of one kind: `retry_after_seconds` says when the next one will be accepted."""

    def __init__(self, limited: Limited, retry_after_seconds: float) -> None:
        wait = math.ceil(retry_after_seconds * 10) / 10
        super().__init__(
            [
                FieldError(
                    field=None,
                    message=f"too many {limited.value} for this API key: try again in {wait:g} s",
                    code=RATE_LIMITED,
                    retry_after_seconds=wait,
                )
            ]
        )
        self.retry_after_seconds = wait


@dataclass(frozen=True)
class Rate:
    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class RateLimiter:
    def __init__(self, buckets: TokenBuckets, rates: dict[Limited, Rate]) -> None:
        self._buckets = buckets
        self._rates = rates

    @classmethod
    def from_settings(cls, settings: Settings, buckets: TokenBuckets) -> RateLimiter:
        access = settings.access
        return cls(
            buckets,
            {
                Limited.MUTATIONS: Rate(access.rate_limit_mutations_per_minute, access.rate_limit_mutations_burst),
                Limited.QUERIES: Rate(access.rate_limit_queries_per_minute, access.rate_limit_queries_burst),
            },
        )

    def applies(self, viewer: Viewer, limited: Limited) -> bool:
        rate = self._rates.get(limited)
        return rate is not None and rate.per_minute > 0 and viewer.owner_id is not None

    async def take(self, viewer: Viewer, limited: Limited) -> None:
        """Spend one of `viewer`'s key's `limited`; raises RateLimited when its bucket is empty."""
        if not self.applies(viewer, limited):
            return
        rate = self._rates[limited]
        wait = await self._buckets.take(
            f"{limited.value}:{viewer.owner_id}", rate.per_second, float(max(rate.burst, 1))
        )
        if wait > 0:
            raise RateLimited(limited, wait)

    async def aclose(self) -> None:
        await self._buckets.aclose()
