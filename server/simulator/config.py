"""The simulator's knobs, and the dice its fault knobs roll.

Every field of `SimulatorConfig` may be changed while the simulator runs (on the Python object, or
through ``PATCH /_control/config``, except `api_token`, which only the process sets and no route shows);
each request and each prediction step reads the current value.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from server.settings import Settings


def new_webhook_secret() -> str:
    """A random signing secret in Replicate's form: whsec_ and 32 bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_api_token() -> str:
    """A random bearer token for a simulator that must not answer just anyone."""
    return "sim_" + secrets.token_urlsafe(32)


@dataclass
class SimulatorConfig:
    """How the simulator behaves. All fields are mutable at runtime.

    A simulator of another provider extends it with its own knobs (its subclass adds them to
    `FIELD_KINDS`, and its secrets to `SET_IN_PROCESS_ONLY`); the controls read both of the class.
    """

    FIELD_KINDS: ClassVar[dict[str, str]]
    """Each field's JSON kind, as PATCH /_control/config checks it."""
    SET_IN_PROCESS_ONLY: ClassVar[frozenset[str]]
    """Fields no route shows or changes."""

    public_base_url: str = "http://127.0.0.1:8001"
    """The URL prefix the simulator is reached at; every URL it hands out is built on it."""
    webhook_secret: str = field(default_factory=new_webhook_secret)
    """whsec_... secret webhooks are signed with (also served by GET /v1/webhooks/default/secret); random
    unless given, never a default anyone knows."""
    api_token: str | None = None
    """The one Bearer token accepted (and then needed for the controls too); None accepts any non-empty
    token. The embedded simulator holds one always but asks for it only once Darkroom needs API keys."""
    run_seconds: float = 3.0
    """How long a prediction spends in `processing` (for a model whose run time depends on its input, how
    long its reference input takes: see `outputs.run_units`)."""
    start_seconds: float = 0.1
    """How long a prediction spends in `starting` waiting for a worker, before it runs (or boots)."""
    boot_seconds: float = 2.0
    """How long a prediction of a model that boots (`CatalogueModel.boots`) then spends in `starting`,
    writing its boot log lines."""
    run_jitter: float = 0.0
    """Each prediction's run time is multiplied by a factor drawn uniformly in [1 - run_jitter, 1 +
    run_jitter] (0: every run of an input takes the same time)."""
    fail_rate: float = 0.0
    """Share of predictions that end `failed` (0-1)."""
    webhook_drop_rate: float = 0.0
    """Share of webhook deliveries never sent, the terminal one included."""
    webhook_duplicate_rate: float = 0.0
    """Share of webhook deliveries sent twice with the same webhook-id."""
    webhook_reorder: bool = False
    """Hold each delivery back and send it after the next one, so they arrive out of order."""
    webhook_delay_ms: int = 0
    """Delay before each webhook delivery."""
    download_failures: int = 0
    """Times each output file answers 500 before it serves its bytes."""
    rate_limited_creates: int = 0
    """The next this many creates answer 429 (each one counts it down), as a provider's rate limit does."""
    rate_limit_retry_after_seconds: float = 1.0
    """The Retry-After those 429s carry."""
    output_ttl_seconds: float = 3600.0
    """After this long from completion, outputs answer 404 and the prediction's data is removed."""
    page_size: int = 3
    """Items per page of every list. Small on purpose, so clients have to follow `next`."""
    seed: int | None = None
    """Seed of the random generator behind the fault knobs, for reproducible tests."""
    allow_private_inputs: bool = False
    """Fetch input files from loopback, private and local-network hosts. Replicate refuses them (it cannot
    reach them); the embedded simulator, which runs inside Darkroom's process, allows them."""

    @classmethod
    def from_settings(cls, settings: Settings, public_base_url: str, *, allow_private_inputs: bool = False) -> Self:
        """The simulator `settings` tune, reached at `public_base_url`."""
        return cls(
            public_base_url=public_base_url.rstrip("/"),
            allow_private_inputs=allow_private_inputs,
            webhook_secret=settings.simulator.webhook_secret or new_webhook_secret(),
            api_token=settings.simulator.api_token,
            run_seconds=settings.simulator.run_seconds,
            fail_rate=settings.simulator.fail_rate,
            webhook_drop_rate=settings.simulator.webhook_drop_rate,
            webhook_duplicate_rate=settings.simulator.webhook_duplicate_rate,
            webhook_reorder=settings.simulator.webhook_reorder,
            webhook_delay_ms=settings.simulator.webhook_delay_ms,
            download_failures=settings.simulator.download_failures,
            output_ttl_seconds=settings.simulator.output_ttl_seconds,
        )

    @property
    def base_url(self) -> str:
        """`public_base_url` without a trailing slash."""
        return self.public_base_url.rstrip("/")

    def rate_limit_create(self) -> dict[str, str] | None:
        """The headers of a 429 when this create is one `rate_limited_creates` refuses (counting it down);
        None when it goes through."""
        if self.rate_limited_creates <= 0:
            return None
        self.rate_limited_creates -= 1
        return {"Retry-After": f"{self.rate_limit_retry_after_seconds:g}"}

    def to_json(self) -> dict[str, Any]:
        """Every field but the secrets: `api_token` would let in for good anyone who once saw it, and
        `webhook_secret` forge webhooks (it is read as Replicate's is, with the token)."""
        hidden = type(self).SET_IN_PROCESS_ONLY
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in hidden}

    def update(self, changes: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Apply `changes` if every one is a known field of the right type.

        Returns the problems as (field, description) pairs; when there are any, nothing is changed.
        """
        problems: list[tuple[str, str]] = []
        accepted: dict[str, Any] = {}
        for name, value in changes.items():
            kind = type(self).FIELD_KINDS.get(name)
            if name in type(self).SET_IN_PROCESS_ONLY:
                problems.append((name, f"{name} is set by the process only"))
                continue
            if kind is None:
                problems.append((name, f"Additional property {name} is not allowed"))
                continue
            coerced = _coerce(kind, value)
            if coerced is _INVALID:
                problems.append((name, f"Invalid type. Expected: {kind}, given: {type(value).__name__}"))
            else:
                accepted[name] = coerced
        if not problems:
            for name, value in accepted.items():
                setattr(self, name, value)
        return problems


_INVALID = object()

_FIELD_KINDS: dict[str, str] = {
    "public_base_url": "string",
    "webhook_secret": "string",
    "api_token": "string or null",
    "run_seconds": "number",
    "start_seconds": "number",
    "boot_seconds": "number",
    "run_jitter": "number",
    "fail_rate": "number",
    "webhook_drop_rate": "number",
    "webhook_duplicate_rate": "number",
    "webhook_reorder": "boolean",
    "webhook_delay_ms": "integer",
    "download_failures": "integer",
    "rate_limited_creates": "integer",
    "rate_limit_retry_after_seconds": "number",
    "output_ttl_seconds": "number",
    "page_size": "integer",
    "seed": "integer or null",
    "allow_private_inputs": "boolean",
}
# Shown or changed over HTTP, these would let a caller of an open server hold the keys of the closed one:
# its token, or the secret its webhooks are verified with.
_SET_IN_PROCESS_ONLY = frozenset({"api_token", "webhook_secret"})
SimulatorConfig.FIELD_KINDS = _FIELD_KINDS
SimulatorConfig.SET_IN_PROCESS_ONLY = _SET_IN_PROCESS_ONLY
assert set(_FIELD_KINDS) == {f.name for f in dataclasses.fields(SimulatorConfig)}


def _coerce(kind: str, value: Any) -> Any:
    if value is None:
        return None if kind.endswith("or null") else _INVALID
    if kind.startswith("string"):
        return value if isinstance(value, str) else _INVALID
    if isinstance(value, bool):
        return value if kind == "boolean" else _INVALID
    if kind.startswith("integer"):
        return value if isinstance(value, int) else _INVALID
    if kind == "number":
        return float(value) if isinstance(value, int | float) else _INVALID
    return _INVALID


class Dice:
    """The random generator behind the fault knobs and random seeds.

    It follows `config.seed`: whenever the seed differs from the one it was last seeded with, it
    reseeds, so setting a seed at any time makes what follows reproducible.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._seeded_with: int | None = config.seed
        self._random = random.Random(config.seed)

    def _generator(self) -> random.Random:
        if self._config.seed != self._seeded_with:
            self._seeded_with = self._config.seed
            self._random = random.Random(self._config.seed)
        return self._random

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (never for 0, always for 1)."""
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        return self._generator().random() < rate

    def seed(self) -> int:
        """A fresh seed for a prediction that was not given one."""
        return self._generator().randrange(0, 2**32)

    def jitter(self, spread: float) -> float:
        """A run time factor drawn uniformly in [1 - spread, 1 + spread] (never below 0); exactly 1 for no
        spread, without a draw, so that the other draws stay as they were."""
        if spread <= 0:
            return 1.0
        return self._generator().uniform(max(0.0, 1.0 - spread), 1.0 + spread)
