"""The `viewer` query's types: who is asking, and what they spent in the current budget period."""

from __future__ import annotations

from datetime import datetime

import strawberry

from server.graphql.context import Info
from server.services.spend.service import Spend as SpendFigures


@strawberry.type(description="Spend in the current calendar period (UTC), and the budget it counts against.")
class Spend:
    amount: float = strawberry.field(
        description="Costs of the generations created in the period: settled ones, and the estimates of those "
        "still running (in `currency`'s units, not rounded)."
    )
    currency: str
    budget: float | None = strawberry.field(
        description="The budget for the period; null when there is none. A start whose estimate would take "
        "`amount` past it is refused with BUDGET_EXCEEDED."
    )
    period: str = strawberry.field(description="day, week (from Monday) or month.")
    period_start: datetime

    @classmethod
    def of(cls, figures: SpendFigures) -> Spend:
        return cls(
            amount=figures.amount,
            currency=figures.currency,
            budget=figures.budget,
            period=figures.period,
            period_start=figures.period_start,
        )


@strawberry.type(description="The caller: its API key, or everyone on an open server.")
class Viewer:
    @strawberry.field(
        description="The key's spend in its budget's period; on an open server, everyone's against the global "
        "budget (BUDGET_AMOUNT)."
    )
    async def spend(self, info: Info) -> Spend:
        return Spend.of(await info.context.runtime.spend.viewer_spend(info.context.viewer))
