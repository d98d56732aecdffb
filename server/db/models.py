"""The tables: generations, their media, the model catalogue, the event log and API keys.

Statuses are stored as plain strings (checked by the enums in `server.domain`), so that SQLite and
Postgres hold exactly the same schema and a new status needs no database enum migration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), uuid.UUID: Uuid()}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # Spend control: at most this many generations running at once (None: MAX_RUNNING_PER_KEY), and a
    # budget per period (None: no budget of its own).
    max_running: Mapped[int | None] = mapped_column(Integer)
    budget_amount: Mapped[float | None] = mapped_column(Float)
    budget_period: Mapped[str | None] = mapped_column(String(16))


class Generation(Base):
    """One job on the provider. It owns zero or more Media, one per output file."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_owner_created", "owner_id", "created_at", "id"),
        Index("ix_generations_status_next_poll", "status", "next_poll_at"),
        Index("ix_generations_created", "created_at", "id"),
        Index("ix_generations_status_owner_created", "status", "owner_id", "created_at", "id"),
        Index("ix_generations_owner_dispatched", "owner_id", "dispatched_at"),
        Index("ix_generations_history", "model_ref", "duration_bucket", "completed_at"),
        UniqueConstraint("provider", "provider_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    model_ref: Mapped[str] = mapped_column(String(200), index=True)
    model_version: Mapped[str | None] = mapped_column(String(100))
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    # Which provider runs it (its port's name), the job's id there (unique per provider; with model_ref, the
    # job's provider.types.JobRef), and its own status, as sent (up to provider.types.MAX_STATUS_LENGTH),
    # known to Darkroom or not.
    provider: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(100))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    logs: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float | None] = mapped_column(Float)
    # How many jobs wait ahead of it in the provider's queue while it waits there, where the provider says.
    queue_position: Mapped[int | None] = mapped_column(Integer)
    # Seconds the model ran, as the provider measured it (what it bills by); None until it says.
    predict_time: Mapped[float | None] = mapped_column(Float)
    # The caller's own small JSON, given at the start, to join the generation to its records.
    client_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Darkroom's own queue: why a QUEUED generation waits, and the earliest it may be tried again.
    queue_reason: Mapped[str | None] = mapped_column(String(200))
    queue_not_before: Mapped[datetime | None]
    # What the provider is to be sent, kept only while the generation waits in the queue: the stored
    # `input` masks secrets and names Darkroom's own media URLs.
    queued_input: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When it was sent to the provider: keys take turns by who was served longest ago.
    dispatched_at: Mapped[datetime | None]
    # What it cost, by the price table: an estimate until the provider's figures settle it.
    cost_amount: Mapped[float | None] = mapped_column(Float)
    cost_currency: Mapped[str | None] = mapped_column(String(8))
    cost_basis: Mapped[str | None] = mapped_column(String(32))
    cost_estimated: Mapped[bool | None] = mapped_column(Boolean)
    # Live progress (server.services.generations.progress): what the job is doing in words a UI shows, the
    # steps its progress lines count, when it is expected to finish and what that expectation rests on.
    phase: Mapped[str | None] = mapped_column(String(16))
    step: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    expected_finish_at: Mapped[datetime | None]
    eta_basis: Mapped[str | None] = mapped_column(String(16))
    # The input's size class (outputs, pixels, frames, seconds): its model's past runs of the same bucket
    # give its expected duration.
    duration_bucket: Mapped[str | None] = mapped_column(String(64))
    # The newest intermediate images the model yielded while it ran, stored by Darkroom (see
    # server.services.generations.previews), how many of the provider's intermediate outputs were seen, and
    # whether its model yields any (its outputs while it runs are previews, not its final files early).
    previews: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    previews_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    yields_previews: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The W3C trace context (traceparent) of the request that started it: the spans of its later updates,
    # in whatever process, link to that request's trace (server.telemetry).
    trace_context: Mapped[str | None] = mapped_column(String(200))
    source_media_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL", use_alter=True), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # The provider's own clock for the newest update applied: tie-breaker for out-of-order webhooks.
    provider_updated_at: Mapped[datetime | None]
    # Poller bookkeeping: when to look next, how often it has looked, and its claim.
    next_poll_at: Mapped[datetime | None]
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0)
    poll_claimed_until: Mapped[datetime | None]
    # Highest event sequence number appended for this generation.
    event_seq: Mapped[int] = mapped_column(Integer, default=0)

    media: Mapped[list[Media]] = relationship(
        back_populates="generation",
        foreign_keys="Media.generation_id",
        order_by="Media.position",
        cascade="all, delete-orphan",
        lazy="raise",
    )


@dataclass(slots=True)
class GenerationRow:
    """A generation's state as a plain object that no session tracks, under Generation's attribute names:
    every column but `input` and `queued_input` (large) and the poller's claim. The provider-update path on
    Postgres reads and writes these without the ORM; the fields are in the order it selects them."""

    id: uuid.UUID
    owner_id: uuid.UUID | None
    kind: str
    model_ref: str
    model_version: str | None
    status: str
    provider_id: str | None
    provider_status: str | None
    error: str | None
    logs: str | None
    progress: float | None
    predict_time: float | None
    source_media_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    provider_updated_at: datetime | None
    next_poll_at: datetime | None
    poll_attempts: int
    event_seq: int
    provider: str
    queue_position: int | None
    queue_reason: str | None
    queue_not_before: datetime | None
    dispatched_at: datetime | None
    cost_amount: float | None
    cost_currency: str | None
    cost_basis: str | None
    cost_estimated: bool | None
    client_metadata: dict[str, Any] | None = None
    phase: str | None = None
    step: int | None = None
    total_steps: int | None = None
    expected_finish_at: datetime | None = None
    eta_basis: str | None = None
    duration_bucket: str | None = None
    previews: list[dict[str, Any]] | None = None
    previews_seen: int = 0
    yields_previews: bool = False
    trace_context: str | None = None


# What the rules and snapshots of a generation accept: the mapped row, or its plain copy.
AnyGeneration = Generation | GenerationRow


class Media(Base):
    """One output file of a generation, image or video alike, and its download state."""

    __tablename__ = "media"
    __table_args__ = (
        UniqueConstraint("generation_id", "position"),
        Index("ix_media_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_media_owner_created", "owner_id", "created_at", "id"),
        Index("ix_media_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    source_url: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    content_type: Mapped[str | None] = mapped_column(String(100))
    byte_size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # The caller's own small JSON, given with an upload.
    client_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    download_attempts: Mapped[int] = mapped_column(Integer, default=0)
    download_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    # The download claim (lease): who holds it and until when; an expired lease may be taken over.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None]

    generation: Mapped[Generation] = relationship(back_populates="media", foreign_keys=[generation_id], lazy="raise")


class CatalogModel(Base):
    """The providers' models, cached: what `models` and `model(ref)` answer from.

    `ref` is written as its provider writes it; `version_id` is the version a start runs unless the
    caller pins one, None when the model runs by its name. `collections` are the provider's listings
    it is in (the adapter's `groups`).
    """

    __tablename__ = "models"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    collections: Mapped[list[str]] = mapped_column(JSON, default=list)
    version_id: Mapped[str | None] = mapped_column(String(100))
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    accepts_image: Mapped[bool] = mapped_column(Boolean, default=False)
    image_input_field: Mapped[str | None] = mapped_column(String(100))
    cover_image_url: Mapped[str | None] = mapped_column(Text)
    run_count: Mapped[int | None] = mapped_column(BigInteger)
    example: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def key(self) -> str:
        """ "provider:ref", which names the model whatever other provider has one of the same name."""
        return f"{self.provider}:{self.ref}"


class WebhookEndpoint(Base):
    """A URL a key has Darkroom send the event log to, as signed webhooks (server.services.webhooks_out).

    `cursor` is the id of the last event it was sent (or that its filter skipped): delivery reads the log
    after it, in order. `attempt` counts the tries of the event after it, next due at `next_attempt_at`;
    `failing_since` is when the first of those tries failed. One deliverer at a time holds an endpoint
    (`claim_token` until `claimed_until`), as one downloader holds a file.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_owner_created", "owner_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    # The event types it is sent (GENERATION_CREATED, GENERATION_UPDATED, MEDIA_UPDATED); None: all.
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None]
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One attempt to deliver one event to one endpoint: what it answered, how long it took, when the next
    try is due. `message_id` is the same on every attempt of an event, so a receiver can drop repeats."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[float] = mapped_column(Float)
    next_retry_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IdempotencyKey(Base):
    """A creating mutation's idempotency key, per caller (`scope`): the request's fingerprint, and the id of
    what the first call created (None while it is still in flight)."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(64))
    result_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Event(Base):
    """The append-only event log: one row per committed change, numbered per generation.

    `id` is the global, commit-ordered cursor of the `generationEvents` feed; `seq` orders a single
    generation's events and lets a subscriber drop what it already sent.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("generation_id", "seq"),
        Index("ix_events_owner_id", "owner_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
