"""Everything a running Darkroom process holds, built once from Settings and shared by every layer.

The app's lifespan, the CLI and the tests all construct a Runtime, `start()` it and `stop()` it; no
module keeps global state of its own. This is also where the providers PROVIDERS names are composed
into a registry (`server.provider.registry.Providers`, `configured_providers`): each provider itself
with its token, else the simulator playing it; the services only know the providers' port, and are told
here what differs: whether the providers reach us (`server.reachability`), which decides both where
webhooks go and whether our own media URLs are sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import metrics
from server.db.migrate import upgrade
from server.db.session import create_engine, create_sessionmaker
from server.events import EventHub
from server.provider.adapters import ADAPTERS
from server.provider.port import Provider
from server.provider.registry import Providers
from server.provider.types import RequestHook
from server.reachability import reachability
from server.services.access.api_keys import ApiKeyService
from server.services.access.buckets import buckets_from_settings
from server.services.access.idempotency import IdempotencyService
from server.services.access.rate_limits import RateLimiter
from server.services.access.socket_caps import SocketCaps
from server.services.catalogue.service import CatalogueService
from server.services.creates import CreateService
from server.services.event_log.stored import StoredEventLog
from server.services.generations.launch import Launcher
from server.services.generations.polls import PollClaims
from server.services.generations.previews import PreviewService
from server.services.generations.service import GenerationService
from server.services.media.retention import RetentionService
from server.services.media.service import MediaService
from server.services.media.uploads import UploadService
from server.services.operations.alerts import FailureAlerts
from server.services.operations.stats import StatsService
from server.services.spend.prices import load_price_table
from server.services.spend.service import SpendService
from server.services.webhooks_out.deliveries import DeliveryService
from server.services.webhooks_out.endpoints import EndpointService
from server.settings import Settings
from server.storage.compose import storage_from_settings

if TYPE_CHECKING:
    from server.simulator.service import SimulatorCore

logger = logging.getLogger(__name__)


# The route each provider's webhooks are delivered to (server.http.webhooks), by its name.
WEBHOOK_PATH = "/webhooks/{provider}"


def configured_providers(
    settings: Settings, *, simulators: Mapping[str, SimulatorCore] | None = None, on_request: RequestHook | None = None
) -> list[Provider]:
    """The providers PROVIDERS names, the default first (see `Settings.provider_names`); each calls the
    simulator `simulators` holds for it, mounted in this process, when there is one."""
    simulators = simulators or {}
    return [
        ADAPTERS[name].build(settings, simulator=simulators.get(name), on_request=on_request)
        for name in settings.provider_names
    ]


class Runtime:
    def __init__(self, settings: Settings, providers: list[Provider] | None = None) -> None:
        """`providers` replace the ones `settings` describe (`configured_providers`); the first is the
        default."""
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.hub = EventHub(
            settings.events.broadcast_url,
            StoredEventLog(self.sessions),
            channel=settings.events.broadcast_channel,
            queue_size=settings.events.subscription_queue_size,
            replay_buffer=settings.events.replay_buffer_events,
            tail_interval=settings.events.tail_interval_seconds,
            tail_batch_size=settings.events.tail_batch_size,
            check_seconds=settings.events.broadcast_check_seconds,
        )
        self.storage = storage_from_settings(settings)
        self.providers = Providers(
            providers or configured_providers(settings, on_request=metrics.observe_provider_request)
        )
        self.alerts = FailureAlerts(
            settings.operations.alert_failure_threshold, settings.operations.alert_window_seconds
        )
        self.catalogue = CatalogueService(self.sessions, self.providers, settings)
        # Read once, here, so that a malformed price table stops the process at start (PriceTableError).
        self.prices = load_price_table(settings.spend.price_table_path)
        self.spend = SpendService(settings, self.sessions, self.prices)
        reach = reachability(settings)
        self.previews = PreviewService(settings, self.sessions, self.storage, self.publish)
        self.generations = GenerationService(
            settings,
            self.sessions,
            self.providers,
            self.publish,
            self.alerts,
            webhook_url=reach.webhook_url(WEBHOOK_PATH),
            spend=self.spend,
            previews=self.previews,
        )
        self.polls = PollClaims(settings, self.sessions)
        self.media = MediaService(settings, self.sessions, self.storage, self.publish)
        self.uploads = UploadService(settings, self.sessions, self.storage, self.publish)
        self.stats = StatsService(self.sessions, self.prices.currency)
        self.api_keys = ApiKeyService(settings, self.sessions)
        self.webhook_endpoints = EndpointService(settings, self.sessions)
        self.webhook_deliveries = DeliveryService(settings, self.sessions, self.api_keys)
        self.retention = RetentionService(
            settings, self.sessions, self.storage, self.publish, webhook_deliveries=self.webhook_deliveries
        )
        self.idempotency = IdempotencyService(settings, self.sessions)
        self.rate_limits = RateLimiter.from_settings(settings, buckets_from_settings(settings, self.engine))
        self.socket_caps = SocketCaps.from_settings(settings)
        self.launcher = Launcher(
            settings,
            self.sessions,
            self.catalogue,
            self.generations,
            self.storage,
            self.providers,
            own_urls_reachable=reach.own_urls,
            spend=self.spend,
        )
        self.creates = CreateService(settings, self.idempotency, self.launcher, self.generations, self.uploads)
        # The simulators this process mounts, by the provider each plays.
        self.simulators: dict[str, SimulatorCore] = {}
        # Background tasks this process is not ready without (see `workers_running`), by name.
        self._required_tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        if self.settings.database.migrate_on_start:
            await upgrade(self.engine)
        await self.hub.start()
        metrics.watch_event_tailer(self.hub.tailer)

    async def stop(self) -> None:
        await self.catalogue.aclose()
        await self.rate_limits.aclose()
        await self.previews.aclose()
        await self.hub.stop()
        await self.providers.aclose()
        await self.storage.aclose()
        await self.engine.dispose()

    def require_running(self, name: str, task: asyncio.Task[None]) -> None:
        """Report this process not ready (/readyz) should `task` end before the process stops."""
        self._required_tasks[name] = task

    def workers_running(self) -> dict[str, bool]:
        """Whether each required background task is still running, by name."""
        return {name: not task.done() for name, task in self._required_tasks.items()}

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            logger.exception("database check failed")
            return False

    async def publish(self, event_id: int) -> None:
        """Announce an event once its transaction committed: subscribers everywhere read it from the log."""
        await self.hub.publish(event_id)
