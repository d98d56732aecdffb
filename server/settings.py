"""Every setting Darkroom reads, in one place, from the environment.

Each field's environment variable is its name in upper case (``database_url`` ->
``DATABASE_URL``). The README's configuration table lists them all; a test keeps the two in step.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REPLICATE_BASE_URL = "https://api.replicate.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=False)

    # --- server -------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface `darkroom serve` binds to.")
    port: int = Field(8000, description="Port `darkroom serve` listens on.")
    public_url: str | None = Field(
        None,
        description="Base URL the outside world reaches this server on. Replicate's webhooks are sent "
        "to PUBLIC_URL/webhooks/replicate and Media.url is built on it. Unset: webhooks are not "
        "requested (the poller carries every job) and URLs are built from the serving address.",
    )
    data_dir: Path = Field(Path("./var"), description="Where the embedded defaults keep their files.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Unset: a SQLite file in DATA_DIR. "
        "Postgres: postgresql+asyncpg://user@host/db.",
    )
    database_pool_size: int = Field(10, description="Connections kept open per process (Postgres).")
    database_ping_idle_seconds: float = Field(
        1.0,
        description="A pooled connection left idle longer than this is pinged before it is used again, and "
        "replaced if it is dead (Postgres); 0: pinged on every use.",
    )
    database_echo: bool = Field(False, description="Log every SQL statement (debugging).")
    migrate_on_start: bool = Field(True, description="Apply database migrations when the server starts.")
    broadcast_url: str = Field(
        "memory://",
        description="How processes tell each other that the event log has grown: memory:// (one process), "
        "postgres://user@host/db (LISTEN/NOTIFY) or redis://host:6379. Only that doorbell travels on it; "
        "events are read from the database.",
    )
    broadcast_channel: str = Field(
        "darkroom_events",
        description="Channel name events are published on; deployments sharing one Redis or Postgres need "
        "different names.",
    )
    event_tail_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="How often each process reads the event log without a doorbell: the longest a lost "
        "doorbell or a broker outage delays live delivery.",
    )
    event_tail_batch_size: int = Field(500, gt=0, description="Events each read of the log fetches at most.")
    broadcast_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often each process checks its BROADCAST_URL connection with a round trip; an "
        "unanswered check marks it down (/readyz 503) and reconnects.",
    )
    media_root: Path | None = Field(None, description="Where downloaded media files live. Unset: DATA_DIR/media.")
    media_storage_url: str | None = Field(
        None,
        description="Where media files are stored: file:///path (a directory) or s3://BUCKET/PREFIX "
        "(S3-compatible object storage; credentials and region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
        "and AWS_REGION, or the usual AWS credential chain). Unset: file:// of MEDIA_ROOT.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="The S3 API's address for servers other than AWS (R2, B2, SeaweedFS, Garage...), "
        "addressed by path. Unset: AWS.",
    )
    s3_part_size_bytes: int = Field(
        8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="Size of each part of a multipart upload to S3; a smaller file goes up in one request. "
        "At most two parts per download are held in memory.",
    )
    media_base_url: str | None = Field(
        None,
        description="Public base URL of the stored files (a CDN, or the bucket's public address): Media.url "
        "is MEDIA_BASE_URL/<key>. Unset: Media.url points at this server's /media route.",
    )
    media_presign_seconds: float = Field(
        3600.0,
        gt=0,
        description="Lifetime of the presigned S3 URL a provider gets for an animateImage source image when "
        "neither MEDIA_BASE_URL nor PUBLIC_URL is set.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field("text", description="text (readable) or json (one object a line).")
    alert_failure_threshold: int = Field(
        5,
        description="Failed generations of one model, or failed downloads, within ALERT_WINDOW_SECONDS that log "
        "an alert WARNING (0: never).",
    )
    alert_window_seconds: float = Field(900.0, description="The window ALERT_FAILURE_THRESHOLD counts failures in.")

    # --- GraphQL ------------------------------------------------------------------------------------
    graphql_max_page_size: int = Field(100, description="Largest `first` a connection accepts.")
    graphql_default_page_size: int = Field(20, description="Page size when `first` is omitted.")
    graphql_keep_alive_seconds: float = Field(
        15.0, description="WebSocket keep-alive ping interval, so idle sockets survive proxies."
    )
    graphql_connection_init_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a graphql-transport-ws socket may take to send connection_init before it is "
        "closed (4408).",
    )
    graphql_max_depth: int = Field(12, description="Deepest query accepted.")
    graphql_max_aliases: int = Field(30, description="Most aliases a query may use.")
    graphql_max_tokens: int = Field(4000, description="Most tokens a query document may have.")
    graphql_max_body_bytes: int = Field(1_000_000, description="Largest /graphql request body.")
    graphql_document_cache_size: int = Field(
        256, description="Parsed and validated query documents kept per process (subscribers share them)."
    )
    ws_compression: bool = Field(
        False,
        description="Offer permessage-deflate on WebSockets. Events are small; compression costs about 48 KiB "
        "of memory per open socket.",
    )
    shutdown_grace_seconds: int = Field(
        10, description="On shutdown, how long open connections get to finish before they are closed."
    )
    gc_thresholds: str = Field(
        "50000,20,100",
        pattern=r"^\s*$|^\d+(,\d+){0,2}$",
        description="Python's garbage collector thresholds (gen0,gen1,gen2). Python's own 700,10,10 makes a "
        "process with many open subscriptions stall for a full collection every few events; empty keeps them.",
    )
    gc_freeze_after_subscribe_seconds: float = Field(
        0.5,
        ge=0,
        description="Once new subscriptions stop opening for this long, their objects are frozen out of garbage "
        "collection, so the next event does not pay for scanning them; after many have closed, the garbage is "
        "collected at such a quiet moment (0: off).",
    )
    graphiql_enabled: bool = Field(True, description="Serve GraphiQL at /graphql to browsers.")
    subscription_queue_size: int = Field(
        256, description="Events buffered per subscriber before it is told it fell behind."
    )
    subscription_render_cache_size: int = Field(
        1024,
        gt=0,
        description="Executed subscription results kept per process, one per (document, variables, viewer, "
        "event): every subscriber alike reuses one execution and one encoding of each event.",
    )

    # --- access control -----------------------------------------------------------------------------
    auth_required: bool = Field(
        False,
        description="Require an API key on /graphql even before any exists. Off: the server is open while no "
        "active key exists, and closed as soon as one does.",
    )
    auth_refresh_seconds: float = Field(
        5.0,
        description="How often each process re-reads the API keys: a key revoked elsewhere (the CLI, another "
        "process) stops working, and its WebSockets close, within this time.",
    )
    rate_limit_mutations_per_minute: float = Field(
        60.0, description="Mutations one API key may make per minute, in each process (0: no limit)."
    )
    rate_limit_mutations_burst: int = Field(
        20, description="Mutations one API key may make in a burst before the per-minute rate applies."
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins browser pages may call the API from (https://app.example.com), "
        "or *. Empty: no cross-origin access.",
    )

    # --- Replicate ----------------------------------------------------------------------------------
    replicate_api_token: str | None = Field(
        None, description="Replicate API token. Unset: the built-in simulator plays Replicate."
    )
    replicate_api_base_url: str = Field(
        DEFAULT_REPLICATE_BASE_URL, description="Replicate's base URL; /v1/... is appended."
    )
    replicate_webhook_secret: str | None = Field(
        None, description="whsec_... secret webhooks are signed with. Unset: fetched from the provider."
    )
    replicate_timeout_seconds: float = Field(30.0, description="Timeout of one request to Replicate.")
    replicate_connect_timeout_seconds: float = Field(5.0, description="Connect timeout to Replicate.")
    replicate_max_retries: int = Field(
        4, description="Most retries of one failed Replicate call (a create only on 429 or when it never left)."
    )
    replicate_retry_base_seconds: float = Field(0.5, description="First retry delay; doubles each time.")
    replicate_retry_max_seconds: float = Field(
        30.0, description="Longest single retry delay; a longer Retry-After is raised, not waited out."
    )
    replicate_file_hosts: str = Field(
        "replicate.delivery,*.replicate.delivery",
        description="Comma-separated hosts output files may be downloaded from (*.x matches subdomains). "
        "The embedded simulator's own host is added automatically.",
    )

    # --- webhooks -----------------------------------------------------------------------------------
    webhook_tolerance_seconds: int = Field(300, description="Largest clock skew a signed webhook may have.")
    webhook_max_body_bytes: int = Field(1_000_000, description="Largest webhook body accepted (413 above).")

    # --- poller -------------------------------------------------------------------------------------
    poller_enabled: bool = Field(True, description="Run the fallback poller in this process.")
    poll_interval_seconds: float = Field(2.0, description="How often the poller looks for stale generations.")
    poll_stale_after_seconds: float = Field(
        5.0, description="A running generation not updated for this long is polled."
    )
    poll_backoff_max_seconds: float = Field(60.0, description="Longest wait between polls of one generation.")
    poll_batch_size: int = Field(50, description="Most generations one poll cycle fetches.")
    generation_timeout_seconds: float = Field(
        1800.0, description="A generation running longer is marked TIMED_OUT and canceled."
    )

    # --- downloads ----------------------------------------------------------------------------------
    downloader_enabled: bool = Field(True, description="Run the media downloader in this process.")
    download_concurrency: int = Field(4, description="Downloads one process runs at once.")
    download_max_attempts: int = Field(5, description="Attempts before a media row is FAILED.")
    download_retry_base_seconds: float = Field(1.0, description="First download retry delay; doubles.")
    download_retry_max_seconds: float = Field(60.0, description="Longest download retry delay.")
    download_lease_seconds: float = Field(120.0, description="How long a download claim holds.")
    download_timeout_seconds: float = Field(120.0, description="Timeout of one media download.")
    download_max_bytes: int = Field(500_000_000, description="Largest media file downloaded.")
    download_idle_seconds: float = Field(1.0, description="How often an idle downloader looks for work.")

    # --- retention ----------------------------------------------------------------------------------
    media_retention_days: float | None = Field(
        None, description="Media files (and their rows) older than this are deleted by cleanup. Unset: kept."
    )
    failed_generation_retention_days: float | None = Field(
        None,
        description="FAILED, CANCELED and TIMED_OUT generations older than this are deleted by cleanup. Unset: kept.",
    )
    storage_cap_bytes: int | None = Field(
        None, description="Most bytes of media kept; cleanup deletes the oldest files above it. Unset: no cap."
    )
    cleanup_enabled: bool = Field(False, description="Run the retention cleanup periodically in the server.")
    cleanup_interval_seconds: float = Field(3600.0, description="How often the periodic cleanup runs.")

    # --- simulator ----------------------------------------------------------------------------------
    simulator_run_seconds: float = Field(3.0, description="How long a simulated prediction runs.")
    simulator_fail_rate: float = Field(0.0, description="Share of simulated predictions that fail (0-1).")
    simulator_webhook_drop_rate: float = Field(0.0, description="Share of simulator webhooks never sent.")
    simulator_webhook_duplicate_rate: float = Field(0.0, description="Share of simulator webhooks sent twice.")
    simulator_webhook_reorder: bool = Field(False, description="Deliver simulator webhooks out of order.")
    simulator_webhook_delay_ms: int = Field(0, description="Delay before each simulator webhook.")
    simulator_download_failures: int = Field(
        0, description="Times each simulated output file answers 500 before it serves."
    )
    simulator_output_ttl_seconds: float = Field(3600.0, description="Lifetime of simulated outputs.")
    simulator_webhook_secret: str = Field(
        "whsec_ZGFya3Jvb20tc2ltdWxhdG9yLXNpZ25pbmcta2V5IQ==",
        description="The simulator's webhook signing secret (whsec_ + base64).",
    )
    simulator_port: int = Field(8001, description="Port `darkroom simulator` listens on.")

    # --- catalogue ----------------------------------------------------------------------------------
    catalogue_ttl_seconds: float = Field(
        3600.0,
        description="How long a cached catalogue entry is fresh. Older ones are still served (marked stale) "
        "while they are refreshed in the background.",
    )
    default_video_model: str | None = Field(
        None,
        description="Model animateImage uses when none is given (owner/name). Unset, or a model taking no image: "
        "the catalogue's best image-to-video model.",
    )

    # --- derived ------------------------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        """True when no token is set: the embedded simulator plays Replicate."""
        return not self.replicate_api_token

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'darkroom.db').resolve()}"

    @property
    def resolved_media_root(self) -> Path:
        return (self.media_root or self.data_dir / "media").resolve()

    @property
    def resolved_media_storage_url(self) -> str:
        return self.media_storage_url or self.resolved_media_root.as_uri()

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    def base_url(self) -> str:
        """Where this server is reached: PUBLIC_URL, else the address it serves on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def embedded_simulator(self) -> bool:
        """No token and no other base URL: this process mounts the simulator at /simulator."""
        return self.simulated and self.replicate_api_base_url.rstrip("/") == DEFAULT_REPLICATE_BASE_URL

    def provider_base_url(self) -> str:
        """Replicate's base URL, or the embedded simulator's (reached over loopback) when embedded."""
        if self.embedded_simulator:
            return f"http://127.0.0.1:{self.port}/simulator"
        return self.replicate_api_base_url.rstrip("/")

    def allowed_cors_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()]

    def allowed_file_hosts(self) -> list[str]:
        hosts = [h.strip().lower() for h in self.replicate_file_hosts.split(",") if h.strip()]
        if self.simulated:
            host = urlparse(self.provider_base_url()).hostname
            if host:
                hosts.append(host)
        return hosts


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
