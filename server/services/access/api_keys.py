"""API keys: creating, listing and revoking them, and turning a bearer token into a Viewer.

A token is shown once, when it is created; the database keeps only its sha256 and a short prefix to
recognise it by. The server is open (every caller is the anonymous viewer) while no active key exists
and AUTH_REQUIRED is off; as soon as one exists, every GraphQL operation needs a valid token.

Each process answers from a snapshot of the active keys, re-read every AUTH_REFRESH_SECONDS (and at
once after a revocation made in this process). A token missing from the snapshot is looked up in the
database, so a key created a moment ago, by the CLI or another process, works at once. The same
refresh closes the WebSockets of keys revoked anywhere else, and of anonymous sockets once the server
stops being open: revocation reaches every process through the database, with no broker involved.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import ApiKey, utcnow
from server.services.access.viewer import Viewer
from server.services.errors import NotFound, ServiceError
from server.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "drk_"
# What is stored and listed to tell keys apart: "drk_" and the first 8 characters of the secret.
PREFIX_LENGTH = 12
# A key's last_used_at is written at most this often (per process), not on every request.
LAST_USED_RESOLUTION_SECONDS = 60.0

CloseSocket = Callable[[str], Awaitable[None]]


class AuthError(Exception):
    """The caller presented no usable credential where one is needed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    token: str


# The calendar periods a budget counts spend over (UTC).
BUDGET_PERIODS = ("day", "week", "month")


class Unchanged:
    """An update's value for a limit it leaves as it is."""


UNCHANGED = Unchanged()


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's spend controls: how many generations may run at once, and a budget per calendar period.

    Each is `UNCHANGED` in an update that leaves it alone; None clears it (no limit of the key's own)."""

    max_running: int | Unchanged | None = UNCHANGED
    budget_amount: float | Unchanged | None = UNCHANGED
    budget_period: str | Unchanged | None = UNCHANGED

    def check(self) -> None:
        if isinstance(self.max_running, int) and self.max_running < 1:
            raise ServiceError.single("INVALID_LIMIT", "max running must be 1 or more", ["maxRunning"])
        if isinstance(self.budget_amount, float | int) and not 0 <= self.budget_amount < float("inf"):
            raise ServiceError.single("INVALID_BUDGET", "a budget must be a finite amount of 0 or more", ["budget"])
        if isinstance(self.budget_period, str) and self.budget_period not in BUDGET_PERIODS:
            message = f"a budget's period is one of {', '.join(BUDGET_PERIODS)}, not {self.budget_period!r}"
            raise ServiceError.single("INVALID_PERIOD", message, ["period"])

    def apply(self, key: ApiKey) -> None:
        if not isinstance(self.max_running, Unchanged):
            key.max_running = self.max_running
        if not isinstance(self.budget_amount, Unchanged):
            key.budget_amount = None if self.budget_amount is None else float(self.budget_amount)
        if not isinstance(self.budget_period, Unchanged):
            key.budget_period = self.budget_period


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(value: object, *, scheme_required: bool = True) -> str | None:
    """The token of "Bearer <token>"; None when absent, blank or (with `scheme_required`) another scheme.

    Another scheme is not ours to judge (a proxy's Basic auth, say): it counts as no key at all. A bare
    token is accepted when `scheme_required` is off (WebSocket connection params).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuthError("the API key must be a string: Bearer <token>")
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    if scheme_required or not text:
        return None
    return text


@dataclass
class _Snapshot:
    active: dict[str, uuid.UUID] = field(default_factory=dict)  # token hash -> key id
    loaded_at: float | None = None

    @property
    def ids(self) -> set[uuid.UUID]:
        return set(self.active.values())


@dataclass(frozen=True, slots=True)
class _Socket:
    owner_id: uuid.UUID | None
    close: CloseSocket


class ApiKeyService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessions = sessions
        self._snapshot = _Snapshot()
        self._refresh_lock = asyncio.Lock()
        self._sockets: dict[int, _Socket] = {}
        self._socket_ids = itertools.count(1)
        self._used: dict[uuid.UUID, datetime] = {}  # key id -> last use not yet written
        self._used_written: dict[uuid.UUID, float] = {}

    # --- management (the CLI) -----------------------------------------------------------------------
    async def create(self, name: str, limits: KeyLimits | None = None) -> CreatedKey:
        name = name.strip()
        if not name or len(name) > 200:
            raise ServiceError.single("INVALID_NAME", "a key needs a name of 1 to 200 characters", ["name"])
        limits = limits or KeyLimits()
        limits.check()
        token = new_token()
        key = ApiKey(id=uuid.uuid4(), name=name, prefix=token[:PREFIX_LENGTH], token_hash=hash_token(token))
        limits.apply(key)
        async with self._sessions.begin() as session:
            session.add(key)
        self._snapshot.active[key.token_hash] = key.id
        logger.info("API key created", extra={"key_id": str(key.id), "key_prefix": key.prefix})
        return CreatedKey(key=key, token=token)

    async def list_keys(self) -> list[ApiKey]:
        async with self._sessions() as session:
            return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).all())

    async def update(self, ident: str, limits: KeyLimits) -> ApiKey:
        """Change the limits of the key with this id or prefix; what `limits` leaves UNCHANGED stays."""
        limits.check()
        async with self._sessions.begin() as session:
            key = await self._find(session, ident)
            limits.apply(key)
        logger.info(
            "API key limits changed",
            extra={
                "key_id": str(key.id),
                "max_running": key.max_running,
                "budget": key.budget_amount,
                "period": key.budget_period,
            },
        )
        return key

    async def revoke(self, ident: str) -> ApiKey:
        """Revoke the key with this id or prefix (an already revoked key is returned as it is)."""
        async with self._sessions.begin() as session:
            key = await self._find(session, ident)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                logger.info("API key revoked", extra={"key_id": str(key.id), "key_prefix": key.prefix})
        await self.refresh(force=True)
        return key

    @staticmethod
    async def _find(session: AsyncSession, ident: str) -> ApiKey:
        """The one key with this id (or its first characters) or prefix, read in the caller's transaction."""
        ident = ident.strip()
        if not ident:
            raise NotFound("API key", ["key"])
        matches = [
            key
            for key in (await session.scalars(select(ApiKey))).all()
            if ident in (str(key.id), key.prefix) or (len(ident) >= 4 and str(key.id).startswith(ident.lower()))
        ]
        if not matches:
            raise NotFound("API key", ["key"])
        if len(matches) > 1:
            raise ServiceError.single("AMBIGUOUS", f"'{ident}' matches {len(matches)} keys; give the full id", ["key"])
        return matches[0]

    async def active_count(self) -> int:
        async with self._sessions() as session:
            return int(
                await session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))) or 0
            )

    # --- authentication -----------------------------------------------------------------------------
    async def viewer_for(self, token: str | None) -> Viewer:
        """The viewer a token stands for; the anonymous viewer on an open server when no token is given.

        Raises AuthError when a token is needed and missing, or when the token is not an active key.
        """
        await self._fresh()
        if token is None:
            if self._settings.access.auth_required or self._snapshot.active:
                raise AuthError("an API key is required: send Authorization: Bearer <token>")
            return Viewer.anonymous()
        digest = hash_token(token)
        key_id = self._snapshot.active.get(digest)
        if key_id is None:
            key_id = await self._lookup(digest)
            if key_id is None:
                raise AuthError("the API key is not valid (unknown or revoked)")
            self._snapshot.active[digest] = key_id
        self._used[key_id] = utcnow()
        return Viewer.key(key_id)

    async def keys_required(self) -> bool:
        """Whether callers need an API key now: AUTH_REQUIRED, or an active key in the snapshot."""
        await self._fresh()
        return self._settings.access.auth_required or bool(self._snapshot.active)

    async def _lookup(self, digest: str) -> uuid.UUID | None:
        async with self._sessions() as session:
            found = await session.scalar(
                select(ApiKey.id).where(ApiKey.token_hash == digest, ApiKey.revoked_at.is_(None))
            )
        return found

    async def _fresh(self) -> None:
        loaded = self._snapshot.loaded_at
        now = asyncio.get_running_loop().time()
        if loaded is not None and now - loaded < self._settings.access.auth_refresh_seconds:
            return
        try:
            await self.refresh()
        except Exception:
            if loaded is None:
                raise
            # The database is unreachable: keep answering from the last snapshot rather than fail every call.
            logger.warning("could not re-read the API keys; using the last known ones", exc_info=True)
            self._snapshot.loaded_at = now

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the active keys, then close the sockets that lost their right to stay open."""
        async with self._refresh_lock:
            now = asyncio.get_running_loop().time()
            loaded = self._snapshot.loaded_at
            if not force and loaded is not None and now - loaded < self._settings.access.auth_refresh_seconds / 2:
                return  # another caller refreshed while this one waited for the lock
            async with self._sessions() as session:
                rows = (
                    await session.execute(select(ApiKey.token_hash, ApiKey.id).where(ApiKey.revoked_at.is_(None)))
                ).all()
            self._snapshot = _Snapshot(active={digest: key_id for digest, key_id in rows}, loaded_at=now)
        await self._close_unauthorised_sockets()

    async def _close_unauthorised_sockets(self) -> None:
        active = self._snapshot.ids
        required = self._settings.access.auth_required or bool(active)
        doomed: list[tuple[_Socket, str]] = []
        for handle, socket in list(self._sockets.items()):
            if socket.owner_id is None and required:
                doomed.append((socket, "an API key is now required"))
            elif socket.owner_id is not None and socket.owner_id not in active:
                doomed.append((socket, "API key revoked"))
            else:
                continue
            del self._sockets[handle]
        if doomed:
            logger.info("closing WebSockets that lost their API key", extra={"sockets": len(doomed)})
            await asyncio.gather(*(socket.close(reason) for socket, reason in doomed), return_exceptions=True)

    async def log_access_mode(self) -> None:
        """Say at start-up whether /graphql is open, and what closes it."""
        await self.refresh(force=True)
        active = len(self._snapshot.ids)
        if active:
            logger.info("API keys required on /graphql", extra={"active_keys": active})
        elif self._settings.access.auth_required:
            logger.warning(
                "AUTH_REQUIRED is on but no API key exists: every request is refused until one is created "
                "with `darkroom api-key create --name NAME`"
            )
        else:
            logger.warning(
                "no API key exists: /graphql is open to anyone who can reach it; create one with "
                "`darkroom api-key create --name NAME` (or set AUTH_REQUIRED=true) to require keys"
            )

    # --- open sockets -------------------------------------------------------------------------------
    def register_socket(self, viewer: Viewer, close: CloseSocket) -> int:
        """Remember an accepted socket, to close it (with `close(reason)`) if its key is revoked."""
        handle = next(self._socket_ids)
        self._sockets[handle] = _Socket(owner_id=viewer.owner_id, close=close)
        return handle

    def forget_socket(self, handle: int) -> None:
        self._sockets.pop(handle, None)

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    # --- the background task ------------------------------------------------------------------------
    async def refresh_and_record_use(self) -> None:
        """One round of the background task (every AUTH_REFRESH_SECONDS): re-read the keys, write last use."""
        await self.refresh(force=True)
        await self._write_last_used()

    async def _write_last_used(self) -> None:
        now = asyncio.get_running_loop().time()
        due = {
            key_id: at
            for key_id, at in self._used.items()
            if now - self._used_written.get(key_id, float("-inf")) >= LAST_USED_RESOLUTION_SECONDS
        }
        if not due:
            return
        async with self._sessions.begin() as session:
            for key_id, at in due.items():
                await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
        for key_id in due:
            self._used.pop(key_id, None)
            self._used_written[key_id] = now
