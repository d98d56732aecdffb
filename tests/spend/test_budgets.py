"""Budgets: a start whose estimate would take the period's spend past its key's budget, or the server's,
is refused with BUDGET_EXCEEDED before anything reaches the provider or the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from server.db.models import Generation
from server.services.access.api_keys import KeyLimits
from tests.auth.support import KeyClient, bearer
from tests.spend.support import ANIMATE, VIEWER, start
from tests.support.darkroom import Darkroom
from tests.support.flows import wait_settled
from tests.support.graphql import data

PIXEL_FORGE = "darkroom-sim/pixel-forge"
STILL_MOTION = "darkroom-sim/still-motion"

# Prices of this test's own: an image at 0.10, an animation at 1.00.
PRICES = """
currency = "USD"

[[price]]
model = "replicate:darkroom-sim/pixel-forge"
per_output = 0.1

[[price]]
model = "replicate:darkroom-sim/still-motion"
per_output = 1.0
"""


@pytest.fixture
def price_table(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return path


async def creates(darkroom: Darkroom) -> int:
    """The predictions the simulator was asked to create: its own record."""
    return int(darkroom.simulator.stats.predictions_created)


async def rows(darkroom: Darkroom) -> int:
    async with darkroom.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Generation)) or 0)


async def test_the_global_budget_refuses_a_start_and_an_animation_that_would_pass_it(
    start_darkroom: Any, price_table: Path
) -> None:
    async with start_darkroom(price_table_path=price_table, budget_amount=0.5, budget_period="day") as darkroom:
        first = await start(darkroom, PIXEL_FORGE, {"prompt": "a pier", "num_outputs": 2})
        assert first["userErrors"] == [] and first["generation"]["cost"]["amount"] == pytest.approx(0.2)
        image = (await wait_settled(darkroom, first["generation"]["id"]))["media"][0]
        sent, written = await creates(darkroom), await rows(darkroom)

        # 0.20 spent and 1.00 more would pass 0.50: refused, with nothing sent and nothing written.
        animate = data(await darkroom.query(ANIMATE, {"mediaId": image["id"], "model": STILL_MOTION}))["animateImage"]
        assert animate["generation"] is None
        [error] = animate["userErrors"]
        assert error["code"] == "BUDGET_EXCEEDED" and error["field"] == ["model"]
        assert "0.5" in error["message"]
        assert (await creates(darkroom), await rows(darkroom)) == (sent, written)

        # 4 more images (0.40) would pass it too; 3 (0.30) just fit.
        refused = await start(darkroom, PIXEL_FORGE, {"prompt": "a pier", "num_outputs": 4})
        assert [e["code"] for e in refused["userErrors"]] == ["BUDGET_EXCEEDED"]
        assert (await creates(darkroom), await rows(darkroom)) == (sent, written)
        fits = await start(darkroom, PIXEL_FORGE, {"prompt": "a pier", "num_outputs": 3})
        assert fits["userErrors"] == []

        spend = data(await darkroom.query(VIEWER))["viewer"]["spend"]
        assert spend["amount"] == pytest.approx(0.5)
        assert (spend["budget"], spend["period"]) == (0.5, "day")


async def test_a_keys_budget_holds_that_key_alone(start_darkroom: Any, price_table: Path) -> None:
    async with start_darkroom(price_table_path=price_table) as darkroom:
        limited = await darkroom.runtime.api_keys.create(
            "limited", KeyLimits(budget_amount=0.25, budget_period="week", max_running=2)
        )
        free = await darkroom.runtime.api_keys.create("free")
        alice, bob = KeyClient(darkroom, limited.token), KeyClient(darkroom, free.token)

        assert (await start(alice, PIXEL_FORGE, {"prompt": "one", "num_outputs": 2}))["userErrors"] == []
        sent, written = await creates(darkroom), await rows(darkroom)
        # Running or not, its estimate counts: 0.20 + 0.10 passes 0.25.
        refused = await start(alice, PIXEL_FORGE, {"prompt": "two"})
        assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("BUDGET_EXCEEDED", ["model"])]
        assert (await creates(darkroom), await rows(darkroom)) == (sent, written)
        # Another key's spend is its own.
        assert (await start(bob, PIXEL_FORGE, {"prompt": "three", "num_outputs": 4}))["userErrors"] == []

        mine = data(await alice.query(VIEWER))["viewer"]["spend"]
        assert mine["amount"] == pytest.approx(0.2)
        assert (mine["budget"], mine["period"], mine["currency"]) == (0.25, "week", "USD")
        theirs = data(await bob.query(VIEWER))["viewer"]["spend"]
        assert theirs["amount"] == pytest.approx(0.4) and theirs["budget"] is None

        # Each key sees its own spend in stats; the server's view has both.
        stats = data(await alice.query("{ stats { keys { keyName spend } } }"))["stats"]
        assert stats["keys"] == [{"keyName": "limited", "spend": pytest.approx(0.2)}]
        unauthenticated = await darkroom.http.post("/graphql", json={"query": VIEWER})
        assert unauthenticated.status_code == 401
        assert (await darkroom.http.post("/graphql", json={"query": VIEWER}, headers=bearer(free.token))).is_success


async def test_a_start_without_an_estimate_is_let_through(start_darkroom: Any, price_table: Path) -> None:
    # snap-still has no price in this table: no estimate, no cost, and a budget does not hold it back.
    async with start_darkroom(price_table_path=price_table, budget_amount=0.001) as darkroom:
        payload = await start(darkroom, "darkroom-sim/snap-still", {"prompt": "a gull"})
        assert payload["userErrors"] == [] and payload["generation"]["cost"] is None


async def test_a_malformed_price_table_stops_the_server_at_start(start_darkroom: Any, tmp_path: Path) -> None:
    from server.services.spend.prices import PriceTableError

    path = tmp_path / "prices.toml"
    path.write_text("[[price]]\nmodel = 'replicate:a/b'\n")
    with pytest.raises(PriceTableError, match="exactly one of per_second, hardware or per_output"):
        async with start_darkroom(price_table_path=path):
            pass


async def test_starts_sent_together_cannot_pass_a_budget_together(start_darkroom: Any, price_table: Path) -> None:
    """Each passes the early check alone; the second check, where each is written under the lock every
    start takes, lets only as many through as fit."""
    async with start_darkroom(price_table_path=price_table, budget_amount=0.35, budget_period="day") as darkroom:
        results = await asyncio.gather(*(start(darkroom, PIXEL_FORGE, {"prompt": f"race {n}"}) for n in range(8)))
        accepted = [result for result in results if result["userErrors"] == []]
        refused = [result for result in results if result["userErrors"]]
        assert len(accepted) == 3, results
        assert {e["code"] for result in refused for e in result["userErrors"]} == {"BUDGET_EXCEEDED"}
        assert await rows(darkroom) == 3
        assert await creates(darkroom) == 3
