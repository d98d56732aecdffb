"""The endpoints a key registers: their rules (URL, event types, ownership), secrets, replay, and the log of
their deliveries.

An endpoint belongs to the key that made it (None: the open server's anonymous caller) and is found only
through `Viewer.can_see`, so another key's endpoint is NOT_FOUND like one that does not exist. The signing
secret is returned by create and rotate only, never read back.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Event, WebhookDelivery, WebhookEndpoint, utcnow
from server.services.access.viewer import Viewer
from server.services.errors import FieldError, NotFound, ServiceError
from server.services.event_log.events import EventType
from server.services.webhooks_out.guard import UrlRefused, check_url
from server.settings import Settings

logger = logging.getLogger(__name__)

EVENT_TYPES = (EventType.CREATED, EventType.UPDATED, EventType.MEDIA_UPDATED)
MAX_DESCRIPTION = 500
DISABLED_BY_OWNER = "disabled by its owner"


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class WithSecret:
    """An endpoint, with its signing secret as it was just made (create, rotate)."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True, slots=True)
class Changes:
    """What updateWebhookEndpoint changes; None leaves a field as it is."""

    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


class EndpointService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessions = sessions

    # --- checks ------------------------------------------------------------------------------------------
    async def _checked_url(self, url: str) -> str:
        config = self._settings.webhooks_out
        try:
            await check_url(
                url,
                max_length=config.max_url_length,
                allow_private=config.allow_private_urls,
                resolve_seconds=config.timeout_seconds,
            )
        except UrlRefused as exc:
            code = "PRIVATE_URL" if exc.private else "INVALID_URL"
            raise ServiceError.single(code, str(exc), ["input", "url"]) from None
        return url

    @staticmethod
    def _checked_types(event_types: list[str] | None) -> list[str] | None:
        if event_types is None:
            return None
        unknown = [name for name in event_types if name not in EVENT_TYPES]
        if unknown:
            raise ServiceError(
                [
                    FieldError(
                        field=["input", "eventTypes"],
                        message=f"unknown event type {name[:80]!r}; known: {', '.join(EVENT_TYPES)}",
                        code="UNKNOWN_EVENT_TYPE",
                    )
                    for name in unknown[:5]
                ]
            )
        if not event_types:
            raise ServiceError.single(
                "INVALID_EVENT_TYPES", "give at least one event type, or none for all", ["input", "eventTypes"]
            )
        return list(dict.fromkeys(event_types))

    @staticmethod
    def _checked_description(description: str | None) -> str | None:
        if description is not None and (len(description) > MAX_DESCRIPTION or not description.isprintable()):
            raise ServiceError.single(
                "INVALID_DESCRIPTION",
                f"the description must be printable and at most {MAX_DESCRIPTION} characters",
                ["input", "description"],
            )
        return description

    @staticmethod
    async def _visible(session: AsyncSession, endpoint_id: uuid.UUID, viewer: Viewer) -> WebhookEndpoint:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or not viewer.can_see(endpoint.owner_id):
            raise NotFound("webhook endpoint", ["input", "id"])
        return endpoint

    # --- mutations ---------------------------------------------------------------------------------------
    async def create(
        self, viewer: Viewer, url: str, event_types: list[str] | None, description: str | None
    ) -> WithSecret:
        types = self._checked_types(event_types)
        description = self._checked_description(description)
        await self._checked_url(url)
        secret = new_secret()
        async with self._sessions.begin() as session:
            count = await session.scalar(
                select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.owner_id == viewer.owner_id)
                if viewer.owner_id is not None
                else select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.owner_id.is_(None))
            )
            limit = self._settings.webhooks_out.max_endpoints_per_key
            if int(count or 0) >= limit:
                raise ServiceError.single(
                    "TOO_MANY_ENDPOINTS", f"a key may register at most {limit} webhook endpoints", ["input"]
                )
            now = utcnow()
            endpoint = WebhookEndpoint(
                id=uuid.uuid4(),
                owner_id=viewer.owner_id,
                url=url,
                description=description,
                event_types=types,
                secret=secret,
                enabled=True,
                cursor=await self._newest_event_id(session),
                attempt=0,
                created_at=now,
                updated_at=now,
            )
            session.add(endpoint)
        logger.info("webhook endpoint registered", extra={"endpoint_id": str(endpoint.id)})
        return WithSecret(endpoint, secret)

    @staticmethod
    async def _newest_event_id(session: AsyncSession) -> int:
        # A new endpoint is sent what happens from now on; replay sends it the past.
        return int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)

    async def update(self, viewer: Viewer, endpoint_id: uuid.UUID, changes: Changes) -> WebhookEndpoint:
        types = self._checked_types(changes.event_types)
        description = self._checked_description(changes.description)
        if changes.url is not None:
            await self._checked_url(changes.url)
        async with self._sessions.begin() as session:
            endpoint = await self._visible(session, endpoint_id, viewer)
            now = utcnow()
            if changes.url is not None:
                endpoint.url = changes.url
            if changes.event_types is not None:
                endpoint.event_types = types
            if changes.description is not None:
                endpoint.description = description
            if changes.enabled is False and endpoint.enabled:
                endpoint.enabled = False
                endpoint.disabled_reason = DISABLED_BY_OWNER
                endpoint.disabled_at = now
            elif changes.enabled is True and not endpoint.enabled:
                endpoint.enabled = True
                _clear_failures(endpoint)
            endpoint.updated_at = now
        return endpoint

    async def rotate_secret(self, viewer: Viewer, endpoint_id: uuid.UUID) -> WithSecret:
        secret = new_secret()
        async with self._sessions.begin() as session:
            endpoint = await self._visible(session, endpoint_id, viewer)
            endpoint.secret = secret
            endpoint.updated_at = utcnow()
        logger.info("webhook endpoint secret rotated", extra={"endpoint_id": str(endpoint_id)})
        return WithSecret(endpoint, secret)

    async def delete(self, viewer: Viewer, endpoint_id: uuid.UUID) -> None:
        async with self._sessions.begin() as session:
            endpoint = await self._visible(session, endpoint_id, viewer)
            await session.delete(endpoint)
        logger.info("webhook endpoint deleted", extra={"endpoint_id": str(endpoint_id)})

    async def replay(self, viewer: Viewer, endpoint_id: uuid.UUID, after: int) -> WebhookEndpoint:
        """Send again everything after event `after` (0: the whole log), with a fresh retry state. A deliverer
        holding the endpoint notices the cursor moved and stops (its writes match the old cursor only)."""
        async with self._sessions.begin() as session:
            endpoint = await self._visible(session, endpoint_id, viewer)
            endpoint.cursor = after
            endpoint.attempt = 0
            endpoint.next_attempt_at = None
            endpoint.failing_since = None
            endpoint.updated_at = utcnow()
        logger.info("webhook endpoint replayed", extra={"endpoint_id": str(endpoint_id), "after": after})
        return endpoint

    # --- queries -----------------------------------------------------------------------------------------
    async def of(self, viewer: Viewer) -> list[WebhookEndpoint]:
        async with self._sessions() as session:
            statement = (
                select(WebhookEndpoint)
                .where(viewer.visible(WebhookEndpoint.owner_id))
                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
            )
            return list((await session.scalars(statement)).all())

    async def get(self, viewer: Viewer, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        async with self._sessions() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
        return endpoint if endpoint is not None and viewer.can_see(endpoint.owner_id) else None

    async def deliveries(
        self, viewer: Viewer, endpoint_id: uuid.UUID, *, before: int | None, limit: int
    ) -> tuple[list[WebhookDelivery], bool]:
        """The endpoint's delivery attempts, newest first, below the id `before`; and whether more follow."""
        if await self.get(viewer, endpoint_id) is None:
            raise NotFound("webhook endpoint", ["endpointId"])
        statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if before is not None:
            statement = statement.where(WebhookDelivery.id < before)
        async with self._sessions() as session:
            rows = list((await session.scalars(statement.order_by(WebhookDelivery.id.desc()).limit(limit + 1))).all())
        return rows[:limit], len(rows) > limit


def _clear_failures(endpoint: Any) -> None:
    endpoint.disabled_reason = None
    endpoint.disabled_at = None
    endpoint.attempt = 0
    endpoint.failing_since = None
    endpoint.next_attempt_at = None
