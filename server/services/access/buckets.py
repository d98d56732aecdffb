"""Token buckets shared by every process that serves one deployment: the port, and where the buckets live.

A bucket holds up to `capacity` tokens and refills at `rate` tokens a second; `take` spends one, or says
how long until one is there. Where the buckets live decides how far a limit reaches:

- Redis (BROADCAST_URL is redis://): one Lua script per take, atomic on the server, a hash per bucket
  that expires once it would be full again;
- PostgreSQL (DATABASE_URL is postgres://, no Redis): one INSERT ... ON CONFLICT DO UPDATE ... RETURNING
  on the `rate_limit_buckets` table, which the row lock serialises;
- this process (the embedded default: SQLite and memory://): a dict.

Each take is one round trip. The shared stores read their own clock (Redis TIME, PostgreSQL
clock_timestamp()), so processes whose clocks differ still share one bucket. An outage of the limiter must
not stop the API: while a shared store cannot be reached, each process limits on its own buckets, and
asks the store again only every OUTAGE_RETRY_SECONDS, so requests do not each wait on it.
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


# While a shared store is down, how long until it is asked again (one request then waits on it).
OUTAGE_RETRY_SECONDS = 5.0
# How long one take may wait on Redis before the store counts as down.
REDIS_TIMEOUT_SECONDS = 2.0


class SharedBuckets:
    """A shared store's buckets, and this process's own while the store cannot be reached: the outage is
    logged once when it starts and once when it ends, not once per request."""

    def __init__(
        self,
        store: TokenBuckets,
        name: str,
        unreachable: tuple[type[BaseException], ...],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._name = name
        self._unreachable = unreachable
        self._clock = clock
        self._local = LocalBuckets(clock)
        self._down_until: float | None = None

    async def take(self, key: str, rate: float, capacity: float) -> float:
        if self._down_until is not None and self._clock() < self._down_until:
            return await self._local.take(key, rate, capacity)
        try:
            wait = await self._store.take(key, rate, capacity)
        except self._unreachable as exc:
            if self._down_until is None:
                logger.warning(
                    "rate limit store unreachable: each process limits on its own until it is back",
                    extra={"store": self._name, "error": str(exc)},
                )
            self._down_until = self._clock() + OUTAGE_RETRY_SECONDS
            return await self._local.take(key, rate, capacity)
        if self._down_until is not None:
            self._down_until = None
            logger.info("rate limit store reachable again", extra={"store": self._name})
        return wait

    async def aclose(self) -> None:
        await self._store.aclose()


class RedisBuckets:
    """Buckets in Redis, shared by every process on it; keys start with `prefix`."""

    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._prefix = prefix
        # EVALSHA, falling back to EVAL once when Redis does not know the script (after a restart).
        self._script = self._client.register_script(_TAKE_SCRIPT)

    async def take(self, key: str, rate: float, capacity: float) -> float:
        wait = await self._script(keys=[f"{self._prefix}{key}"], args=[repr(rate), repr(capacity)])
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

    async def take(self, key: str, rate: float, capacity: float) -> float:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_TAKE_STATEMENT, {"key": key, "rate": rate, "capacity": capacity})).one()
        tokens, taken = float(row[0]), bool(row[1])
        return 0.0 if taken else (1.0 - tokens) / rate

    async def aclose(self) -> None:
        """The engine is the runtime's; it disposes of it."""


def buckets_from_settings(settings: Settings, engine: AsyncEngine) -> TokenBuckets:
    """Redis when the broadcast is Redis, else PostgreSQL when the database is, else this process."""
    url = settings.events.broadcast_url
    if url.startswith(("redis://", "rediss://")):
        redis_buckets = RedisBuckets(url, prefix=f"{settings.events.broadcast_channel}:rate:")
        return SharedBuckets(redis_buckets, "redis", (RedisError, OSError))
    if settings.is_postgres:
        return SharedBuckets(PostgresBuckets(engine), "postgresql", (SQLAlchemyError, OSError))
    return LocalBuckets()
