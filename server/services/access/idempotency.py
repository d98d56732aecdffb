"""Idempotency keys for the creating mutations: a repeat of a request returns what its first call created.

A key is the caller's own (`scope`: its API key's id; the open server's anonymous caller is one scope),
and stands for one request, by the fingerprint of the operation and its arguments. The first call claims
the key by inserting its row (the primary key (scope, key) lets exactly one of any number of concurrent
claims, in any process, win), runs, and records the id of what it created. Then:

- a repeat with the same request returns that result, without running again; while the first call is
  still in flight, the repeat polls the row (up to IDEMPOTENCY_WAIT_SECONDS, then
  IDEMPOTENCY_KEY_IN_FLIGHT) and returns its result once recorded;
- the same key with a different request is refused (IDEMPOTENCY_KEY_REUSED) and changes nothing;
- a first call that fails (userErrors, any error the services undo, or a cancelled request) releases the
  key by deleting its row, so the caller can fix the request and retry with the same key; a repeat
  waiting on it then runs itself;
- a key older than IDEMPOTENCY_KEY_TTL_SECONDS is treated as absent: the next claim replaces its row,
  and the periodic cleanup deletes the rest (server.services.media.retention).

A process that dies between the claim and recording the result leaves the row without a result: a
repeat then waits and is answered IDEMPOTENCY_KEY_IN_FLIGHT until the key expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import IdempotencyKey, utcnow
from server.services.access.viewer import Viewer
from server.services.errors import FieldError, ServiceError
from server.settings import Settings

logger = logging.getLogger(__name__)

R = TypeVar("R")

KEY_FIELD = ["input", "idempotencyKey"]
MAX_KEY_CHARS = 255
# The open server's caller (no API key) has one scope of its own.
ANONYMOUS_SCOPE = "anonymous"
# A repeat polls the in-flight row this often at first, backing off to the longest.
FIRST_POLL_SECONDS = 0.05
LONGEST_POLL_SECONDS = 0.5


def key_problems(key: str | None) -> list[FieldError]:
    """Why `key` is no idempotency key (1-255 printable characters); empty when it is one, or absent."""
    if key is None:
        return []
    if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable():
        message = f"idempotencyKey must be 1 to {MAX_KEY_CHARS} printable characters"
        return [FieldError(KEY_FIELD, message, "INVALID_IDEMPOTENCY_KEY")]
    return []


def fingerprint(operation: str, arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the operation and its arguments (keys sorted, compact, ASCII: any text
    encodes, even a lone surrogate the model's input check has yet to refuse)."""
    canonical = json.dumps({"operation": operation, "arguments": arguments}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def scope_of(viewer: Viewer) -> str:
    return str(viewer.owner_id) if viewer.owner_id is not None else ANONYMOUS_SCOPE


class IdempotencyService:
    # The database's clock is not asked: expiry is judged by each process's own, like every lease here.
    clock: Callable[[], datetime] = staticmethod(utcnow)

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._ttl = timedelta(seconds=settings.creates.idempotency_key_ttl_seconds)
        self._wait_seconds = settings.creates.idempotency_wait_seconds
        self._sessions = sessions

    async def once(
        self,
        viewer: Viewer,
        key: str | None,
        operation: str,
        arguments: dict[str, Any],
        create: Callable[[], Awaitable[R]],
        result_id: Callable[[R], uuid.UUID],
        load: Callable[[uuid.UUID], Awaitable[R]],
    ) -> R:
        """`create()`, run at most once per (caller, key) for one request; a repeat gets `load(id)` of the
        first call's result. Without a key, `create()` runs as it is. See the module docstring."""
        if key is None:
            return await create()
        if problems := key_problems(key):
            raise ServiceError(problems)
        scope, printed = scope_of(viewer), fingerprint(operation, arguments)
        give_up_at = time.monotonic() + self._wait_seconds
        pause = FIRST_POLL_SECONDS
        while (claimed_at := await self._claim(scope, key, operation, printed)) is None:
            held = await self._read(scope, key)
            if held is None or held.expires_at <= self.clock():
                continue  # released, or expired (the next claim replaces it): claim it again
            if held.fingerprint != printed:
                raise ServiceError.single(
                    "IDEMPOTENCY_KEY_REUSED",
                    "this idempotencyKey was used for a different request; use a new key for a new request",
                    KEY_FIELD,
                )
            if held.result_id is not None:
                return await load(held.result_id)
            if time.monotonic() >= give_up_at:
                raise ServiceError(
                    [
                        FieldError(
                            KEY_FIELD,
                            "the first request with this idempotencyKey is still running; try again",
                            "IDEMPOTENCY_KEY_IN_FLIGHT",
                            retry_after_seconds=1.0,
                        )
                    ]
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_POLL_SECONDS)
        try:
            result = await create()
        except BaseException:
            # The services undo what a refused, failed or interrupted create started: the key is free again
            # for the retry. Shielded, so that a cancelled request still lets go of it.
            try:
                await asyncio.shield(self._release(scope, key, claimed_at))
            except Exception:
                logger.warning("an idempotency key could not be released; it is held until it expires", exc_info=True)
            raise
        await self._record(scope, key, claimed_at, result_id(result))
        return result

    async def _claim(self, scope: str, key: str, operation: str, printed: str) -> datetime | None:
        """Insert the key's row and give its `created_at`, which names this claim; None when another call
        holds the key (the primary key refused the insert)."""
        now = self.clock()
        try:
            async with self._sessions.begin() as session:
                # An expired row is no claim: it goes first, in the same transaction as the new one.
                await session.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.scope == scope, IdempotencyKey.key == key, IdempotencyKey.expires_at <= now
                    )
                )
                session.add(
                    IdempotencyKey(
                        scope=scope,
                        key=key,
                        operation=operation,
                        fingerprint=printed,
                        created_at=now,
                        expires_at=now + self._ttl,
                    )
                )
        except IntegrityError:
            return None
        return now

    async def _read(self, scope: str, key: str) -> IdempotencyKey | None:
        async with self._sessions() as session:
            return await session.get(IdempotencyKey, (scope, key), populate_existing=True)

    async def _release(self, scope: str, key: str, claimed_at: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(IdempotencyKey).where(*self._claimed(scope, key, claimed_at)))

    async def _record(self, scope: str, key: str, claimed_at: datetime, created: uuid.UUID) -> None:
        async with self._sessions.begin() as session:
            statement = update(IdempotencyKey).where(*self._claimed(scope, key, claimed_at))
            await session.execute(statement.values(result_id=created))

    @staticmethod
    def _claimed(scope: str, key: str, claimed_at: datetime) -> tuple[Any, ...]:
        # The claim's time too: should the key have expired and been claimed anew meanwhile, that row is not ours.
        return (IdempotencyKey.scope == scope, IdempotencyKey.key == key, IdempotencyKey.created_at == claimed_at)
