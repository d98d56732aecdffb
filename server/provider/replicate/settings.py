"""`ReplicateSettings`: how Darkroom reaches Replicate (or the simulator playing it), from REPLICATE_* and
the webhook variables. A group of `server.settings.Settings`, listed in the README's configuration table."""

from __future__ import annotations

from pydantic import Field

from server.settings_group import SettingsGroup

DEFAULT_REPLICATE_BASE_URL = "https://api.replicate.com"


class ReplicateSettings(SettingsGroup):
    """Replicate: its API, retries, output hosts and webhooks."""

    api_token: str | None = Field(
        None,
        alias="REPLICATE_API_TOKEN",
        description="Replicate API token. Unset: the built-in simulator plays Replicate.",
    )
    api_base_url: str = Field(
        DEFAULT_REPLICATE_BASE_URL,
        alias="REPLICATE_API_BASE_URL",
        description="Replicate's base URL; /v1/... is appended.",
    )
    webhook_secret: str | None = Field(
        None,
        alias="REPLICATE_WEBHOOK_SECRET",
        description="whsec_... secret webhooks are signed with. Unset: fetched from the provider.",
    )
    timeout_seconds: float = Field(
        30.0, alias="REPLICATE_TIMEOUT_SECONDS", description="Timeout of one request to Replicate."
    )
    connect_timeout_seconds: float = Field(
        5.0, alias="REPLICATE_CONNECT_TIMEOUT_SECONDS", description="Connect timeout to Replicate."
    )
    max_retries: int = Field(
        4,
        alias="REPLICATE_MAX_RETRIES",
        description="Most retries of one failed Replicate call (a create only on 429 or when it never left).",
    )
    retry_base_seconds: float = Field(
        0.5, alias="REPLICATE_RETRY_BASE_SECONDS", description="First retry delay; doubles each time."
    )
    retry_max_seconds: float = Field(
        30.0,
        alias="REPLICATE_RETRY_MAX_SECONDS",
        description="Longest single retry delay; a longer Retry-After is raised, not waited out.",
    )
    file_hosts: str = Field(
        "replicate.delivery,*.replicate.delivery",
        alias="REPLICATE_FILE_HOSTS",
        description="Comma-separated origins output files may be downloaded from, each [scheme://]host[:port]: "
        "the scheme defaults to https and the port to the scheme's, and *.x matches the subdomains of x "
        "(*.replicate.delivery is https://*.replicate.delivery:443). The simulator's own origin is added "
        "automatically when no REPLICATE_API_TOKEN is set.",
    )
    webhook_tolerance_seconds: int = Field(
        300, alias="WEBHOOK_TOLERANCE_SECONDS", description="Largest clock skew a signed Replicate webhook may have."
    )
    webhook_max_body_bytes: int = Field(
        1_000_000, alias="WEBHOOK_MAX_BODY_BYTES", description="Largest Replicate webhook body accepted (413 above)."
    )
