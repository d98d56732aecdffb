"""Token buckets shared by every process that serves one deployment: the port, and where the buckets live.

A bucket holds up to `capacity` tokens and refills at `rate` tokens a second; `take` spends one, or says
how long until one is there. Where the buckets live decides how far a limit reaches:

- Redis (BROADCAST_URL is redis://): one Lua script per take, atomic on the server, a hash per bucket
  that expires once it would be full again;
- PostgreSQL (DATABASE_URL is postgres://, no Redis): one INSERT ... ON CONFLICT DO UPDATE ... RETURNING
  on the `rate_limit_buckets` table, which the row lock serialises;
- this process (the embedded default: SQLite and memory://): a dict.

Each take is one round trip. The shared stores read their own clock (Redis TIME, PostgreSQL
clock_timestamp()), so processes whose clocks differ still share one bucket. When the store cannot be
reached the take is allowed: an outage of the limiter must not stop the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis import asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.settings import Settings

logger = logging.getLogger(__name__)


class TokenBuckets(Protocol):
    async def take(self, key: str, rate: float, capacity: float) -> float:
        """Spend one token of bucket `key`: 0.0 when taken, else the seconds until one is there."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class LocalBuckets:
    """Buckets in this process's memory: one process, one limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, key: str, rate: float, capacity: float) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=capacity, updated=now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return (1.0 - bucket.tokens) / rate
        bucket.tokens -= 1.0
        return 0.0

    async def aclose(self) -> None:
        self._buckets.clear()


# KEYS[1] the bucket; ARGV rate (tokens/s), capacity. Returns the wait as a string (a Lua number would be
# truncated to an integer reply).
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now
end
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


class _Outage:
    """Logs a store's outage once when it starts and once when it ends, not once per request."""

    def __init__(self, store: str) -> None:
        self._store = store
        self.down = False

    def failed(self, exc: BaseException) -> float:
        if not self.down:
            self.down = True
            logger.warning(
                "rate limit store unreachable: requests are allowed until it is back",
                extra={"store": self._store, "error": str(exc)},
            )
        return 0.0

    def answered(self) -> None:
        if self.down:
            self.down = False
            logger.warning("rate limit store reachable again", extra={"store": self._store})


class RedisBuckets:
    """Buckets in Redis, shared by every process on it; keys start with `prefix`."""

    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._prefix = prefix
        # EVALSHA, falling back to EVAL once when Redis does not know the script (after a restart).
        self._script = self._client.register_script(_TAKE_SCRIPT)
        self._outage = _Outage("redis")

    async def take(self, key: str, rate: float, capacity: float) -> float:
        try:
            wait = await self._script(keys=[f"{self._prefix}{key}"], args=[repr(rate), repr(capacity)])
        except (RedisError, OSError) as exc:
            return self._outage.failed(exc)
        self._outage.answered()
        return float(wait)

    async def aclose(self) -> None:
        await self._client.aclose()


# The bucket's tokens now (the existing row's, refilled up to now); every SET expression reads the old row.
_REFILL = (
    "least(CAST(:capacity AS float8), bucket.tokens"
    " + greatest(0, excluded.updated_at - bucket.updated_at) * CAST(:rate AS float8))"
)
_TAKE_STATEMENT = text(
    f"""
    INSERT INTO rate_limit_buckets AS bucket (key, tokens, updated_at, taken)
    VALUES (:key, CAST(:capacity AS float8) - 1, CAST(extract(epoch FROM clock_timestamp()) AS float8), true)
    ON CONFLICT (key) DO UPDATE SET
        tokens = {_REFILL} - CASE WHEN {_REFILL} >= 1 THEN 1 ELSE 0 END,
        updated_at = excluded.updated_at,
        taken = {_REFILL} >= 1
    RETURNING bucket.tokens, bucket.taken
    """
)


class PostgresBuckets:
    """Buckets in PostgreSQL's `rate_limit_buckets` table, shared by every process on the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        # The statement is atomic on its own: autocommit spares a BEGIN and a COMMIT round trip.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._outage = _Outage("postgresql")

    async def take(self, key: str, rate: float, capacity: float) -> float:
        try:
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(_TAKE_STATEMENT, {"key": key, "rate": rate, "capacity": capacity})
                ).one()
        except (SQLAlchemyError, OSError) as exc:
            return self._outage.failed(exc)
        self._outage.answered()
        tokens, taken = float(row[0]), bool(row[1])
        return 0.0 if taken else (1.0 - tokens) / rate

    async def aclose(self) -> None:
        """The engine is the runtime's; it disposes of it."""


def buckets_from_settings(settings: Settings, engine: AsyncEngine) -> TokenBuckets:
    """Redis when the broadcast is Redis, else PostgreSQL when the database is, else this process."""
    url = settings.events.broadcast_url
    if url.startswith(("redis://", "rediss://")):
        return RedisBuckets(url, prefix=f"{settings.events.broadcast_channel}:rate:")
    if settings.is_postgres:
        return PostgresBuckets(engine)
    return LocalBuckets()
