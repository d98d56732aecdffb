"""When a failed call to a provider is tried again, and after how long.

The rules, each provider's statuses given by its `RetryRules`:

- **Idempotent calls** (reads, and calls that do the same however often they are sent, such as a cancel)
  are retried on the provider's retryable statuses and on connection failures and timeouts.
- **Calls that create something** (a job, an upload) are retried only on the statuses the provider
  promises did nothing (Replicate's 429). A 5xx, a broken connection or a read timeout is raised at
  once, because the job may exist and a retry could run (and bill) it twice. The one exception is a
  failure *before the request was sent* (the connection could not be opened, or no pooled connection
  became free): nothing reached the provider, so it is retried.
- **Delays**: the provider's hint (Retry-After, or for a 429 ratelimit-reset) when it gave one;
  otherwise exponential backoff with full jitter, ``uniform(0, min(max, base * 2**retry))``, so clients
  that failed together do not retry together.
- **Limits**: at most `max_retries` retries, and no single wait longer than `max_seconds`. A hint
  longer than that is not waited out: the error is raised at once, carrying the hint, for the caller to
  schedule the work later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

# Raised before any byte of the request left this process: safe to retry even a create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures of a request that may have reached the provider; safe to retry only when idempotent.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def never_sent(error: BaseException) -> bool:
    """Whether a failed call raised `error` before any byte of its request left this process."""
    return isinstance(error, _NOT_SENT)


@dataclass(frozen=True)
class RetryRules:
    """A provider's retryable statuses: `statuses` for idempotent calls, `create_statuses` for calls that
    create something (only those the provider promises did nothing)."""

    statuses: frozenset[int]
    create_statuses: frozenset[int] = frozenset()

    def allow(self, *, idempotent: bool, status: int | None = None, error: BaseException | None = None) -> bool:
        """Whether a call that got `status` (or, without an answer, raised `error`) may be tried again."""
        if status is not None:
            return status in (self.statuses if idempotent else self.create_statuses)
        if error is not None and never_sent(error):
            return True
        return idempotent and isinstance(error, _TRANSIENT)


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries, and how long between them (see the module docstring)."""

    max_retries: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, retry: int) -> float:
        """Full-jitter exponential delay before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** min(retry, 62))
        return self.rng.uniform(0.0, max(0.0, ceiling))

    def delay(self, retry: int, hint: float | None = None) -> float | None:
        """Seconds to wait before retry number `retry`, or None to give up.

        Gives up once `max_retries` retries were made, or when the provider's `hint` exceeds
        `max_seconds`.
        """
        if retry >= self.max_retries:
            return None
        if hint is not None:
            return None if hint > self.max_seconds else max(0.0, hint)
        return self.backoff(retry)
