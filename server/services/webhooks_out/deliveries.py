"""Delivering the event log to endpoints: claims (leases), the events after a cursor, and each attempt's
outcome, written in one transaction with the attempt's row in `webhook_deliveries`.

One deliverer at a time holds an endpoint, as one downloader holds a file: a claim is one conditional
UPDATE that matches an enabled endpoint that is due, has events after its cursor, and is unclaimed or
whose lease ran out (on Postgres the candidate is picked with FOR UPDATE SKIP LOCKED). Every later write
matches the claim's token and the cursor it read, so a deliverer that lost its claim, or whose endpoint
was replayed meanwhile, changes nothing and stops. A failed attempt schedules the next one and releases
the claim: an endpoint in backoff holds no deliverer, and its state is in the database, so a restart
loses nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import ApiKey, Event, WebhookDelivery, WebhookEndpoint, utcnow
from server.db.session import is_postgres
from server.services.access.api_keys import ApiKeyService
from server.services.access.viewer import Viewer
from server.services.event_log.events import published_form
from server.settings import Settings

logger = logging.getLogger(__name__)

BATCH = 100
EXCERPT_CHARS = 200
GONE_REASON = "the endpoint answered 410 Gone"


@dataclass(slots=True)
class Claim:
    """An endpoint one deliverer holds, as it was when claimed; `cursor` follows what it delivered."""

    endpoint_id: uuid.UUID
    token: str
    owner_id: uuid.UUID | None
    url: str
    secret: str
    event_types: list[str] | None
    cursor: int
    attempt: int
    failing_since: datetime | None
    # Whose eyes the endpoint reads the log with: its key's, or the anonymous caller's while the server is open.
    viewer: Viewer

    def wants(self, event: dict[str, Any]) -> bool:
        return self.viewer.can_see(_owner(event)) and (self.event_types is None or event["type"] in self.event_types)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt to deliver one event came to."""

    event_id: int
    message_id: str
    status_code: int | None
    duration_ms: float
    response_excerpt: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt as recorded: the retry it scheduled, or why the endpoint was disabled."""

    attempt: int
    next_retry_at: datetime | None
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Lag:
    endpoint_id: uuid.UUID
    events: int
    seconds: float


def _owner(event: dict[str, Any]) -> uuid.UUID | None:
    owner = event.get("ownerId")
    return uuid.UUID(owner) if owner else None


def retry_delay(schedule: list[float], attempt: int) -> float:
    """The wait after the `attempt`-th failed try of an event (1 = the first); the schedule's last repeats."""
    return schedule[min(attempt, len(schedule)) - 1]


def excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    text = "".join(char if char.isprintable() else " " for char in text).strip()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


class DeliveryService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], api_keys: ApiKeyService) -> None:
        self._settings = settings
        self._sessions = sessions
        self._api_keys = api_keys

    async def _viewer(self, owner_id: uuid.UUID | None) -> Viewer:
        """An endpoint the open server's anonymous caller made sees nothing once keys are required: it would
        otherwise be sent every key's events."""
        if owner_id is not None:
            return Viewer.key(owner_id)
        return Viewer.nobody() if await self._api_keys.keys_required() else Viewer.anonymous()

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.webhooks_out.lease_seconds)

    # --- claims ------------------------------------------------------------------------------------------
    async def claim_next(self) -> Claim | None:
        """Take an endpoint that is due and has events after its cursor, or None when there is none."""
        now = utcnow()
        claimable = and_(
            WebhookEndpoint.enabled.is_(True),
            or_(WebhookEndpoint.next_attempt_at.is_(None), WebhookEndpoint.next_attempt_at <= now),
            or_(WebhookEndpoint.claimed_until.is_(None), WebhookEndpoint.claimed_until < now),
            exists(select(Event.id).where(Event.id > WebhookEndpoint.cursor)),
            # A revoked key's endpoints are sent nothing more.
            ~exists(select(ApiKey.id).where(ApiKey.id == WebhookEndpoint.owner_id, ApiKey.revoked_at.is_not(None))),
        )
        token = uuid.uuid4().hex
        async with self._sessions.begin() as session:
            candidate = select(WebhookEndpoint.id).where(claimable).order_by(WebhookEndpoint.created_at).limit(1)
            if is_postgres(session):
                candidate = candidate.with_for_update(skip_locked=True)
            row = (
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == candidate.scalar_subquery(), claimable)
                    .values(claim_token=token, claimed_until=self._lease_end(now))
                    .returning(
                        WebhookEndpoint.id,
                        WebhookEndpoint.owner_id,
                        WebhookEndpoint.url,
                        WebhookEndpoint.secret,
                        WebhookEndpoint.event_types,
                        WebhookEndpoint.cursor,
                        WebhookEndpoint.attempt,
                        WebhookEndpoint.failing_since,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).first()
        if row is None:
            return None
        types = row.event_types
        return Claim(
            endpoint_id=row.id,
            token=token,
            owner_id=row.owner_id,
            url=row.url,
            secret=row.secret,
            event_types=list(types) if types is not None else None,
            cursor=int(row.cursor),
            attempt=int(row.attempt),
            failing_since=row.failing_since,
            viewer=await self._viewer(row.owner_id),
        )

    def _held(self, claim: Claim) -> Any:
        """The endpoint, while `claim` still holds it and nobody moved its cursor (a replay)."""
        return and_(
            WebhookEndpoint.id == claim.endpoint_id,
            WebhookEndpoint.claim_token == claim.token,
            WebhookEndpoint.cursor == claim.cursor,
        )

    async def renew(self, claim: Claim) -> bool:
        """Extend the lease from now; False once the claim was lost (or the endpoint replayed, disabled)."""
        async with self._sessions.begin() as session:
            renewed = await session.execute(
                update(WebhookEndpoint)
                .where(self._held(claim), WebhookEndpoint.enabled.is_(True))
                .values(claimed_until=self._lease_end(utcnow()))
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(renewed, "rowcount", 0))

    async def release(self, claim: Claim) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == claim.endpoint_id, WebhookEndpoint.claim_token == claim.token)
                .values(claim_token=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    # --- the log -----------------------------------------------------------------------------------------
    async def events_after(self, claim: Claim) -> list[dict[str, Any]]:
        """The next events of the log after the claim's cursor, in log order, as published."""
        statement = select(Event).where(Event.id > claim.cursor).order_by(Event.id).limit(BATCH)
        async with self._sessions() as session:
            return [published_form(row) for row in (await session.scalars(statement)).all()]

    async def skip_to(self, claim: Claim, event_id: int) -> bool:
        """Move the cursor past events the endpoint is not sent (not its owner's, not of its types)."""
        async with self._sessions.begin() as session:
            moved = await session.execute(
                update(WebhookEndpoint)
                .where(self._held(claim))
                .values(cursor=event_id)
                .execution_options(synchronize_session=False)
            )
        if not getattr(moved, "rowcount", 0):
            return False
        claim.cursor = event_id
        return True

    # --- outcomes ----------------------------------------------------------------------------------------
    def _delivery(self, claim: Claim, attempt: Attempt, next_retry_at: datetime | None, now: datetime) -> Any:
        return WebhookDelivery(
            endpoint_id=claim.endpoint_id,
            event_id=attempt.event_id,
            message_id=attempt.message_id,
            attempt=claim.attempt + 1,
            status_code=attempt.status_code,
            response_excerpt=excerpt(attempt.response_excerpt),
            error=excerpt(attempt.error),
            duration_ms=round(attempt.duration_ms, 1),
            next_retry_at=next_retry_at,
            created_at=now,
        )

    async def delivered(self, claim: Claim, attempt: Attempt) -> bool:
        """Record a delivered event and move the cursor past it; False if the claim was lost meanwhile."""
        now = utcnow()
        async with self._sessions.begin() as session:
            session.add(self._delivery(claim, attempt, None, now))
            moved = await session.execute(
                update(WebhookEndpoint)
                .where(self._held(claim))
                .values(cursor=attempt.event_id, attempt=0, next_attempt_at=None, failing_since=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        if not getattr(moved, "rowcount", 0):
            return False
        claim.cursor, claim.attempt, claim.failing_since = attempt.event_id, 0, None
        return True

    async def failed(self, claim: Claim, attempt: Attempt) -> Failure:
        """Record a failed attempt, schedule the next try and release the claim; or disable the endpoint
        (410, or failing for longer than WEBHOOK_DISABLE_AFTER_SECONDS)."""
        config = self._settings.webhooks_out
        now = utcnow()
        tries = claim.attempt + 1
        failing_since = claim.failing_since or now
        disabled_reason: str | None = None
        if attempt.gone:
            disabled_reason = GONE_REASON
        elif (now - failing_since).total_seconds() > config.disable_after_seconds:
            disabled_reason = f"failing since {failing_since.isoformat()}, longer than WEBHOOK_DISABLE_AFTER_SECONDS"
        next_retry_at = None if disabled_reason else now + timedelta(seconds=retry_delay(config.retry_schedule, tries))
        values: dict[str, Any] = {
            "attempt": tries,
            "failing_since": failing_since,
            "next_attempt_at": next_retry_at,
            "claim_token": None,
            "claimed_until": None,
            "updated_at": now,
        }
        if disabled_reason:
            values |= {"enabled": False, "disabled_reason": disabled_reason, "disabled_at": now}
        async with self._sessions.begin() as session:
            session.add(self._delivery(claim, attempt, next_retry_at, now))
            await session.execute(
                update(WebhookEndpoint)
                .where(self._held(claim))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return Failure(attempt=tries, next_retry_at=next_retry_at, disabled_reason=disabled_reason)

    # --- watching and cleaning -----------------------------------------------------------------------------
    async def lag(self) -> list[Lag]:
        """How far each enabled endpoint is behind the log: events after its cursor (by id), and the age of
        the oldest of them."""
        now = utcnow()
        first_after = (
            select(func.min(Event.id)).where(Event.id > WebhookEndpoint.cursor).correlate(WebhookEndpoint)
        ).scalar_subquery()
        async with self._sessions() as session:
            newest = int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)
            rows = (
                await session.execute(
                    select(WebhookEndpoint.id, WebhookEndpoint.cursor, first_after).where(
                        WebhookEndpoint.enabled.is_(True)
                    )
                )
            ).all()
            pending = [row[2] for row in rows if row[2] is not None]
            created: dict[int, datetime] = {}
            if pending:
                found = await session.execute(select(Event.id, Event.created_at).where(Event.id.in_(pending)))
                created = {event_id: at for event_id, at in found}
        lags = []
        for endpoint_id, cursor, first in rows:
            since = created.get(first) if first is not None else None
            seconds = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
            lags.append(Lag(endpoint_id, max(0, newest - int(cursor)) if first is not None else 0, seconds))
        return lags

    async def delete_older_than(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Remove the delivery log's rows from before `cutoff` (the periodic cleanup)."""
        old = WebhookDelivery.created_at < cutoff
        if dry_run:
            async with self._sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(WebhookDelivery).where(old)) or 0)
        async with self._sessions.begin() as session:
            deleted = await session.execute(delete(WebhookDelivery).where(old))
        return int(getattr(deleted, "rowcount", 0) or 0)
