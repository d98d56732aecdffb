"""Replicate's prediction statuses, and what each means for a generation."""

from __future__ import annotations

from server.domain import GenerationStatus

# Replicate's statuses onto ours; `aborted` (canceled before it started) is a cancellation. Clients that
# forget `aborted` is terminal hang forever. A cancellation the Cancel-After deadline caused (`aborted`
# before the start, `canceled` after it) becomes TIMED_OUT where updates are applied, which knows the
# deadline (server.services.generations.service.ended_by_deadline).
STATUS_MAP: dict[str, GenerationStatus] = {
    "starting": GenerationStatus.STARTING,
    "processing": GenerationStatus.PROCESSING,
    "succeeded": GenerationStatus.SUCCEEDED,
    "failed": GenerationStatus.FAILED,
    "canceled": GenerationStatus.CANCELED,
    "aborted": GenerationStatus.CANCELED,
}
PROVIDER_STATUSES = frozenset(STATUS_MAP)
PROVIDER_TERMINAL_STATUSES = frozenset(status for status, ours in STATUS_MAP.items() if ours.is_terminal)
