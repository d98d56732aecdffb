"""The fallback poller: asks the provider about generations whose webhooks are late or lost.

Each cycle claims a batch of due generations through `PollClaims` (the service that owns those rows), then
asks the provider each one records about its job and hands the update to `apply_prediction_update`, the
same door webhooks use. A generation past the maximum run time is marked TIMED_OUT and canceled at its
provider. The first cycle
runs at start-up, so jobs that finished while the server was down are settled at once.
"""

from __future__ import annotations

import logging

from server import metrics, telemetry
from server.log import generation_context
from server.provider.errors import ProviderError, ProviderNotFoundError
from server.provider.registry import Providers
from server.services.generations.polls import Due, PollClaims
from server.services.generations.service import GenerationService
from server.settings import Settings

logger = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        settings: Settings,
        claims: PollClaims,
        providers: Providers,
        generations: GenerationService,
    ) -> None:
        self._settings = settings
        self._claims = claims
        self._providers = providers
        self._generations = generations

    async def poll_once(self) -> int:
        """Run one cycle; returns how many generations it looked at."""
        metrics.POLL_CYCLES.inc()
        due = await self._claims.claim_due()
        for item in due:
            with (
                generation_context(str(item.generation_id)),
                telemetry.span(
                    "darkroom.poll",
                    {telemetry.GENERATION_ID: str(item.generation_id), telemetry.PROVIDER: item.provider},
                    root=True,
                ),
            ):
                await self._poll(item)
        return len(due)

    async def _poll(self, item: Due) -> None:
        try:
            if item.overdue:
                await self._generations.time_out(item.generation_id)
                metrics.POLLED_PREDICTIONS.labels("timed_out").inc()
                return
            if item.job is None:
                return  # its start is still in flight; the deadline above settles it if it never lands
            with telemetry.span("darkroom.provider.get", {telemetry.PREDICTION_ID: _job_id(item)}):
                update = await self._providers.get(item.provider).get(item.job)
            result = await self._generations.apply_prediction_update(update, provider=item.provider)
            metrics.POLLED_PREDICTIONS.labels(result.outcome.value).inc()
        except ProviderNotFoundError:
            logger.warning("the provider does not know a prediction we track", extra={"prediction": _job_id(item)})
            metrics.POLLED_PREDICTIONS.labels("not_found").inc()
        except ProviderError as exc:
            logger.warning("poll failed", extra={"prediction": _job_id(item), "error": str(exc)})
            metrics.POLLED_PREDICTIONS.labels("error").inc()
        finally:
            await self._claims.release(item.generation_id)


def _job_id(item: Due) -> str | None:
    return item.job.id if item.job else None
