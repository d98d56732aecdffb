"""`FalSettings`: how Darkroom reaches fal (or the simulator playing it), from FAL_* variables.

A group of `server.settings.Settings`, listed in the README's configuration table. `provider()` builds
the provider these settings describe; the runtime composes it with the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, SecretStr

from server.provider.fal.client import FalClient
from server.provider.fal.provider import FalProvider
from server.provider.types import RequestHook
from server.settings_group import SettingsGroup

DEFAULT_QUEUE_BASE_URL = "https://queue.fal.run"
DEFAULT_REST_BASE_URL = "https://rest.fal.ai"
DEFAULT_CDN_BASE_URL = "https://v3.fal.media"
DEFAULT_OPENAPI_BASE_URL = "https://fal.ai"
DEFAULT_API_BASE_URL = "https://api.fal.ai"
# fal's docs show its webhook keys at rest.alpha.fal.ai (older examples) and at rest.fal.ai (newer code);
# neither is confirmed as the current one. rest.fal.ai is the REST host fal's own clients use today, so it
# is the default; FAL_JWKS_URL points elsewhere if fal moves it.
DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
# Where fal's output files are served from (its CDN, v3.fal.media and the like).
DEFAULT_FILE_HOSTS = "fal.media,*.fal.media"
# What the simulator is called with when no key is set and it asks for none.
SIMULATOR_KEY = "simulator"


@dataclass(frozen=True, slots=True)
class FalHosts:
    """The base URL of each fal API Darkroom calls."""

    queue: str
    rest: str
    cdn: str
    openapi: str
    api: str
    jwks: str

    @classmethod
    def under(cls, base_url: str) -> FalHosts:
        """Every API under one base URL, as the fal simulator serves them."""
        base = base_url.rstrip("/")
        return cls(base, base, base, base, base, f"{base}/.well-known/jwks.json")


class FalSettings(SettingsGroup):
    """The fal provider: its API key, hosts, timeouts, retries, output hosts and webhooks."""

    key: SecretStr | None = Field(
        alias="FAL_KEY",
        default=None,
        description="fal API key (sent as `Authorization: Key <key>`), or key_id:key_secret. Unset: the built-in "
        "fal simulator plays fal.",
    )
    base_url: str | None = Field(
        alias="FAL_BASE_URL",
        default=None,
        description="One URL every fal API is reached under instead of the hosts below: a fal simulator's "
        "(`darkroom simulator --provider fal`). Unset, with no FAL_KEY: the simulator Darkroom mounts at "
        "/fal-simulator.",
    )
    queue_base_url: str = Field(
        alias="FAL_QUEUE_BASE_URL",
        default=DEFAULT_QUEUE_BASE_URL,
        description="fal's queue: submit, status, result and cancel of requests.",
    )
    rest_base_url: str = Field(
        alias="FAL_REST_BASE_URL",
        default=DEFAULT_REST_BASE_URL,
        description="fal's REST API: storage tokens for uploads.",
    )
    cdn_base_url: str = Field(
        alias="FAL_CDN_BASE_URL", default=DEFAULT_CDN_BASE_URL, description="fal's CDN: where uploads are posted."
    )
    openapi_base_url: str = Field(
        alias="FAL_OPENAPI_BASE_URL",
        default=DEFAULT_OPENAPI_BASE_URL,
        description="Where per-endpoint OpenAPI documents are read (/api/openapi/queue/openapi.json).",
    )
    api_base_url: str = Field(
        alias="FAL_API_BASE_URL",
        default=DEFAULT_API_BASE_URL,
        description="fal's platform API: the model listing (/v1/models).",
    )
    jwks_url: str = Field(
        alias="FAL_JWKS_URL",
        default=DEFAULT_JWKS_URL,
        description="The JWKS of the ED25519 keys fal signs webhooks with.",
    )
    file_hosts: str = Field(
        alias="FAL_FILE_HOSTS",
        default=DEFAULT_FILE_HOSTS,
        description="Comma-separated origins fal's output files may be downloaded from, written as "
        "REPLICATE_FILE_HOSTS are. The simulator's own origin is added when no FAL_KEY is set.",
    )
    timeout_seconds: float = Field(
        alias="FAL_TIMEOUT_SECONDS", default=30.0, gt=0, le=600, description="Timeout of one request to fal."
    )
    connect_timeout_seconds: float = Field(
        alias="FAL_CONNECT_TIMEOUT_SECONDS", default=5.0, gt=0, le=120, description="Connect timeout to fal."
    )
    upload_timeout_seconds: float = Field(
        alias="FAL_UPLOAD_TIMEOUT_SECONDS",
        default=300.0,
        gt=0,
        le=3600,
        description="Timeout of one file upload to fal.",
    )
    max_retries: int = Field(
        alias="FAL_MAX_RETRIES",
        default=4,
        ge=0,
        le=20,
        description="Most retries of one failed idempotent fal call (a submit is never resent).",
    )
    retry_base_seconds: float = Field(
        alias="FAL_RETRY_BASE_SECONDS", default=0.5, ge=0, le=60, description="First retry delay; doubles each time."
    )
    retry_max_seconds: float = Field(
        alias="FAL_RETRY_MAX_SECONDS",
        default=30.0,
        ge=0,
        le=600,
        description="Longest single retry delay; a longer Retry-After is raised, not waited out.",
    )
    max_response_bytes: int = Field(
        alias="FAL_MAX_RESPONSE_BYTES",
        default=5_000_000,
        ge=10_000,
        le=100_000_000,
        description="Largest answer read from fal (a bigger one is refused).",
    )
    webhook_tolerance_seconds: int = Field(
        alias="FAL_WEBHOOK_TOLERANCE_SECONDS",
        default=300,
        ge=1,
        le=3600,
        description="Largest clock skew a signed fal webhook may have, either way.",
    )
    webhook_max_body_bytes: int = Field(
        alias="FAL_WEBHOOK_MAX_BODY_BYTES",
        default=1_000_000,
        ge=1_000,
        le=100_000_000,
        description="Largest fal webhook body accepted (413 above).",
    )
    jwks_min_refresh_seconds: float = Field(
        alias="FAL_JWKS_MIN_REFRESH_SECONDS",
        default=60.0,
        ge=0,
        le=86_400,
        description="Least time between two fetches of the JWKS when no cached key verifies a delivery.",
    )

    @property
    def simulated(self) -> bool:
        """No key: the fal simulator plays fal."""
        return self.key is None

    def hosts(self) -> FalHosts:
        """fal's own hosts, or all of them under FAL_BASE_URL."""
        if self.base_url:
            return FalHosts.under(self.base_url)
        return FalHosts(
            self.queue_base_url,
            self.rest_base_url,
            self.cdn_base_url,
            self.openapi_base_url,
            self.api_base_url,
            self.jwks_url,
        )

    def provider(
        self, *, hosts: FalHosts | None = None, key: str | None = None, on_request: RequestHook | None = None
    ) -> FalProvider:
        """The provider these settings describe; `hosts` and `key` replace theirs (an embedded simulator's)."""
        hosts = hosts or self.hosts()
        client = FalClient(
            key or (self.key.get_secret_value() if self.key is not None else SIMULATOR_KEY),
            queue_base_url=hosts.queue,
            rest_base_url=hosts.rest,
            cdn_base_url=hosts.cdn,
            openapi_base_url=hosts.openapi,
            api_base_url=hosts.api,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            upload_timeout_seconds=self.upload_timeout_seconds,
            max_retries=self.max_retries,
            retry_base_seconds=self.retry_base_seconds,
            retry_max_seconds=self.retry_max_seconds,
            max_response_bytes=self.max_response_bytes,
            on_request=on_request,
        )
        return FalProvider(
            client,
            jwks_url=hosts.jwks,
            webhook_tolerance_seconds=self.webhook_tolerance_seconds,
            jwks_min_refresh_seconds=self.jwks_min_refresh_seconds,
            webhook_max_body_bytes=self.webhook_max_body_bytes,
        )
