"""Every setting Darkroom reads, from the environment, grouped by the area it tunes.

Each setting is one field of a group (``settings.database.url``) and is read from one environment
variable, its alias (``DATABASE_URL``): the names operators set stay flat and stable however the groups
are arranged. Keyword arguments take the same names (``Settings(database_url=...)``). The README's
configuration table is checked against these declarations by a test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from server.provider.adapters import ADAPTERS
from server.settings_group import SettingsGroup


class ServerSettings(SettingsGroup):
    """Serving: address, public URL, files, logs, shutdown, the garbage collector and the event loop's monitor."""

    host: str = Field(
        "127.0.0.1", alias="HOST", description="Interface `darkroom serve` (and `darkroom worker`) binds to."
    )
    port: int = Field(8000, alias="PORT", description="Port `darkroom serve` (and `darkroom worker`) listens on.")
    public_url: str | None = Field(
        None,
        alias="PUBLIC_URL",
        description="Base URL the outside world reaches this server on (unset: the serving address). Media.url "
        "is built on it; Replicate is sent webhooks at PUBLIC_URL/webhooks/replicate and fetches media inputs "
        "from it. Unset, or on a host Replicate cannot reach (loopback, private, link-local, localhost, "
        "*.local, *.internal): no webhooks are requested (the poller carries every job) and media inputs are "
        "uploaded to Replicate's files API, or sent inline as data: URIs.",
    )
    public_url_reachable: bool = Field(
        False,
        alias="PUBLIC_URL_REACHABLE",
        description="The provider can reach PUBLIC_URL (or, unset, the serving address) although its host is "
        "local or private: a provider on the same network, such as a `darkroom simulator`. Webhooks and "
        "this server's own media URLs are used again. The embedded simulator needs no such setting.",
    )
    data_dir: Path = Field(Path("./var"), alias="DATA_DIR", description="Where the embedded defaults keep their files.")
    log_level: str = Field("INFO", alias="LOG_LEVEL", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        "text", alias="LOG_FORMAT", description="text (readable) or json (one object a line)."
    )
    shutdown_grace_seconds: int = Field(
        10,
        alias="SHUTDOWN_GRACE_SECONDS",
        description="On shutdown, how long open connections get to finish before they are closed.",
    )
    gc_thresholds: str = Field(
        "50000,20,100",
        alias="GC_THRESHOLDS",
        pattern=r"^\s*$|^\d+(,\d+){0,2}$",
        description="Python's garbage collector thresholds (gen0,gen1,gen2). Python's own 700,10,10 makes a "
        "process with many open subscriptions stall for a full collection every few events; empty keeps them.",
    )
    gc_freeze_after_subscribe_seconds: float = Field(
        0.5,
        alias="GC_FREEZE_AFTER_SUBSCRIBE_SECONDS",
        ge=0,
        description="Once new subscriptions stop opening for this long, their objects are frozen out of garbage "
        "collection, so the next event does not pay for scanning them; after many have closed, the garbage is "
        "collected at such a quiet moment (0: off).",
    )
    loop_monitor_interval_seconds: float = Field(
        0.05,
        alias="LOOP_MONITOR_INTERVAL_SECONDS",
        ge=0,
        description="How often the event loop's monitor wakes to measure how long the loop was held "
        "(darkroom_event_loop_lag_seconds, darkroom_event_loop_max_stall_seconds on /metrics; 0: off).",
    )
    loop_stall_warn_seconds: float = Field(
        0.5,
        alias="LOOP_STALL_WARN_SECONDS",
        ge=0,
        description="An event loop held longer than this is logged as a WARNING: every request and "
        "subscription of the process waited that long (0: never).",
    )


class DatabaseSettings(SettingsGroup):
    """The database and its connection pool."""

    url: str | None = Field(
        None,
        alias="DATABASE_URL",
        description="SQLAlchemy async URL. Unset: a SQLite file in DATA_DIR. "
        "Postgres: postgresql+asyncpg://user@host/db.",
    )
    pool_size: int = Field(10, alias="DATABASE_POOL_SIZE", description="Connections kept open per process (Postgres).")
    ping_idle_seconds: float = Field(
        1.0,
        alias="DATABASE_PING_IDLE_SECONDS",
        description="A pooled connection left idle longer than this is pinged before it is used again, and "
        "replaced if it is dead (Postgres); 0: pinged on every use.",
    )
    echo: bool = Field(False, alias="DATABASE_ECHO", description="Log every SQL statement (debugging).")
    migrate_on_start: bool = Field(
        True, alias="MIGRATE_ON_START", description="Apply database migrations when the server starts."
    )


class EventsSettings(SettingsGroup):
    """The event log's delivery: the broadcast doorbell, the tailer and subscriptions."""

    broadcast_url: str = Field(
        "memory://",
        alias="BROADCAST_URL",
        description="How processes tell each other that the event log has grown: memory:// (one process), "
        "postgres://user@host/db (LISTEN/NOTIFY) or redis://host:6379. Only that doorbell travels on it; "
        "events are read from the database.",
    )
    broadcast_channel: str = Field(
        "darkroom_events",
        alias="BROADCAST_CHANNEL",
        description="Channel name events are published on; deployments sharing one Redis or Postgres need "
        "different names.",
    )
    broadcast_check_seconds: float = Field(
        5.0,
        alias="BROADCAST_CHECK_SECONDS",
        gt=0,
        description="How often each process checks its BROADCAST_URL connection with a round trip; an "
        "unanswered check marks it down (/readyz 503) and reconnects.",
    )
    tail_interval_seconds: float = Field(
        1.0,
        alias="EVENT_TAIL_INTERVAL_SECONDS",
        gt=0,
        description="How often each process reads the event log without a doorbell: the longest a lost "
        "doorbell or a broker outage delays live delivery.",
    )
    tail_batch_size: int = Field(
        500, alias="EVENT_TAIL_BATCH_SIZE", gt=0, description="Events each read of the log fetches at most."
    )
    replay_buffer_events: int = Field(
        2_000,
        alias="EVENT_REPLAY_BUFFER_EVENTS",
        ge=0,
        description="Newest events each process keeps in memory, so that feed subscribers resuming from a cursor "
        "among them (a reconnect storm after a deploy) replay with no query at all.",
    )
    subscription_queue_size: int = Field(
        256,
        alias="SUBSCRIPTION_QUEUE_SIZE",
        description="Events buffered per subscriber before it is told it fell behind.",
    )
    subscriber_buffer_bytes: int = Field(
        1_048_576,
        alias="SUBSCRIBER_BUFFER_BYTES",
        gt=0,
        description="Unsent bytes a live WebSocket subscriber may have waiting on its socket before it is told "
        "it fell behind (SUBSCRIBER_OVERFLOW).",
    )
    subscription_render_cache_size: int = Field(
        1024,
        alias="SUBSCRIPTION_RENDER_CACHE_SIZE",
        gt=0,
        description="Executed subscription results kept per process, one per (document, variables, viewer, "
        "event): every subscriber alike reuses one execution and one encoding of each event.",
    )


class GraphQLSettings(SettingsGroup):
    """The GraphQL endpoint: pages, limits on documents, WebSockets and GraphiQL."""

    max_page_size: int = Field(100, alias="GRAPHQL_MAX_PAGE_SIZE", description="Largest `first` a connection accepts.")
    default_page_size: int = Field(
        20, alias="GRAPHQL_DEFAULT_PAGE_SIZE", description="Page size when `first` is omitted."
    )
    keep_alive_seconds: float = Field(
        15.0,
        alias="GRAPHQL_KEEP_ALIVE_SECONDS",
        description="WebSocket keep-alive ping interval, so idle sockets survive proxies.",
    )
    connection_init_timeout_seconds: float = Field(
        30.0,
        alias="GRAPHQL_CONNECTION_INIT_TIMEOUT_SECONDS",
        gt=0,
        description="How long a WebSocket may take to send connection_init before it is closed (4408), on "
        "graphql-transport-ws and graphql-ws alike.",
    )
    max_pending_sockets: int = Field(
        256,
        alias="MAX_PENDING_SOCKETS",
        gt=0,
        description="WebSockets one process holds open at once before their connection_init; past it a new "
        "socket is closed at once (1013, try again later).",
    )
    max_sockets_per_key: int = Field(
        500,
        alias="MAX_SOCKETS_PER_KEY",
        gt=0,
        description="Subscription streams one API key may hold open in each process (WebSockets and multipart "
        "streams alike; the open server's caller is not limited); past it a WebSocket is closed (1008) and a "
        "multipart stream is refused (429).",
    )
    max_depth: int = Field(12, alias="GRAPHQL_MAX_DEPTH", description="Deepest query accepted.")
    max_aliases: int = Field(30, alias="GRAPHQL_MAX_ALIASES", description="Most aliases a query may use.")
    max_tokens: int = Field(4000, alias="GRAPHQL_MAX_TOKENS", description="Most tokens a query document may have.")
    max_cost: int = Field(
        50_000,
        alias="GRAPHQL_MAX_COST",
        gt=0,
        description="Largest cost an operation may have, counted before it runs: each field counts once per item "
        "of the lists above it (a connection's `first`, else GRAPHQL_DEFAULT_PAGE_SIZE for any list).",
    )
    max_body_bytes: int = Field(
        1_000_000,
        alias="GRAPHQL_MAX_BODY_BYTES",
        description="Largest /graphql request body, and largest WebSocket message.",
    )
    document_cache_size: int = Field(
        256,
        alias="GRAPHQL_DOCUMENT_CACHE_SIZE",
        description="Parsed and validated query documents kept per process, and the plans of subscription documents "
        "(subscribers share them).",
    )
    ws_compression: bool = Field(
        False,
        alias="WS_COMPRESSION",
        description="Offer permessage-deflate on WebSockets. Events are small; compression costs about 48 KiB "
        "of memory per open socket.",
    )
    graphiql_enabled: bool = Field(
        True, alias="GRAPHIQL_ENABLED", description="Serve GraphiQL at /graphql to browsers."
    )


class AccessSettings(SettingsGroup):
    """Who may call: API keys, rate limits and CORS."""

    auth_required: bool = Field(
        False,
        alias="AUTH_REQUIRED",
        description="Require an API key on /graphql even before any exists. Off: the server is open while no "
        "active key exists, and closed as soon as one does.",
    )
    auth_refresh_seconds: float = Field(
        5.0,
        alias="AUTH_REFRESH_SECONDS",
        description="How often each process re-reads the API keys: a key revoked elsewhere (the CLI, another "
        "process) stops working, and its WebSockets close, within this time.",
    )
    rate_limit_mutations_per_minute: float = Field(
        60.0,
        alias="RATE_LIMIT_MUTATIONS_PER_MINUTE",
        description="Mutations one API key may make per minute, across every process sharing the Redis "
        "BROADCAST_URL or the PostgreSQL database (0: no limit). The open server's caller is not limited.",
    )
    rate_limit_mutations_burst: int = Field(
        20,
        alias="RATE_LIMIT_MUTATIONS_BURST",
        description="Mutations one API key may make in a burst before the per-minute rate applies.",
    )
    rate_limit_queries_per_minute: float = Field(
        1200.0,
        alias="RATE_LIMIT_QUERIES_PER_MINUTE",
        ge=0,
        description="Queries one API key may make per minute, shared like the mutation limit (0: no limit); "
        "past it a query is answered RATE_LIMITED with extensions.retryAfterSeconds.",
    )
    rate_limit_queries_burst: int = Field(
        300,
        alias="RATE_LIMIT_QUERIES_BURST",
        gt=0,
        description="Queries one API key may make in a burst before the per-minute rate applies.",
    )
    cors_origins: str = Field(
        "",
        alias="CORS_ORIGINS",
        description="Comma-separated origins browser pages may call the API from (https://app.example.com), "
        "or *. Empty: no cross-origin access.",
    )


# The providers Darkroom has an adapter for, in the order they are configured when none is chosen.
KNOWN_PROVIDERS = tuple(ADAPTERS)


class ProvidersSettings(SettingsGroup):
    """Which providers generations run on."""

    names: str | None = Field(
        None,
        alias="PROVIDERS",
        description="Comma-separated providers to run generations on: replicate, fal. Unset: each one whose "
        "token is set (REPLICATE_API_TOKEN, FAL_KEY); with neither, both, each played by its built-in "
        "simulator. A provider listed without its token is played by its simulator.",
    )
    default: str | None = Field(
        None,
        alias="DEFAULT_PROVIDER",
        description="The provider a model reference without a provider prefix is looked for at first. Unset: "
        "the first of PROVIDERS. Changing it never moves a running generation.",
    )

    @field_validator("names")
    @classmethod
    def _known_names(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = [name for name in _split_names(value) if name not in KNOWN_PROVIDERS]
            if unknown or not _split_names(value):
                raise ValueError(f"PROVIDERS names {', '.join(KNOWN_PROVIDERS)}, not {value!r}")
        return value

    @field_validator("default")
    @classmethod
    def _known_default(cls, value: str | None) -> str | None:
        if value is not None and value not in KNOWN_PROVIDERS:
            raise ValueError(f"DEFAULT_PROVIDER is one of {', '.join(KNOWN_PROVIDERS)}, not {value!r}")
        return value


def _split_names(text: str) -> list[str]:
    return [name.strip().lower() for name in text.split(",") if name.strip()]


class PollerSettings(SettingsGroup):
    """The fallback poller and the generation timeout."""

    enabled: bool = Field(True, alias="POLLER_ENABLED", description="Run the fallback poller in this process.")
    interval_seconds: float = Field(
        2.0, alias="POLL_INTERVAL_SECONDS", description="How often the poller looks for stale generations."
    )
    stale_after_seconds: float = Field(
        5.0, alias="POLL_STALE_AFTER_SECONDS", description="A running generation not updated for this long is polled."
    )
    progress_seconds: float = Field(
        2.0,
        alias="POLL_PROGRESS_SECONDS",
        gt=0,
        description="How often a running generation is polled when its provider's webhooks report only its end "
        "(fal's): its place in the queue, its logs and its progress come from the polls.",
    )
    backoff_max_seconds: float = Field(
        60.0, alias="POLL_BACKOFF_MAX_SECONDS", description="Longest wait between polls of one generation."
    )
    batch_size: int = Field(50, alias="POLL_BATCH_SIZE", description="Most generations one poll cycle fetches.")
    generation_timeout_seconds: float = Field(
        1800.0,
        alias="GENERATION_TIMEOUT_SECONDS",
        description="A generation running longer is TIMED_OUT and canceled; the provider gets it as its deadline.",
    )


class QueueSettings(SettingsGroup):
    """Darkroom's own queue: how many generations run at once (see `server.services.generations.queue`)."""

    max_running_per_key: int = Field(
        10,
        alias="MAX_RUNNING_PER_KEY",
        ge=1,
        description="Generations one API key (or the anonymous caller of an open server) runs at once; more "
        "wait QUEUED. `darkroom api-key create/update --max-running N` sets a key's own.",
    )
    max_running_total: int = Field(
        100, alias="MAX_RUNNING_TOTAL", ge=1, description="Generations all of Darkroom runs at once; more wait QUEUED."
    )
    interval_seconds: float = Field(
        1.0,
        alias="QUEUE_INTERVAL_SECONDS",
        gt=0,
        description="How often a process with POLLER_ENABLED looks for queued generations to start (a slot "
        "freed in this process starts the next at once).",
    )
    retry_seconds: float = Field(
        5.0,
        alias="QUEUE_RETRY_SECONDS",
        gt=0,
        description="How long a generation waits QUEUED before it is sent again when the provider refused it "
        "for its rate limit without saying how long to wait, or could not be reached.",
    )


class DownloadsSettings(SettingsGroup):
    """The media downloader."""

    enabled: bool = Field(True, alias="DOWNLOADER_ENABLED", description="Run the media downloader in this process.")
    concurrency: int = Field(4, alias="DOWNLOAD_CONCURRENCY", description="Downloads one process runs at once.")
    max_attempts: int = Field(5, alias="DOWNLOAD_MAX_ATTEMPTS", description="Attempts before a media row is FAILED.")
    retry_base_seconds: float = Field(
        1.0, alias="DOWNLOAD_RETRY_BASE_SECONDS", description="First download retry delay; doubles."
    )
    retry_max_seconds: float = Field(
        60.0, alias="DOWNLOAD_RETRY_MAX_SECONDS", description="Longest download retry delay."
    )
    lease_seconds: float = Field(
        120.0,
        alias="DOWNLOAD_LEASE_SECONDS",
        gt=0,
        description="How long a download claim holds unless renewed; a running download renews it every "
        "third of this, and one whose worker stopped is taken over once it runs out.",
    )
    timeout_seconds: float = Field(
        120.0,
        alias="DOWNLOAD_TIMEOUT_SECONDS",
        gt=0,
        description="Deadline of one download attempt, the whole fetch and store (also the longest wait for "
        "one read): a file still arriving then is cut off and the attempt retried.",
    )
    connect_timeout_seconds: float = Field(
        5.0,
        alias="DOWNLOAD_CONNECT_TIMEOUT_SECONDS",
        gt=0,
        description="Connect timeout to a file host, whichever provider's outputs it serves.",
    )
    max_bytes: int = Field(500_000_000, alias="DOWNLOAD_MAX_BYTES", description="Largest media file downloaded.")
    idle_seconds: float = Field(
        1.0, alias="DOWNLOAD_IDLE_SECONDS", description="How often an idle downloader looks for work."
    )


class MediaSettings(SettingsGroup):
    """Where media is kept, and the retention policy."""

    root: Path | None = Field(
        None, alias="MEDIA_ROOT", description="Where downloaded media files live. Unset: DATA_DIR/media."
    )
    storage_url: str | None = Field(
        None,
        alias="MEDIA_STORAGE_URL",
        description="Where media files are stored: file:///path (a directory) or s3://BUCKET/PREFIX "
        "(S3-compatible object storage; credentials and region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
        "and AWS_REGION, or the usual AWS credential chain). Unset: file:// of MEDIA_ROOT.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        alias="S3_ENDPOINT_URL",
        description="The S3 API's address for servers other than AWS (R2, B2, SeaweedFS, Garage...), "
        "addressed by path. Unset: AWS.",
    )
    s3_part_size_bytes: int = Field(
        8 * 1024 * 1024,
        alias="S3_PART_SIZE_BYTES",
        ge=5 * 1024 * 1024,
        description="Size of each part of a multipart upload to S3; a smaller file goes up in one request. "
        "At most two parts per download are held in memory.",
    )
    base_url: str | None = Field(
        None,
        alias="MEDIA_BASE_URL",
        description="Public base URL of the stored files (a CDN, or the bucket's public address): Media.url "
        "is MEDIA_BASE_URL/<key>, the key as the store names the object (with s3://BUCKET/PREFIX, PREFIX/<key>). "
        "Unset: Media.url points at this server's /media route.",
    )
    max_pixels: int = Field(
        50_000_000,
        alias="MEDIA_MAX_PIXELS",
        gt=0,
        le=89_478_485,  # Pillow's own decompression-bomb limit, which refuses past it regardless
        description="Most pixels of an image kept, downloaded or uploaded (all frames of an animated one "
        "counted; a video's frame likewise), read from its header before anything is decoded. The default "
        "takes a 48-megapixel photo and bounds an image's decoding to about 200 MB; at most 89478485.",
    )
    presign_seconds: float = Field(
        3600.0,
        alias="MEDIA_PRESIGN_SECONDS",
        gt=0,
        description="Lifetime of the presigned S3 URL a provider gets for an animateImage source image when "
        "neither MEDIA_BASE_URL nor PUBLIC_URL is set.",
    )
    retention_days: float | None = Field(
        None,
        alias="MEDIA_RETENTION_DAYS",
        description="Media files (and their rows) older than this are deleted by cleanup. Unset: kept.",
    )
    failed_generation_retention_days: float | None = Field(
        None,
        alias="FAILED_GENERATION_RETENTION_DAYS",
        description="FAILED, CANCELED and TIMED_OUT generations older than this are deleted by cleanup. Unset: kept.",
    )
    storage_cap_bytes: int | None = Field(
        None,
        alias="STORAGE_CAP_BYTES",
        description="Most bytes of media kept; cleanup deletes the oldest files above it. Unset: no cap.",
    )
    cleanup_enabled: bool = Field(
        False,
        alias="CLEANUP_ENABLED",
        description="Run the retention cleanup periodically in this process (`serve` or `worker`).",
    )
    cleanup_interval_seconds: float = Field(
        3600.0, alias="CLEANUP_INTERVAL_SECONDS", description="How often the periodic cleanup runs."
    )
    scratch_max_age_seconds: float = Field(
        3600.0,
        alias="SCRATCH_MAX_AGE_SECONDS",
        gt=0,
        description="Scratch files in the temporary directory (a download's local copy for the probe, an "
        "upload being checked) older than this were left by a process that died; cleanup removes them.",
    )


class UploadsSettings(SettingsGroup):
    """Media brought by the caller (the `uploadMedia` mutation)."""

    max_bytes: int = Field(
        50_000_000,
        alias="UPLOAD_MAX_BYTES",
        gt=0,
        description="Largest file `uploadMedia` accepts. A /graphql upload request may be this much larger "
        "than GRAPHQL_MAX_BODY_BYTES.",
    )
    max_video_seconds: float = Field(
        60.0, alias="UPLOAD_MAX_VIDEO_SECONDS", gt=0, description="Longest video `uploadMedia` accepts."
    )


class InputsSettings(SettingsGroup):
    """Limits on the input a client sends a model (startGeneration, animateImage)."""

    max_bytes: int = Field(
        500_000,
        alias="INPUT_MAX_BYTES",
        gt=0,
        description="Largest input, as compact JSON (a data: URI of a 256 KiB file is about 350 KB).",
    )
    max_string_chars: int = Field(
        10_000,
        alias="INPUT_MAX_STRING_CHARS",
        gt=0,
        description="Longest text value in an input (a prompt); a file input's URL is held to INPUT_MAX_BYTES only.",
    )
    max_array_items: int = Field(
        1_000, alias="INPUT_MAX_ARRAY_ITEMS", gt=0, description="Most items a list in an input may have."
    )
    max_depth: int = Field(
        16,
        alias="INPUT_MAX_DEPTH",
        gt=0,
        description="Deepest nesting of lists and objects in an input (the input itself is 1).",
    )
    max_number_digits: int = Field(
        50,
        alias="INPUT_MAX_NUMBER_DIGITS",
        gt=0,
        description="Most digits a number in an input may have, given as a number or as text (a whole number's "
        "exponent counts as digits).",
    )


class CreatesSettings(SettingsGroup):
    """The creating mutations (startGeneration, animateImage, uploadMedia): idempotency keys and client metadata."""

    idempotency_key_ttl_seconds: float = Field(
        86400.0,
        alias="IDEMPOTENCY_KEY_TTL_SECONDS",
        gt=0,
        description="How long an idempotencyKey is remembered: a repeat within this time returns the first "
        "call's result; after it the key is free again, and cleanup deletes it.",
    )
    idempotency_wait_seconds: float = Field(
        60.0,
        alias="IDEMPOTENCY_WAIT_SECONDS",
        gt=0,
        description="How long a repeat waits for the first call with its idempotencyKey to finish before it is "
        "answered IDEMPOTENCY_KEY_IN_FLIGHT (try again).",
    )
    metadata_max_bytes: int = Field(
        4096,
        alias="METADATA_MAX_BYTES",
        gt=0,
        description="Largest `metadata` a create takes, as compact JSON.",
    )


class SimulatorSettings(SettingsGroup):
    """The built-in Replicate simulator."""

    run_seconds: float = Field(3.0, alias="SIMULATOR_RUN_SECONDS", description="How long a simulated prediction runs.")
    fail_rate: float = Field(
        0.0, alias="SIMULATOR_FAIL_RATE", description="Share of simulated predictions that fail (0-1)."
    )
    webhook_drop_rate: float = Field(
        0.0, alias="SIMULATOR_WEBHOOK_DROP_RATE", description="Share of simulator webhooks never sent."
    )
    webhook_duplicate_rate: float = Field(
        0.0, alias="SIMULATOR_WEBHOOK_DUPLICATE_RATE", description="Share of simulator webhooks sent twice."
    )
    webhook_reorder: bool = Field(
        False, alias="SIMULATOR_WEBHOOK_REORDER", description="Deliver simulator webhooks out of order."
    )
    webhook_delay_ms: int = Field(
        0, alias="SIMULATOR_WEBHOOK_DELAY_MS", description="Delay before each simulator webhook."
    )
    download_failures: int = Field(
        0,
        alias="SIMULATOR_DOWNLOAD_FAILURES",
        description="Times each simulated output file answers 500 before it serves.",
    )
    output_ttl_seconds: float = Field(
        3600.0, alias="SIMULATOR_OUTPUT_TTL_SECONDS", description="Lifetime of simulated outputs."
    )
    webhook_secret: str | None = Field(
        None,
        alias="SIMULATOR_WEBHOOK_SECRET",
        description="The simulator's webhook signing secret (whsec_ + base64). Unset: a random one each time "
        "it starts (the embedded simulator takes REPLICATE_WEBHOOK_SECRET when that is set).",
    )
    api_token: str | None = Field(
        None,
        alias="SIMULATOR_API_TOKEN",
        description="The simulator's own bearer token, never a Darkroom API key. The embedded simulator requires "
        "it (unset: a random one held in the process) on everything but its files once an API key exists or "
        "AUTH_REQUIRED is on; `darkroom simulator` requires it whenever set; Darkroom sends it to a simulator "
        "at REPLICATE_API_BASE_URL.",
    )
    port: int = Field(8001, alias="SIMULATOR_PORT", description="Port `darkroom simulator` listens on.")


class CatalogueSettings(SettingsGroup):
    """The model catalogue."""

    ttl_seconds: float = Field(
        3600.0,
        alias="CATALOGUE_TTL_SECONDS",
        description="How long a cached catalogue entry is fresh. Older ones are still served (marked stale) "
        "while they are refreshed in the background.",
    )
    default_video_model: str | None = Field(
        None,
        alias="DEFAULT_VIDEO_MODEL",
        description="Model animateImage uses when none is given (owner/name). Unset, a model taking no image, "
        "or one whose required inputs the caller left out: the catalogue's best image-to-video model that can run.",
    )
    negative_ttl_seconds: float = Field(
        60.0,
        alias="CATALOGUE_NEGATIVE_TTL_SECONDS",
        ge=0,
        description="How long a model reference the provider said does not exist is answered as unknown "
        "without asking the provider again, in each process (0: always ask). Concurrent lookups of one "
        "reference share a call.",
    )


class OperationsSettings(SettingsGroup):
    """Alerts on repeated failures."""

    alert_failure_threshold: int = Field(
        5,
        alias="ALERT_FAILURE_THRESHOLD",
        description="Failed generations of one model, or failed downloads, within ALERT_WINDOW_SECONDS that log "
        "an alert WARNING (0: never).",
    )
    alert_window_seconds: float = Field(
        900.0, alias="ALERT_WINDOW_SECONDS", description="The window ALERT_FAILURE_THRESHOLD counts failures in."
    )


class SpendSettings(SettingsGroup):
    """What generations cost: the price table, estimates and the global budget."""

    price_table_path: Path | None = Field(
        None,
        alias="PRICE_TABLE_PATH",
        description="The TOML price table generations are costed by (unset: the one shipped with Darkroom, "
        "server/services/spend/prices.toml). A model it does not price has no cost; a malformed table stops "
        "the server at start, naming the problem.",
    )
    cost_history_runs: int = Field(
        20,
        alias="COST_HISTORY_RUNS",
        ge=1,
        description="A model priced by run time is estimated from the median predict time of its last this "
        "many succeeded generations here (no history: no estimate).",
    )
    budget_amount: float | None = Field(
        None,
        alias="BUDGET_AMOUNT",
        gt=0,
        description="Global budget per BUDGET_PERIOD, in the price table's currency: a start whose estimate "
        "would take everyone's spend in the period past it is refused with BUDGET_EXCEEDED (unset: none).",
    )
    budget_period: Literal["day", "week", "month"] = Field(
        "month",
        alias="BUDGET_PERIOD",
        description="The calendar period (UTC) BUDGET_AMOUNT counts spend over: day, week (from Monday) or month.",
    )


class ProgressSettings(SettingsGroup):
    """Live progress: how often progress is pushed, estimates of time left, and previews."""

    progress_min_interval_seconds: float = Field(
        0.0,
        alias="PROGRESS_MIN_INTERVAL_SECONDS",
        ge=0,
        description="Coalesce a generation's progress-only changes (more log lines, a step) to at most one "
        "per this many seconds; a change of status, of media or of previews is never held back (0: every "
        "change is pushed).",
    )
    eta_history_runs: int = Field(
        20,
        alias="ETA_HISTORY_RUNS",
        ge=1,
        description="Time left before a generation runs is estimated from the medians of its model's last this "
        "many succeeded runs with inputs of the same size (fewer than 3: no estimate).",
    )
    previews_per_generation: int = Field(
        3,
        alias="PREVIEWS_PER_GENERATION",
        ge=0,
        description="The newest intermediate images kept of a running generation (0: no previews are fetched).",
    )
    preview_max_bytes: int = Field(
        2_000_000,
        alias="PREVIEW_MAX_BYTES",
        ge=1,
        description="A larger intermediate image is not kept as a preview.",
    )
    previews_keep_after_settle: bool = Field(
        False,
        alias="PREVIEWS_KEEP_AFTER_SETTLE",
        description="Keep a generation's previews once it has finished (false: they are deleted as it settles).",
    )


class WebhooksOutSettings(SettingsGroup):
    """Outgoing webhooks: the event log sent to the endpoints keys register, signed (Standard Webhooks)."""

    enabled: bool = Field(
        True,
        alias="WEBHOOKS_OUT_ENABLED",
        description="Run the outgoing webhook deliverer in this process (`serve` or `worker`).",
    )
    allow_private_urls: bool = Field(
        False,
        alias="WEBHOOKS_ALLOW_PRIVATE_URLS",
        description="Let endpoints be on loopback, private, link-local or other non-public addresses (false: "
        "refused at registration and at every connection).",
    )
    timeout_seconds: float = Field(
        5.0,
        alias="WEBHOOK_TIMEOUT_SECONDS",
        gt=0,
        description="Deadline of one delivery attempt (connect, send and answer); a slower one has failed.",
    )
    retry_schedule_seconds: str = Field(
        "5,300,1800,7200,18000,36000,36000",
        alias="WEBHOOK_RETRY_SCHEDULE_SECONDS",
        pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$",
        description="Waits before each retry of an event an endpoint did not take, comma-separated seconds; "
        "the last one repeats.",
    )
    disable_after_seconds: float = Field(
        5 * 86400.0,
        alias="WEBHOOK_DISABLE_AFTER_SECONDS",
        gt=0,
        description="An endpoint failing without a break for longer than this is disabled (one answering 410 at once).",
    )
    concurrency: int = Field(
        16, alias="WEBHOOK_CONCURRENCY", ge=1, description="Endpoints one process delivers to at once."
    )
    lease_seconds: float = Field(
        60.0,
        alias="WEBHOOK_LEASE_SECONDS",
        gt=0,
        description="How long a deliverer's claim on an endpoint holds unless renewed (before each attempt); "
        "one whose process died is taken over once it runs out. Keep it well above WEBHOOK_TIMEOUT_SECONDS.",
    )
    interval_seconds: float = Field(
        1.0,
        alias="WEBHOOK_INTERVAL_SECONDS",
        gt=0,
        description="How often the deliverer looks for endpoints due (new events also wake it at once).",
    )
    delivery_retention_seconds: float = Field(
        7 * 86400.0,
        alias="WEBHOOK_DELIVERY_RETENTION_SECONDS",
        gt=0,
        description="Delivery attempts (webhookDeliveries) older than this are deleted by the periodic cleanup.",
    )
    max_endpoints_per_key: int = Field(
        20, alias="WEBHOOK_MAX_ENDPOINTS_PER_KEY", ge=1, description="Endpoints one API key may register."
    )
    max_url_length: int = Field(
        2000, alias="WEBHOOK_MAX_URL_LENGTH", ge=20, description="Longest endpoint URL accepted."
    )

    @property
    def retry_schedule(self) -> list[float]:
        return [float(part) for part in self.retry_schedule_seconds.split(",")]


G = TypeVar("G", bound=SettingsGroup)


class CoreSettings(BaseSettings):
    """Every setting but the providers' own groups, which `Settings` adds, one per adapter, by its name."""

    model_config = SettingsConfigDict(extra="ignore")

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    graphql: GraphQLSettings = Field(default_factory=GraphQLSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    providers: ProvidersSettings = Field(default_factory=ProvidersSettings)
    poller: PollerSettings = Field(default_factory=PollerSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    downloads: DownloadsSettings = Field(default_factory=DownloadsSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    uploads: UploadsSettings = Field(default_factory=UploadsSettings)
    inputs: InputsSettings = Field(default_factory=InputsSettings)
    creates: CreatesSettings = Field(default_factory=CreatesSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)
    spend: SpendSettings = Field(default_factory=SpendSettings)
    progress: ProgressSettings = Field(default_factory=ProgressSettings)
    webhooks_out: WebhooksOutSettings = Field(default_factory=WebhooksOutSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keywords first, then the flat environment variables; both are sorted into groups below.
        return init_settings, FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _sort_into_groups(cls, data: Any) -> Any:
        """Put each flat name (DATABASE_URL, or database_url as a keyword) into its group's field."""
        if not isinstance(data, dict):
            return data
        grouped: dict[str, Any] = {}
        for key, value in data.items():
            name = key.upper()
            group = ENVIRONMENT_NAMES.get(name)
            if group is None:
                grouped[key] = value
                continue
            values = grouped.setdefault(group, {})
            if isinstance(values, dict):
                # By its variable's name, so that an error names what the operator set (server.PORT).
                values.setdefault(name, value)
        return grouped

    @model_validator(mode="after")
    def _default_is_configured(self) -> CoreSettings:
        default = self.providers.default
        if default is not None and default not in self.provider_names:
            configured = ", ".join(self.provider_names)
            raise ValueError(f"DEFAULT_PROVIDER {default!r} is not one of the providers configured ({configured})")
        return self

    # --- derived ------------------------------------------------------------------------------------
    def group(self, kind: type[G]) -> G:
        """A provider's settings group, by its class (each adapter reads its own this way)."""
        for value in self.__dict__.values():
            if isinstance(value, kind):
                return value
        raise KeyError(kind.__name__)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database.url:
            return normalize_database_url(self.database.url)
        return f"sqlite+aiosqlite:///{(self.server.data_dir / 'darkroom.db').resolve()}"

    @property
    def resolved_media_root(self) -> Path:
        return (self.media.root or self.server.data_dir / "media").resolve()

    @property
    def resolved_media_storage_url(self) -> str:
        return self.media.storage_url or self.resolved_media_root.as_uri()

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    def base_url(self) -> str:
        """Where this server is reached: PUBLIC_URL, else the address it serves on."""
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::", "") else self.server.host
        return f"http://{host}:{self.server.port}"

    def allowed_cors_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.access.cors_origins.split(",") if origin.strip()]

    @property
    def provider_names(self) -> list[str]:
        """The providers generations run on (see PROVIDERS), the default first."""
        if self.providers.names:
            names = list(dict.fromkeys(_split_names(self.providers.names)))
        else:
            names = [name for name, adapter in ADAPTERS.items() if adapter.has_token(self)] or list(ADAPTERS)
        default = self.providers.default
        return [default, *(name for name in names if name != default)] if default in names else names

    def embeds(self, provider: str) -> bool:
        """Whether this process mounts the simulator of `provider` (configured, without its token or another
        simulator to call)."""
        return provider in self.provider_names and ADAPTERS[provider].embedded(self)

    @property
    def only_embedded_simulators(self) -> bool:
        """Every provider is a simulator inside this process, which reaches the serving address."""
        return all(self.embeds(name) for name in self.provider_names)

    def allowed_file_hosts(self) -> list[str]:
        """The configured providers' file host patterns (REPLICATE_FILE_HOSTS, FAL_FILE_HOSTS...), and the
        exact origin of each simulator that plays one."""
        return list(dict.fromkeys(host for name in self.provider_names for host in ADAPTERS[name].file_hosts(self)))


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    # Each provider's group, a field by its name (``settings.group(FalSettings)`` reads it).
    Settings = create_model(
        "Settings",
        __base__=CoreSettings,
        **{
            name: (adapter.settings_group, Field(default_factory=adapter.settings_group))
            for name, adapter in ADAPTERS.items()
        },
    )


def setting_fields() -> Iterator[tuple[str, FieldInfo]]:
    """Every setting: its environment variable and its declaration, group by group."""
    for group in Settings.model_fields.values():
        model = group.annotation
        assert isinstance(model, type) and issubclass(model, SettingsGroup)
        for field in model.model_fields.values():
            assert field.alias is not None
            yield field.alias, field


# Each environment variable, and the group its setting belongs to.
ENVIRONMENT_NAMES: dict[str, str] = {
    field.alias: group_name
    for group_name, group in Settings.model_fields.items()
    if isinstance(group.annotation, type) and issubclass(group.annotation, SettingsGroup)
    for field in group.annotation.model_fields.values()
    if field.alias is not None
}


class FlatEnvironment(PydanticBaseSettingsSource):
    """The process environment, read by each setting's own variable (case-insensitive)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole environment at once

    def __call__(self) -> dict[str, Any]:
        # Lower case, the keywords' spelling, so that a keyword given for the same setting wins.
        return {key.lower(): value for key, value in os.environ.items() if key.upper() in ENVIRONMENT_NAMES}


def normalize_database_url(url: str) -> str:
    """Accept the plain URLs operators paste (postgres://, postgresql://, sqlite://) and pick async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def get_settings() -> Settings:
    return Settings()
