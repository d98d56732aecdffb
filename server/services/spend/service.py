"""Estimates, spend and budgets, read from the price table and the generations' cost columns.

Spend over a period is the sum of the costs of the generations created in it: settled costs, and the
estimates of those not settled yet (so that jobs still running count against a budget). Only amounts in
the price table's currency are summed. A start whose estimate would take the spend of its key's period,
or everyone's under the global budget (BUDGET_AMOUNT), past the budget is refused with BUDGET_EXCEEDED.
A start with no estimate (its model has no price, or no history to estimate its run time from) is let
through: a budget bounds what can be foreseen. Two starts checked at the same moment may together pass a
budget by the smaller one's estimate; the check does not lock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import ApiKey, CatalogModel, Generation
from server.domain import GenerationStatus
from server.services.access.viewer import Viewer
from server.services.errors import ServiceError
from server.services.spend import costs
from server.services.spend.costs import Cost, Period
from server.services.spend.prices import Basis, PriceTable
from server.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Spend:
    """What was spent in the current period, and the budget it counts against (None: no budget)."""

    amount: float
    currency: str
    budget: float | None
    period: Period
    period_start: datetime


class SpendService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], prices: PriceTable) -> None:
        self._settings = settings
        self._sessions = sessions
        self.prices = prices

    @property
    def currency(self) -> str:
        return self.prices.currency

    async def estimate(self, provider: str, model_ref: str, given_input: Any) -> Cost | None:
        """What a start of the model with this input is expected to cost; None when it cannot be told."""
        price = self.prices.price_for(provider, model_ref)
        if price is None:
            return None
        recent: list[float] = []
        if price.basis is Basis.PER_SECOND:
            async with self._sessions() as session:
                recent = await self._recent_predict_times(session, provider, model_ref)
        return costs.estimate(price, given_input, recent)

    async def estimate_start(self, model: CatalogModel, given_input: Any) -> Cost | None:
        """What starting `model` with `given_input` is expected to cost (the schema's output count by default)."""
        given = costs.with_count_defaults(model.input_schema, given_input)
        return await self.estimate(model.provider, model.ref, given)

    async def check_budget(self, viewer: Viewer, model: CatalogModel, given_input: Any) -> Cost | None:
        """The start's estimate, once its key's budget and the global one have room for it.

        Raises ServiceError BUDGET_EXCEEDED at ["model"] when one has not; nothing is written either way.
        `GenerationService.start` checks the estimate again where it writes the generation, under the
        queue's lock, so that starts made together cannot pass a budget together."""
        estimate = await self.estimate_start(model, given_input)
        async with self._sessions() as session:
            await self.hold_to_budgets(session, viewer, estimate)
        return estimate

    async def hold_to_budgets(self, session: AsyncSession, viewer: Viewer, estimate: Cost | None) -> None:
        """Refuse (BUDGET_EXCEEDED) a start of `viewer`'s estimated at `estimate` that would pass its key's
        budget or the server's, in `session`."""
        if estimate is None or estimate.currency != self.currency:
            return
        if viewer.owner_id is not None:
            key = await session.get(ApiKey, viewer.owner_id)
            if key is not None and key.budget_amount is not None:
                period = _period(key.budget_period, self._settings.spend.budget_period)
                spent = await self._spent(session, viewer.owner_id, costs.period_start(period))
                _refuse_past(spent, estimate, key.budget_amount, f"this API key's {period}ly budget")
        budget = self._settings.spend.budget_amount
        if budget is not None:
            period = self._settings.spend.budget_period
            spent = await self._spent(session, None, costs.period_start(period))
            _refuse_past(spent, estimate, budget, f"the server's {period}ly budget")

    async def viewer_spend(self, viewer: Viewer) -> Spend:
        """A key's spend in its budget's period; on an open server (or for the system), everyone's."""
        async with self._sessions() as session:
            if viewer.owner_id is None:
                period = self._settings.spend.budget_period
                since = costs.period_start(period)
                spent = await self._spent(session, None, since) if viewer.sees_all else 0.0
                return Spend(spent, self.currency, self._settings.spend.budget_amount, period, since)
            key = await session.get(ApiKey, viewer.owner_id)
            return await self._key_spend(session, key, viewer.owner_id)

    async def key_spends(self, keys: list[ApiKey]) -> dict[uuid.UUID, Spend]:
        """Each key's spend in the current period of its budget (or of BUDGET_PERIOD), for listing keys."""
        async with self._sessions() as session:
            return {key.id: await self._key_spend(session, key, key.id) for key in keys}

    async def _key_spend(self, session: AsyncSession, key: ApiKey | None, owner_id: uuid.UUID) -> Spend:
        period = _period(key.budget_period if key else None, self._settings.spend.budget_period)
        since = costs.period_start(period)
        spent = await self._spent(session, owner_id, since)
        return Spend(spent, self.currency, key.budget_amount if key else None, period, since)

    async def _spent(self, session: AsyncSession, owner_id: uuid.UUID | None, since: datetime) -> float:
        """Costs, settled or estimated, of the generations created since `since`: one key's, or (None) all."""
        statement = select(func.coalesce(func.sum(Generation.cost_amount), 0.0)).where(
            Generation.created_at >= since, Generation.cost_currency == self.currency
        )
        if owner_id is not None:
            statement = statement.where(Generation.owner_id == owner_id)
        return float(await session.scalar(statement) or 0.0)

    async def _recent_predict_times(self, session: AsyncSession, provider: str, model_ref: str) -> list[float]:
        statement = (
            select(Generation.predict_time)
            .where(
                Generation.provider == provider,
                Generation.model_ref == model_ref,
                Generation.status == GenerationStatus.SUCCEEDED,
                Generation.predict_time.is_not(None),
            )
            .order_by(Generation.created_at.desc())
            .limit(self._settings.spend.cost_history_runs)
        )
        return [float(seconds) for seconds in (await session.scalars(statement)).all() if seconds is not None]


def _period(stored: str | None, default: Period) -> Period:
    return cast(Period, stored) if stored in costs.PERIODS else default


# Sums of float prices drift (0.1 * 3 + 0.2 > 0.5): a start that fits to within this much fits.
BUDGET_TOLERANCE = 1e-9


def _refuse_past(spent: float, estimate: Cost, budget: float, whose: str) -> None:
    if spent + estimate.amount <= budget + BUDGET_TOLERANCE:
        return
    logger.info(
        "start refused: over budget",
        extra={"spent": round(spent, 6), "estimate": round(estimate.amount, 6), "budget": budget},
    )
    raise ServiceError.single(
        "BUDGET_EXCEEDED",
        f"this start, estimated at {estimate.amount:.4f} {estimate.currency}, would take {whose} "
        f"({budget:g} {estimate.currency}, {spent:.4f} spent or running) past its limit",
        ["model"],
    )
