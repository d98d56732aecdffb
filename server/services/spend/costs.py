"""The rules that turn a price into a cost: before a start (an estimate) and once a job settles.

A per-output price is multiplied by the number of outputs: those the input asks for, before the start
(`num_outputs`, `num_images`... default 1), and those the provider delivered once it succeeded (none when
it failed). A per-second price is multiplied by the provider's predict time; before the start, by the
median of the model's recent runs here. Amounts are floats in the price's currency, never rounded here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from server.db.models import AnyGeneration
from server.domain import GenerationStatus
from server.services.spend.prices import Basis, Price

# The inputs through which models ask for more than one output, in the spellings the providers use.
OUTPUT_COUNT_INPUTS = ("num_outputs", "num_images", "number_of_images", "num_videos", "batch_size")
# An input asking for more outputs than this is not taken at its word (validation bounds it anyway).
MAX_COUNTED_OUTPUTS = 100

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Cost:
    """What a generation costs, or is expected to: `estimated` until the provider's figures settle it."""

    amount: float
    currency: str
    basis: str  # a Basis: per_second or per_output
    estimated: bool


def outputs_asked(given_input: Any) -> int:
    """How many outputs an input asks for: the first output-count input it sets, else 1."""
    if isinstance(given_input, dict):
        for name in OUTPUT_COUNT_INPUTS:
            value = given_input.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return min(value, MAX_COUNTED_OUTPUTS)
    return 1


def with_count_defaults(schema: Any, given_input: Any) -> Any:
    """`given_input` with the schema's defaults for the output-count inputs it leaves out: a model may make
    more than one output unless told otherwise."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(given_input, dict) or not isinstance(properties, dict):
        return given_input
    filled = dict(given_input)
    for name in OUTPUT_COUNT_INPUTS:
        prop = properties.get(name)
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled


def estimate(price: Price, given_input: Any, recent_predict_times: Sequence[float]) -> Cost | None:
    """The cost a start is expected to have; None for a per-second price without any history."""
    if price.basis is Basis.PER_OUTPUT:
        return Cost(price.amount * outputs_asked(given_input), price.currency, price.basis, estimated=True)
    if not recent_predict_times:
        return None
    typical = statistics.median(recent_predict_times)
    return Cost(price.amount * typical, price.currency, price.basis, estimated=True)


def settled(price: Price, generation: AnyGeneration, outputs: int) -> Cost | None:
    """The cost of a generation that reached a terminal status, by what the provider reported.

    None when the figure it is billed by is missing: a per-second job that succeeded without a predict time,
    or that Darkroom timed out itself (the provider ran it, but its last word is not known), keeps its
    estimate. A per-second job the provider ended FAILED or CANCELED without a predict time never ran, and
    costs nothing; a per-output job is billed for what it delivered.
    """
    status = GenerationStatus(generation.status)
    if price.basis is Basis.PER_OUTPUT:
        count = outputs if status is GenerationStatus.SUCCEEDED else 0
        return Cost(price.amount * count, price.currency, price.basis, estimated=False)
    if generation.predict_time is not None:
        return Cost(price.amount * generation.predict_time, price.currency, price.basis, estimated=False)
    if status in (GenerationStatus.SUCCEEDED, GenerationStatus.TIMED_OUT):
        return None
    return Cost(0.0, price.currency, price.basis, estimated=False)


def stored(generation: Any) -> Cost | None:
    """The cost held in a generation's columns (a row, its plain copy, or a snapshot's values)."""
    if generation.cost_amount is None or generation.cost_currency is None or generation.cost_basis is None:
        return None
    return Cost(
        generation.cost_amount, generation.cost_currency, generation.cost_basis, bool(generation.cost_estimated)
    )


def never_sent(generation: AnyGeneration) -> None:
    """Settle the cost of a generation that ended before it reached its provider: nothing, where it was
    priced at all."""
    if generation.cost_currency is not None and generation.cost_basis is not None:
        record(generation, Cost(0.0, generation.cost_currency, generation.cost_basis, estimated=False))


def record(generation: AnyGeneration, cost: Cost | None) -> None:
    """Write `cost` into a generation's columns (None clears them)."""
    generation.cost_amount = cost.amount if cost else None
    generation.cost_currency = cost.currency if cost else None
    generation.cost_basis = cost.basis if cost else None
    generation.cost_estimated = cost.estimated if cost else None


def period_start(period: Period, now: datetime | None = None) -> datetime:
    """The start of the calendar period (UTC) that `now` is in: its day, its week (from Monday), its month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)
