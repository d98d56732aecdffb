"""Everything a running Darkroom process holds, built once from Settings and shared by every layer.

The app's lifespan, the CLI and the tests all construct a Runtime, `start()` it and `stop()` it; no
module keeps global state of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import metrics
from server.db.migrate import upgrade
from server.db.session import create_engine, create_sessionmaker
from server.events import EventHub
from server.provider.replicate import ReplicateClient
from server.services.access.api_keys import ApiKeyService
from server.services.access.rate_limits import MutationRateLimiter
from server.services.catalogue.service import CatalogueService
from server.services.generations.event_log import StoredEventLog
from server.services.generations.launch import Launcher
from server.services.generations.service import GenerationService
from server.services.media.retention import RetentionService
from server.services.media.service import MediaService
from server.services.operations.alerts import FailureAlerts
from server.services.operations.stats import StatsService
from server.settings import Settings
from server.storage.compose import storage_from_settings

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.hub = EventHub(
            settings.broadcast_url,
            StoredEventLog(self.sessions),
            channel=settings.broadcast_channel,
            queue_size=settings.subscription_queue_size,
            tail_interval=settings.event_tail_interval_seconds,
            tail_batch_size=settings.event_tail_batch_size,
            check_seconds=settings.broadcast_check_seconds,
        )
        self.storage = storage_from_settings(settings)
        self.provider = ReplicateClient.from_settings(settings, on_request=metrics.observe_provider_request)
        self.alerts = FailureAlerts(settings.alert_failure_threshold, settings.alert_window_seconds)
        self.catalogue = CatalogueService(self.sessions, self.provider, settings)
        self.generations = GenerationService(settings, self.sessions, self.provider, self.publish, self.alerts)
        self.media = MediaService(settings, self.sessions, self.storage, self.publish)
        self.stats = StatsService(self.sessions)
        self.retention = RetentionService(settings, self.sessions, self.storage, self.publish)
        self.api_keys = ApiKeyService(settings, self.sessions)
        self.rate_limits = MutationRateLimiter.from_settings(settings)
        self.launcher = Launcher(settings, self.sessions, self.catalogue, self.generations, self.storage, self.provider)
        self._webhook_secret: str | None = None
        self.simulator: Any = None  # the embedded Replicate simulator, when one is mounted

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await upgrade(self.engine)
        await self.hub.start()
        metrics.watch_event_tailer(self.hub.tailer)

    async def stop(self) -> None:
        await self.catalogue.aclose()
        await self.hub.stop()
        await self.provider.aclose()
        await self.storage.aclose()
        await self.engine.dispose()

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            logger.exception("database check failed")
            return False

    async def webhook_secret(self) -> str:
        """REPLICATE_WEBHOOK_SECRET, else the account's secret fetched from the provider once."""
        if self.settings.replicate_webhook_secret:
            return self.settings.replicate_webhook_secret
        if self._webhook_secret is None:
            self._webhook_secret = await self.provider.get_webhook_secret()
        return self._webhook_secret

    async def publish(self, event: dict[str, Any]) -> None:
        """Announce an event once its transaction committed: subscribers everywhere read it from the log."""
        await self.hub.publish(event)
