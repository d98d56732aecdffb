"""Generations: starting them, applying the provider's updates, canceling and timing them out.

`apply_prediction_update` is the one door through which the provider's view of a job (a neutral
`PredictionUpdate`, from a webhook or from the poller) enters the database. It is idempotent and
monotonic: a duplicate changes nothing, an update older than what is stored is ignored, and terminal
states are final. The provider is reached only through its port (`server.provider.port.Provider`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import metrics, telemetry
from server.db.models import AnyGeneration, CatalogModel, Generation, GenerationRow, Media, utcnow
from server.db.session import driver_connection
from server.domain import VIDEO_EXTENSIONS, GenerationStatus, MediaKind, MediaStatus, generation_status_for
from server.log import generation_context
from server.provider.errors import ProviderError, ProviderRateLimitedError, never_reached
from server.provider.port import Provider
from server.provider.registry import Providers
from server.provider.types import JobRef, PredictionUpdate
from server.services.access.viewer import Viewer
from server.services.errors import FieldError, NotFound, ServiceError
from server.services.event_log.events import (
    EVENT_ORDER_LOCK,
    EventType,
    Publish,
    append_event,
    event_for,
    number_change,
)
from server.services.generations import eta
from server.services.generations.durations import DurationHistory, Durations, duration_bucket
from server.services.generations.previews import (
    PreviewService,
    previews_of,
    shows_new_output,
    take_new_output,
    yields_previews,
)
from server.services.generations.queue import GenerationQueue
from server.services.operations.alerts import FailureAlerts
from server.services.spend import costs
from server.services.spend.costs import Cost
from server.services.spend.service import SpendService
from server.settings import Settings

logger = logging.getLogger(__name__)


_STATE_COLUMNS = ", ".join(field.name for field in dataclasses.fields(GenerationRow))
_STATE_BY_PROVIDER_ID = f"SELECT {_STATE_COLUMNS} FROM generations WHERE provider = $1 AND provider_id = $2"
_STATE_BY_ID = f"SELECT {_STATE_COLUMNS} FROM generations WHERE id = $1"
# A provider update as one statement that commits by itself: the row is updated only if it is still the
# version that was read (same event_seq, which every change that matters bumps, and the same references
# that a deletion elsewhere may set to NULL), then the ordering lock is
# taken (after the row lock, as every writer does) and the event logged with the next id (see
# server.services.event_log.events). Each CTE reads the one before, which fixes that order. No row back: the row
# changed or went away meanwhile.
_UPDATE_AND_APPEND = """
WITH changed AS (
    UPDATE generations SET
        status = $3, provider_status = $4, provider_id = $5, model_version = $6, logs = $7, progress = $8,
        started_at = $9, completed_at = $10, provider_updated_at = $11, error = $12, poll_attempts = $13,
        next_poll_at = $14, event_seq = $15, updated_at = $16, predict_time = $22, queue_position = $23,
        cost_amount = $24, cost_currency = $25, cost_basis = $26, cost_estimated = $27, phase = $28, step = $29,
        total_steps = $30, expected_finish_at = $31, eta_basis = $32
    WHERE id = $1 AND event_seq = $2 AND owner_id IS NOT DISTINCT FROM $18::uuid
        AND source_media_id IS NOT DISTINCT FROM $21::uuid
    RETURNING id
), ordered AS MATERIALIZED (
    SELECT pg_advisory_xact_lock($17) FROM changed
)
INSERT INTO events (generation_id, owner_id, seq, type, payload, created_at)
SELECT $1, $18::uuid, $15, $19::varchar, $20::json, $16 FROM ordered
RETURNING id
"""


class UpdateOutcome(StrEnum):
    APPLIED = "applied"
    # News of progress alone, within PROGRESS_MIN_INTERVAL_SECONDS of the last change: not written, since a
    # later update repeats it (logs only grow).
    COALESCED = "coalesced"
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: UpdateOutcome
    generation_id: uuid.UUID | None = None
    status: GenerationStatus | None = None


def media_kind_for(url: str, default: str) -> str:
    path = urlparse(url).path.lower() if not url.startswith("data:") else url[5:40].lower()
    if path.endswith(VIDEO_EXTENSIONS) or path.startswith("video/"):
        return MediaKind.VIDEO
    if path.endswith((".png", ".jpg", ".jpeg", ".webp")) or path.startswith("image/"):
        return MediaKind.IMAGE
    return default


def incoming_status(generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool = False) -> GenerationStatus:
    """The status `update` gives `generation`: the provider's, read as Darkroom's, and TIMED_OUT when it is
    the provider stopping the job at its deadline (`at_deadline`, `Provider.stopped_by_deadline`)."""
    if at_deadline:
        return GenerationStatus.TIMED_OUT
    return generation_status_for(update.status, GenerationStatus(generation.status))


def decide(generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool = False) -> UpdateOutcome:
    """Whether `update` moves `generation` forward, repeats it, or lags behind it."""
    current = GenerationStatus(generation.status)
    incoming = incoming_status(generation, update, at_deadline)
    if current is GenerationStatus.QUEUED:
        return UpdateOutcome.STALE  # nothing of it was sent: no report can be about it
    if current.is_terminal:
        return UpdateOutcome.DUPLICATE if incoming == current else UpdateOutcome.STALE
    if incoming.rank < current.rank:
        return UpdateOutcome.STALE
    if incoming.rank > current.rank:
        return UpdateOutcome.APPLIED
    # Same non-terminal status: only more logs, a place nearer the front of the provider's queue, or a new
    # intermediate output are news. Logs and outputs only ever grow at the provider, and a queue only moves
    # forward.
    stored, given = generation.logs or "", update.logs or ""
    position, stored_position = update.queue_position, generation.queue_position
    nearer = position is not None and (stored_position is None or position < stored_position)
    if len(given) > len(stored) or (current is GenerationStatus.STARTING and nearer):
        return UpdateOutcome.APPLIED
    if shows_new_output(generation, update):
        return UpdateOutcome.APPLIED
    farther = position is not None and stored_position is not None and position > stored_position
    return UpdateOutcome.DUPLICATE if given == stored and not farther else UpdateOutcome.STALE


def progress_only(generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool = False) -> bool:
    """Whether `update`, news to `generation`, brings only more log lines (progress): no change of status,
    phase, place in the provider's queue or intermediate outputs."""
    current = GenerationStatus(generation.status)
    return (
        incoming_status(generation, update, at_deadline) == current
        and bool(generation.logs)
        and not shows_new_output(generation, update)
        and (update.queue_position is None or update.queue_position == generation.queue_position)
    )


@dataclass(slots=True)
class Applied:
    """What applying an update leaves to do besides the row: media rows to add, an intermediate output to
    fetch as a preview, preview files to remove."""

    media: list[Media]
    preview_url: str | None = None
    dropped_previews: list[str] = dataclasses.field(default_factory=list)

    @property
    def needs_lock(self) -> bool:
        return bool(self.media or self.preview_url or self.dropped_previews)


class GenerationService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        providers: Providers,
        publish: Publish,
        alerts: FailureAlerts | None = None,
        *,
        webhook_url: str | None = None,
        spend: SpendService | None = None,
        previews: PreviewService | None = None,
    ) -> None:
        """`webhook_url` is where a provider can report to this server, with "{provider}" for its name; None
        when the providers cannot reach us. `spend` holds each start to the budgets, and its prices settle
        each generation's cost as it finishes (None: no budgets, no costs are figured). `previews` fetches
        the intermediate outputs of running jobs (None: none are)."""
        self._spend = spend
        self._previews = previews
        self.durations = DurationHistory(sessions, settings.progress.eta_history_runs)
        self._prices = spend.prices if spend is not None else None
        self._settings = settings
        self._sessions = sessions
        self._providers = providers
        self._webhook_url = webhook_url
        self._publish = publish
        self._alerts = alerts
        self._queue = GenerationQueue(settings)
        # Set when a slot may have freed or a generation was queued: the queue's task then runs a round.
        self.queue_changed = asyncio.Event()
        bind = sessions.kw.get("bind")
        # On Postgres, provider updates take the short path of `_apply_in_one_statement` first.
        self._postgres: AsyncEngine | None = (
            bind if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql" else None
        )

    # --- reads -----------------------------------------------------------------------------------
    async def get(self, generation_id: uuid.UUID, viewer: Viewer) -> Generation:
        async with self._sessions() as session:
            generation = await session.get(Generation, generation_id)
            if generation is None or not viewer.can_see(generation.owner_id):
                raise NotFound("generation", ["id"])
            return generation

    async def estimate_duration(self, model: CatalogModel, given_input: dict[str, Any]) -> Durations | None:
        """How long starting `model` with `given_input` is expected to take, by its history here."""
        bucket = duration_bucket(model.input_schema, given_input)
        return await self.durations.of(model.provider, model.ref, bucket)

    # --- start -----------------------------------------------------------------------------------
    def webhook_url(self, provider: str, generation_id: uuid.UUID) -> str | None:
        if self._webhook_url is None:
            return None
        # The generation id rides along so a webhook that outruns our own commit still finds its row.
        return f"{self._webhook_url.format(provider=provider)}?generation={generation_id}"

    @staticmethod
    def refused(provider: Provider, exc: ProviderError) -> ServiceError:
        """The provider's refusal as userErrors, in the codes the provider's port gives it."""
        return ServiceError(
            [
                FieldError(refusal.field, refusal.message, refusal.code, refusal.retry_after_seconds)
                for refusal in provider.refusals(exc)
            ]
        )

    def _provider_of(self, generation: AnyGeneration) -> Provider:
        """The provider that runs `generation`; PROVIDER_NOT_CONFIGURED when this process has it no more."""
        try:
            return self._providers.get(generation.provider)
        except ProviderError as exc:
            raise ServiceError.single(exc.code, str(exc), ["id"]) from exc

    async def start(
        self,
        viewer: Viewer,
        model: CatalogModel,
        stored_input: dict[str, Any],
        *,
        provider_input: dict[str, Any] | None = None,
        source_media_id: uuid.UUID | None = None,
        version: str | None = None,
        cost: Cost | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Generation:
        """Create the generation, and send it to the model's provider now or queue it.

        Within the queue's limits (`server.services.generations.queue`) it is sent at once: the row is
        written first (so a webhook can find it), then the provider is asked; if it refuses, the row is
        deleted again and the refusal is raised as a ServiceError. Past a limit it is written QUEUED, and
        `dispatch_queued` sends it when a slot frees. A create the provider refused for its rate limit, or
        never received, waits QUEUED too, and is sent again after the wait the provider asked for.

        `version` pins the version that runs; without one, the model's own (None: it runs by its name).
        The generation records the version the provider says ran. The provider is given
        GENERATION_TIMEOUT_SECONDS as the job's deadline. `cost` is the start's estimate, held until the
        job settles. `metadata` is the caller's own (checked by the caller), stored as given.
        """
        try:
            provider = self._providers.get(model.provider)
        except ProviderError as exc:
            raise ServiceError.single(exc.code, str(exc), ["model"]) from exc
        sent_input = provider_input if provider_input is not None else stored_input
        generation = Generation(
            id=uuid.uuid4(),
            owner_id=viewer.owner_id,
            kind=model.kind,
            model_ref=model.ref,
            model_version=version or model.version_id,
            input=stored_input,
            status=GenerationStatus.STARTING,
            provider=provider.name,
            source_media_id=source_media_id,
            client_metadata=metadata,
            next_poll_at=utcnow() + timedelta(seconds=self._poll_after(provider.name)),
            dispatched_at=utcnow(),
            duration_bucket=duration_bucket(model.input_schema, stored_input),
            previews_seen=0,
            yields_previews=yields_previews(model.output_schema),
            # Whoever applies a later update, in any process, links its span to the span that started it.
            trace_context=telemetry.current_traceparent(),
        )
        telemetry.concerns(generation)
        costs.record(generation, cost)
        history = await self._history(generation)
        async with self._sessions.begin() as session:
            await self._queue.lock(session)
            if self._spend is not None:
                # Again under the lock every start takes, so that starts made together cannot pass a
                # budget together.
                await self._spend.hold_to_budgets(session, viewer, cost)
            wait_reason = await self._queue.wait_reason(session, viewer.owner_id)
            session.add(generation)
            if wait_reason is not None:
                generation.status = GenerationStatus.QUEUED
                generation.next_poll_at = generation.dispatched_at = None
                generation.queued_input = sent_input
                generation.queue_reason = wait_reason
                await session.flush()
                generation.queue_position = await self._queue.position_of(session, generation)
            eta.expect(generation, history, None, utcnow())
            if wait_reason is not None:
                event_id = await append_event(session, generation, [], EventType.CREATED)
        if wait_reason is not None:
            await self._publish(event_id)
            self.queue_changed.set()
            metrics.GENERATIONS_QUEUED.inc()
            logger.info(
                "generation queued",
                extra={"generation_id": str(generation.id), "model": model.ref, "reason": wait_reason},
            )
        else:
            await self._send(provider, generation, sent_input, first=True)
        return await self.get(generation.id, Viewer.system())

    async def _send(
        self, provider: Provider, generation: Generation, sent_input: dict[str, Any], *, first: bool
    ) -> None:
        """Send a STARTING `generation` to `provider` and record its job; `first` when its start is the
        caller's request, still waiting for the answer (else the queue sent it).

        A create the provider never received, or refused for its rate limit, puts it back in the queue. Any
        other refusal withdraws a first start (raised as a ServiceError: nothing is left of it) and fails a
        queued one. A create interrupted otherwise may have arrived, so it is never sent again: a first
        start is withdrawn (a job that did start is canceled by its first webhook, `cancel_withdrawn`); a
        queued one stays STARTING without a job, and the poller's deadline settles it.
        """
        try:
            with telemetry.span("darkroom.provider.create", _span_attributes(generation)):
                created = await provider.create(
                    model_ref=generation.model_ref,
                    version_id=generation.model_version,
                    input=sent_input,
                    webhook_url=self.webhook_url(provider.name, generation.id),
                    deadline_seconds=self._deadline_seconds,
                )
                telemetry.set_attributes({telemetry.PREDICTION_ID: created.prediction_id})
        except ProviderError as exc:
            if never_reached(exc):
                await self._queue_again(generation.id, exc, sent_input, first=first)
                return
            logger.warning("provider refused a prediction", extra={"model": generation.model_ref, "code": exc.code})
            if not first:
                await self._fail_unsent(generation.id, exc)
                return
            await self._withdraw(generation.id)
            raise self.refused(provider, exc) from exc
        except BaseException:
            if first:
                await self._withdraw(generation.id)
            raise
        async with self._sessions.begin() as session:
            row = await self._lock(session, generation.id)
            if row is None:
                return
            row.provider_id = created.prediction_id
            row.provider_status = row.provider_status or created.provider_status
            row.queue_position = created.queue_position
            row.model_version = created.version or row.model_version
            event_id = await append_event(session, row, [], EventType.CREATED if first else EventType.UPDATED)
        await self._publish(event_id)
        metrics.GENERATIONS_STARTED.labels(generation.model_ref, generation.kind).inc()
        logger.info(
            "generation started",
            extra={
                "generation_id": str(generation.id),
                "model": generation.model_ref,
                "prediction": created.prediction_id,
            },
        )
        if created.status is not GenerationStatus.STARTING:
            await self.apply_prediction_update(created, provider=provider.name)

    async def _withdraw(self, generation_id: uuid.UUID) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(Generation).where(Generation.id == generation_id))

    async def _queue_again(
        self, generation_id: uuid.UUID, exc: ProviderError, sent_input: dict[str, Any], *, first: bool
    ) -> None:
        """Put a generation whose create reached no job back in the queue, until the provider's wait is over."""
        wait = exc.retry_after_seconds if exc.retry_after_seconds is not None else self._settings.queue.retry_seconds
        cause = "is rate limiting" if isinstance(exc, ProviderRateLimitedError) else "could not be reached"
        async with self._sessions.begin() as session:
            await self._queue.lock(session)
            row = await self._lock(session, generation_id)
            if row is None or row.status != GenerationStatus.STARTING or row.provider_id is not None:
                return  # it ended meanwhile (its deadline passed)
            row.status = GenerationStatus.QUEUED
            row.next_poll_at = row.dispatched_at = None  # not served after all: its key's turn stands
            row.queued_input = sent_input
            row.queue_reason = f"the provider {cause}; it is sent again in {wait:.0f} s"
            row.queue_not_before = utcnow() + timedelta(seconds=wait)
            await session.flush()
            moved = await self._queue.moved(session, [row.owner_id])
            logged = [row, *(other for other in moved if other is not row)]
            await self._expect(session, logged)
            event_ids = [
                await append_event(session, each, [], EventType.CREATED if first and each is row else EventType.UPDATED)
                for each in logged
            ]
        for event_id in event_ids:
            await self._publish(event_id)
        metrics.GENERATIONS_REQUEUED.labels(exc.code).inc()
        logger.info(
            "the provider did not take a generation; it waits in the queue",
            extra={"generation_id": str(generation_id), "code": exc.code, "wait_seconds": wait},
        )

    async def _fail_unsent(self, generation_id: uuid.UUID, exc: ProviderError) -> None:
        """A queued generation the provider refused when its turn came: it ends FAILED with the refusal."""
        async with self._sessions.begin() as session:
            row = await self._lock(session, generation_id)
            if row is None or row.status != GenerationStatus.STARTING or row.provider_id is not None:
                return
            row.status = GenerationStatus.FAILED
            row.completed_at = utcnow()
            row.next_poll_at = None
            row.error = f"the provider refused it: {exc}"
            costs.never_sent(row)
            eta.expect(row, None, None, utcnow())
            event_id = await append_event(session, row, [], EventType.UPDATED)
        await self._publish(event_id)
        self._finished(row, GenerationStatus.FAILED)

    # --- the queue -------------------------------------------------------------------------------
    async def dispatch_queued(self) -> int:
        """One round of the queue: end what waited past GENERATION_TIMEOUT_SECONDS TIMED_OUT, then send what
        the free slots allow, together. Returns how many it sent."""
        async with self._sessions() as session:
            queued = select(Generation.id).where(Generation.status == GenerationStatus.QUEUED).limit(1)
            if await session.scalar(queued) is None:
                return 0  # the common case, without the queue's lock
        now = utcnow()
        async with self._sessions.begin() as session:
            await self._queue.lock(session)
            expired = await self._queue.overdue(session, now - timedelta(seconds=self._deadline_seconds))
            for row in expired:
                row.status = GenerationStatus.TIMED_OUT
                row.completed_at = now
                row.error = f"waited in the queue for {self._deadline_seconds:.0f} s without a free slot"
                row.queued_input = row.queue_position = row.queue_reason = row.queue_not_before = None
                costs.never_sent(row)
                eta.expect(row, None, None, now)
            claimed = await self._queue.claim(session, now)
            sends = [(row, dict(row.queued_input or row.input)) for row in claimed]
            for row in claimed:
                row.next_poll_at = now + timedelta(seconds=self._poll_after(row.provider))
                row.queued_input = None
            moved = await self._queue.moved(session, {row.owner_id for row in [*expired, *claimed]})
            await self._expect(session, [*claimed, *moved])
            event_ids = [await append_event(session, row, [], EventType.UPDATED) for row in [*expired, *moved]]
        for event_id in event_ids:
            await self._publish(event_id)
        for row in expired:
            self._finished(row, GenerationStatus.TIMED_OUT)
            logger.warning("a queued generation timed out", extra={"generation_id": str(row.id)})
        await asyncio.gather(*(self._send_queued(row, sent_input) for row, sent_input in sends))
        return len(sends)

    async def _send_queued(self, generation: Generation, sent_input: dict[str, Any]) -> None:
        with generation_context(str(generation.id)):
            try:
                await self._send(self._providers.get(generation.provider), generation, sent_input, first=False)
            except Exception:
                # One send's fault must not stop the others of its round, nor the queue's task.
                logger.exception("sending a queued generation failed", extra={"generation_id": str(generation.id)})

    async def _cancel_queued(self, generation_id: uuid.UUID) -> bool:
        """End a QUEUED generation CANCELED; nothing was sent, so the provider is not called. False when it
        is no longer queued."""
        async with self._sessions.begin() as session:
            await self._queue.lock(session)
            row = await self._lock(session, generation_id)
            if row is None or row.status != GenerationStatus.QUEUED:
                return False
            row.status = GenerationStatus.CANCELED
            row.completed_at = utcnow()
            row.error = "canceled while queued; it never reached the provider"
            row.queued_input = row.queue_position = row.queue_reason = row.queue_not_before = None
            costs.never_sent(row)
            eta.expect(row, None, None, utcnow())
            moved = await self._queue.moved(session, [row.owner_id])
            await self._expect(session, moved)
            event_ids = [await append_event(session, each, [], EventType.UPDATED) for each in [row, *moved]]
        for event_id in event_ids:
            await self._publish(event_id)
        self._finished(row, GenerationStatus.CANCELED)
        return True

    # --- provider updates ------------------------------------------------------------------------
    async def apply_prediction_update(
        self, update: PredictionUpdate, *, provider: str, generation_hint: uuid.UUID | None = None
    ) -> ApplyResult:
        """Bring the generation `provider` runs behind `update` up to date with it; see the module docstring."""
        attributes = {telemetry.PROVIDER: provider, telemetry.PREDICTION_ID: update.prediction_id}
        with telemetry.span("darkroom.generation.update", attributes):
            result = await self._apply_update(update, provider, generation_hint)
            telemetry.set_attributes({"darkroom.outcome": result.outcome.value})
            return result

    async def _apply_update(
        self, update: PredictionUpdate, provider: str, generation_hint: uuid.UUID | None
    ) -> ApplyResult:
        if self._postgres is not None:
            result = await self._apply_in_one_statement(self._postgres, update, provider, generation_hint)
            if result is not None:
                return result
        async with self._sessions() as session, session.begin():
            generation = await self._find_for_prediction(session, provider, update.prediction_id, generation_hint)
            if generation is None:
                return ApplyResult(UpdateOutcome.UNKNOWN)
            telemetry.concerns(generation)
            at_deadline = self._at_deadline(generation, update)
            outcome = self._decide(generation, update, at_deadline)
            if outcome is not UpdateOutcome.APPLIED:
                return ApplyResult(outcome, generation.id, GenerationStatus(generation.status))
            history = await self._history(generation, session)
            applied = self._apply(generation, update, at_deadline, history)
            session.add_all(applied.media)
            event_id = await append_event(session, generation, applied.media, EventType.UPDATED)
        return await self._applied(generation, update, event_id, applied)

    async def _apply_in_one_statement(
        self, engine: AsyncEngine, update: PredictionUpdate, provider: str, hint: uuid.UUID | None
    ) -> ApplyResult | None:
        """The common provider update on Postgres, in two statements and no explicit transaction.

        The generation is read without a lock and decided on; an applied update is then written and logged
        by one statement that checks the row is still the version read. None when the row changed meanwhile,
        or when the update adds media rows: then the caller applies it under the row lock instead.
        """
        async with driver_connection(engine) as connection:
            row = await connection.fetchrow(_STATE_BY_PROVIDER_ID, provider, update.prediction_id)
            if row is None and hint is not None:
                row = await connection.fetchrow(_STATE_BY_ID, hint)
                if row is not None and not _may_be(row["provider"], row["provider_id"], provider, update.prediction_id):
                    row = None
            if row is None:
                return ApplyResult(UpdateOutcome.UNKNOWN)
            generation = GenerationRow(*row)
            telemetry.concerns(generation)
            at_deadline = self._at_deadline(generation, update)
            outcome = self._decide(generation, update, at_deadline)
            if outcome is not UpdateOutcome.APPLIED:
                return ApplyResult(outcome, generation.id, GenerationStatus(generation.status))
            seen = generation.event_seq
            if previews_of(generation):
                return None  # its previews may be dropped: under the row lock, with the files' removal
            durations = self.durations
            known, history = durations.cached(generation.provider, generation.model_ref, generation.duration_bucket)
            if not known:
                return None  # read with the row, in the caller's transaction: this path holds a connection
            applied = self._apply(generation, update, at_deadline, history)
            if applied.needs_lock:
                return None
            now = number_change(generation)
            with telemetry.span("darkroom.event_log.append", {"darkroom.event_type": EventType.UPDATED}):
                _, encoded = event_for(generation, [], EventType.UPDATED, now)
                event_id = await connection.fetchval(
                    _UPDATE_AND_APPEND,
                    generation.id,
                    seen,
                    generation.status,
                    generation.provider_status,
                    generation.provider_id,
                    generation.model_version,
                    generation.logs,
                    generation.progress,
                    generation.started_at,
                    generation.completed_at,
                    generation.provider_updated_at,
                    generation.error,
                    generation.poll_attempts,
                    generation.next_poll_at,
                    generation.event_seq,
                    now,
                    EVENT_ORDER_LOCK,
                    generation.owner_id,
                    EventType.UPDATED,
                    encoded,
                    generation.source_media_id,
                    generation.predict_time,
                    generation.queue_position,
                    generation.cost_amount,
                    generation.cost_currency,
                    generation.cost_basis,
                    generation.cost_estimated,
                    generation.phase,
                    generation.step,
                    generation.total_steps,
                    generation.expected_finish_at,
                    generation.eta_basis,
                )
                telemetry.set_attributes({"darkroom.event_id": event_id})
        if event_id is None:
            return None
        return await self._applied(generation, update, event_id, applied)

    def _decide(self, generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool) -> UpdateOutcome:
        """`decide`, and progress alone coalesced to one change per PROGRESS_MIN_INTERVAL_SECONDS."""
        outcome = decide(generation, update, at_deadline)
        interval = self._settings.progress.progress_min_interval_seconds
        if (
            outcome is UpdateOutcome.APPLIED
            and interval > 0
            and (utcnow() - generation.updated_at).total_seconds() < interval
            and progress_only(generation, update, at_deadline)
        ):
            return UpdateOutcome.COALESCED
        return outcome

    async def _applied(
        self, generation: AnyGeneration, update: PredictionUpdate, event_id: int, applied: Applied
    ) -> ApplyResult:
        """After an update committed: publish its event, fetch a new preview, count a finish, log it."""
        status = GenerationStatus(generation.status)
        await self._publish(event_id)
        if self._previews is not None:
            if applied.preview_url is not None:
                self._previews.fetch_later(generation.id, applied.preview_url, generation.previews_seen)
            self._previews.remove_later(applied.dropped_previews)
        if status.is_terminal:
            self._finished(generation, status)
        logger.info(
            "generation updated",
            extra={
                "generation_id": str(generation.id),
                "status": status,
                "provider_status": update.provider_status,
            },
        )
        return ApplyResult(UpdateOutcome.APPLIED, generation.id, status)

    def _apply(
        self, generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool, history: Durations | None
    ) -> Applied:
        media = self._apply_state(generation, update, at_deadline)
        applied = Applied(media)
        reading = update.steps()
        if reading is not None and reading.step is not None:
            generation.step, generation.total_steps = reading.step, reading.total_steps
        eta.expect(generation, history, reading, utcnow())
        if GenerationStatus(generation.status).is_terminal:
            self._settle_cost(generation, len(media))
            if self._previews is not None:
                applied.dropped_previews = self._previews.settle(generation)
        elif self._previews is not None:
            applied.preview_url = take_new_output(generation, update, self._previews.keep)
        return applied

    def _settle_cost(self, generation: AnyGeneration, outputs: int) -> None:
        """Replace the estimate by what the finished job cost, where the price table prices its model."""
        price = self._prices.price_for(generation.provider, generation.model_ref) if self._prices else None
        if price is None:
            return
        cost = costs.settled(price, generation, outputs)
        if cost is not None:
            costs.record(generation, cost)

    def _apply_state(self, generation: AnyGeneration, update: PredictionUpdate, at_deadline: bool) -> list[Media]:
        now = utcnow()
        new_status = incoming_status(generation, update, at_deadline)
        generation.status = new_status
        generation.provider_status = update.provider_status
        generation.provider_id = generation.provider_id or update.prediction_id
        # The version that ran is the one the provider names (an official model's may move on).
        generation.model_version = update.version or generation.model_version
        if update.predict_time is not None:
            generation.predict_time = update.predict_time
        if new_status is not GenerationStatus.STARTING:
            generation.queue_position = None
        elif update.queue_position is not None:
            generation.queue_position = update.queue_position
        if update.logs is not None and len(update.logs) >= len(generation.logs or ""):
            generation.logs = update.logs
        if update.progress is not None:
            generation.progress = max(update.progress, generation.progress or 0.0)
        if new_status is not GenerationStatus.STARTING and generation.started_at is None:
            generation.started_at = update.started_at or now
        stamps = [t for t in (update.created_at, update.started_at, update.completed_at) if t]
        if stamps:
            generation.provider_updated_at = max(stamps)
        generation.poll_attempts = 0
        generation.next_poll_at = now + timedelta(seconds=self._poll_after(generation.provider))
        if not new_status.is_terminal:
            return []
        generation.completed_at = update.completed_at or now
        generation.next_poll_at = None
        if new_status is GenerationStatus.SUCCEEDED:
            urls = update.output_urls
            if not urls:
                generation.status = GenerationStatus.FAILED
                generation.error = (
                    "the provider removed the outputs before they could be downloaded"
                    if update.data_removed
                    else "the prediction succeeded without any output file"
                )
                return []
            generation.progress = 1.0
            return [
                Media(
                    id=uuid.uuid4(),
                    generation_id=generation.id,
                    owner_id=generation.owner_id,
                    position=position,
                    kind=media_kind_for(url, generation.kind),
                    status=MediaStatus.PENDING,
                    source_url=url,
                    created_at=now,
                    updated_at=now,
                )
                for position, url in enumerate(urls)
            ]
        if new_status is GenerationStatus.TIMED_OUT:
            generation.error = f"{self._timed_out_message()}; the provider stopped it at the deadline" + (
                f" ({update.error})" if update.error else ""
            )
            return []
        generation.error = update.error or (
            "canceled" if new_status is GenerationStatus.CANCELED else "the prediction failed"
        )
        return []

    # --- cancel and time out -----------------------------------------------------------------------
    async def cancel(self, generation_id: uuid.UUID, viewer: Viewer) -> Generation:
        generation = await self.get(generation_id, viewer)
        if generation.status == GenerationStatus.QUEUED:
            if await self._cancel_queued(generation_id):
                return await self.get(generation_id, viewer)
            generation = await self.get(generation_id, viewer)  # it left the queue meanwhile
        if GenerationStatus(generation.status).is_terminal:
            raise ServiceError.single(
                "ALREADY_FINISHED", f"the generation has already {generation.status.lower()}", ["id"]
            )
        if generation.provider_id is None:
            raise ServiceError.single("NOT_STARTED", "the generation has not reached the provider yet", ["id"])
        provider = self._provider_of(generation)
        try:
            with telemetry.span("darkroom.provider.cancel", _span_attributes(generation)):
                update = await provider.cancel(JobRef(generation.provider_id, generation.model_ref))
        except ProviderError as exc:
            raise self.refused(provider, exc) from exc
        await self.apply_prediction_update(update, provider=provider.name)
        return await self.get(generation_id, viewer)

    async def cancel_withdrawn(self, provider: Provider, update: PredictionUpdate, generation_id: uuid.UUID) -> bool:
        """Stop a job of `provider`'s whose generation no longer exists.

        When a create call fails without a clear answer (a 5xx or a dropped connection after the provider
        had started the work), `start` withdraws the row, yet the job may be running and billed. Its first
        signed webhook is still addressed to the withdrawn generation id, and this cancels it. Which model
        it runs is gone with the row: a provider that needs it to reach a job reports only its end by
        webhook (fal does), and an ended job needs no cancel.
        """
        if update.is_terminal:
            return False
        async with self._sessions() as session:
            if await session.get(Generation, generation_id) is not None:
                return False
        try:
            await provider.cancel(JobRef(update.prediction_id, model_ref=""))
        except ProviderError as exc:
            logger.warning(
                "could not cancel an orphaned prediction", extra={"prediction": update.prediction_id, "error": str(exc)}
            )
            return False
        logger.warning(
            "canceled a prediction whose generation was withdrawn",
            extra={"prediction": update.prediction_id, "generation_id": str(generation_id)},
        )
        return True

    async def time_out(self, generation_id: uuid.UUID) -> bool:
        """Mark a generation that ran too long TIMED_OUT and ask the provider to stop it."""
        async with self._sessions() as session, session.begin():
            generation = await self._lock(session, generation_id)
            if generation is None or GenerationStatus(generation.status).is_terminal:
                return False
            generation.status = GenerationStatus.TIMED_OUT
            generation.completed_at = utcnow()
            generation.next_poll_at = None
            generation.error = self._timed_out_message()
            self._settle_cost(generation, 0)
            eta.expect(generation, None, None, utcnow())
            dropped = self._previews.settle(generation) if self._previews is not None else []
            job = JobRef(generation.provider_id, generation.model_ref) if generation.provider_id else None
            event_id = await append_event(session, generation, [], EventType.UPDATED)
        await self._publish(event_id)
        if self._previews is not None:
            self._previews.remove_later(dropped)
        self._finished(generation, GenerationStatus.TIMED_OUT)
        logger.warning("generation timed out", extra={"generation_id": str(generation_id)})
        if job is not None:
            try:
                await self._provider_of(generation).cancel(job)
            except (ProviderError, ServiceError) as exc:
                logger.warning("could not cancel a timed-out prediction", extra={"error": str(exc)})
        return True

    # --- helpers ---------------------------------------------------------------------------------
    async def _history(self, generation: AnyGeneration, session: AsyncSession | None = None) -> Durations | None:
        """How long its model's runs of its input's size took here (the basis of an estimate before it runs)."""
        return await self.durations.of(generation.provider, generation.model_ref, generation.duration_bucket, session)

    async def _expect(self, session: AsyncSession, generations: list[Generation]) -> None:
        """Estimate again when each of `generations` will finish: their place in the queue changed."""
        now = utcnow()
        for generation in generations:
            eta.expect(generation, await self._history(generation, session), None, now)

    @property
    def _deadline_seconds(self) -> float:
        """How long a generation may take: the provider is told so on create, the poller checks it too."""
        return self._settings.poller.generation_timeout_seconds

    def _poll_after(self, provider: str) -> float:
        """How long after a change the poller asks about a running generation: when its webhooks are late
        (POLL_STALE_AFTER_SECONDS), or, for a provider whose webhooks report only the end, for its progress
        (POLL_PROGRESS_SECONDS)."""
        poller = self._settings.poller
        reports = provider not in self._providers or self._providers.get(provider).progress_by_webhook
        return poller.stale_after_seconds if reports else min(poller.progress_seconds, poller.stale_after_seconds)

    def _at_deadline(self, generation: AnyGeneration, update: PredictionUpdate) -> bool:
        """Whether `update` is the generation's provider stopping it at the deadline `start` gave it."""
        if generation.provider not in self._providers:
            return False
        elapsed = (utcnow() - generation.created_at).total_seconds()
        return self._providers.get(generation.provider).stopped_by_deadline(update, self._deadline_seconds, elapsed)

    def _timed_out_message(self) -> str:
        return f"timed out after {self._deadline_seconds:.0f} s without finishing"

    def _finished(self, generation: AnyGeneration, status: GenerationStatus) -> None:
        """Count a generation that has just reached `status` (terminal, so this runs once for it), and wake
        the queue, since it may have freed a slot."""
        self.queue_changed.set()
        model, kind = generation.model_ref, generation.kind
        if status is GenerationStatus.SUCCEEDED:
            self.durations.forget(model)
        metrics.GENERATIONS_FINISHED.labels(model, kind, status).inc()
        if generation.cost_estimated is False and generation.cost_amount is not None:
            metrics.SPEND.labels(model).inc(generation.cost_amount)
        if self._alerts is not None:
            self._alerts.generation_finished(model, kind, status)

    @staticmethod
    async def _lock(session: AsyncSession, generation_id: uuid.UUID) -> Generation | None:
        return (
            await session.scalars(select(Generation).where(Generation.id == generation_id).with_for_update())
        ).first()

    async def _find_for_prediction(
        self, session: AsyncSession, provider: str, provider_id: str, hint: uuid.UUID | None
    ) -> Generation | None:
        statement = select(Generation).where(Generation.provider == provider, Generation.provider_id == provider_id)
        found = (await session.scalars(statement.with_for_update())).first()
        if found is None and hint is not None:
            candidate = await self._lock(session, hint)
            if candidate is not None and _may_be(candidate.provider, candidate.provider_id, provider, provider_id):
                found = candidate
        return found


def _span_attributes(generation: AnyGeneration) -> dict[str, Any]:
    return {
        telemetry.GENERATION_ID: str(generation.id),
        telemetry.PREDICTION_ID: generation.provider_id,
        telemetry.MODEL: generation.model_ref,
        telemetry.PROVIDER: generation.provider,
    }


def _may_be(row_provider: str, row_job: str | None, provider: str, job: str) -> bool:
    """Whether a generation run by `row_provider` as `row_job` may be the one `provider`'s job `job` is
    of: the same provider, and the same job or none recorded yet (its create has not returned)."""
    return row_provider == provider and row_job in (None, job)
