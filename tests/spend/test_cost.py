"""A generation's cost: estimated at the start, settled from the provider's figures, summed in `stats`,
in `viewer` and in darkroom_spend_total; `estimateCost` from the price and Darkroom's own history."""

from __future__ import annotations

from typing import Any

import pytest

from server.services.generations.service import UpdateOutcome
from server.services.spend.prices import load_price_table
from tests.spend.support import COST, GET, STATS, VIEWER, estimate, spent_metric, start
from tests.support.graphql import data, ws_connect
from tests.support.providers import ProviderCase
from tests.support.waiting import eventually

PRICES = load_price_table()


async def settled(darkroom: Any, generation_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        generation = data(await darkroom.query(GET, {"id": generation_id}))["generation"]
        done = generation["status"] == "SUCCEEDED" and all(m["status"] == "READY" for m in generation["media"])
        return generation if done else None

    return dict(await eventually(check, timeout=30, interval=0.1))


async def test_a_per_output_price_settles_by_the_outputs_and_is_counted_once(
    start_darkroom: Any, on_provider: ProviderCase
) -> None:
    price = PRICES.price_for(on_provider.name, on_provider.image_model)
    assert price is not None and price.basis == "per_output"
    async with start_darkroom(**on_provider.settings) as darkroom:
        before = await spent_metric(darkroom, on_provider.image_model)
        payload = await start(darkroom, on_provider.image_model, {"prompt": "two lighthouses", **on_provider.two_pngs})
        assert payload["userErrors"] == []
        expected = price.amount * 2
        started = payload["generation"]
        assert started["cost"] == {
            "amount": pytest.approx(expected),
            "currency": "USD",
            "basis": "per_output",
            "estimated": True,
        }

        done = await settled(darkroom, started["id"])
        assert done["cost"] == {
            "amount": pytest.approx(expected),
            "currency": "USD",
            "basis": "per_output",
            "estimated": False,
        }
        if on_provider.name == "replicate":
            # Replicate's simulator reports metrics.predict_time, as Replicate does. fal reports a run time only
            # in a polled status (metrics.inference_time), never in its webhooks: its prices are per output.
            assert done["predictTime"] is not None and done["predictTime"] > 0
        assert await spent_metric(darkroom, on_provider.image_model) == pytest.approx(before + expected)

        # The provider's answer again changes nothing, and is not counted again.
        row = await darkroom.runtime.generations.get(_raw_id(darkroom, started["id"]), _system())
        assert row.provider_id is not None
        update = await on_provider.job(darkroom, row.provider_id, row.model_ref)
        result = await darkroom.runtime.generations.apply_prediction_update(update, provider=on_provider.name)
        assert result.outcome is UpdateOutcome.DUPLICATE
        assert await spent_metric(darkroom, on_provider.image_model) == pytest.approx(before + expected)

        stats = data(await darkroom.query(STATS))["stats"]
        assert stats["currency"] == "USD"
        [model] = [m for m in stats["models"] if m["model"] == on_provider.image_model]
        assert model["spend"] == pytest.approx(expected)
        assert stats["keys"] == [{"keyId": None, "keyName": None, "generations": 1, "spend": pytest.approx(expected)}]

        spend = data(await darkroom.query(VIEWER))["viewer"]["spend"]
        assert spend["amount"] == pytest.approx(expected) and spend["currency"] == "USD"
        assert spend["budget"] is None and spend["period"] == "month"
        assert spend["periodStart"].endswith(("T00:00:00+00:00", "T00:00:00Z"))


async def test_a_per_second_price_settles_by_predict_time_and_estimates_from_history(start_darkroom: Any) -> None:
    model = "darkroom-sim/snap-still"
    price = PRICES.price_for("replicate", model)
    assert price is not None and price.basis == "per_second"
    async with start_darkroom() as darkroom:
        # No history yet: no estimate, and the start is let through without one.
        assert await estimate(darkroom, model, {"prompt": "a fox"}) is None
        payload = await start(darkroom, model, {"prompt": "a fox"})
        assert payload["userErrors"] == [] and payload["generation"]["cost"] is None

        done = await settled(darkroom, payload["generation"]["id"])
        seconds = done["predictTime"]
        assert seconds is not None and seconds > 0
        assert done["cost"] == {
            "amount": pytest.approx(price.amount * seconds),
            "currency": "USD",
            "basis": "per_second",
            "estimated": False,
        }

        # Now the median of its succeeded runs here estimates the next one.
        expected = {
            "amount": pytest.approx(price.amount * seconds),
            "currency": "USD",
            "basis": "per_second",
            "estimated": True,
        }
        assert await estimate(darkroom, model, {"prompt": "another fox"}) == expected
        second = await start(darkroom, model, {"prompt": "another fox"})
        assert second["generation"]["cost"] == expected


async def test_estimate_cost_counts_the_outputs_asked_for(darkroom: Any) -> None:
    model = "darkroom-sim/pixel-forge"
    price = PRICES.price_for("replicate", model)
    assert price is not None
    one = await estimate(darkroom, model, {"prompt": "x"})
    three = await estimate(darkroom, model, {"prompt": "x", "num_outputs": 3})
    assert one == {"amount": pytest.approx(price.amount), "currency": "USD", "basis": "per_output", "estimated": True}
    assert three is not None and three["amount"] == pytest.approx(price.amount * 3)
    unknown = await darkroom.query('query { estimateCost(model: "darkroom-sim/no-such-model", input: {}) { amount } }')
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def _raw_id(darkroom: Any, global_id: str) -> Any:
    from server.graphql.ids import decode_id

    return decode_id(global_id, "Generation")


def _system() -> Any:
    from server.services.access.viewer import Viewer

    return Viewer.system()


async def test_a_canceled_generation_settles_at_what_it_delivered(start_darkroom: Any) -> None:
    """No outputs, no per-output cost: the estimate is replaced by a settled 0 (on Postgres, by the
    one-statement update, which writes the cost columns with the rest)."""
    async with start_darkroom(simulator_run_seconds=5.0) as darkroom:
        payload = await start(darkroom, "darkroom-sim/pixel-forge", {"prompt": "x", "num_outputs": 3})
        assert payload["generation"]["cost"]["estimated"] is True
        canceled = data(
            await darkroom.query(
                f"mutation C($id: ID!) {{ cancelGeneration(input: {{id: $id}}) {{ generation {{ status {COST} }} }} }}",
                {"id": payload["generation"]["id"]},
            )
        )["cancelGeneration"]["generation"]
        assert canceled["status"] == "CANCELED"
        assert canceled["cost"] == {"amount": 0.0, "currency": "USD", "basis": "per_output", "estimated": False}


async def test_the_feed_carries_the_cost(darkroom: Any) -> None:
    """The cost rides on the generation's events: a subscriber sees the estimate, then the settled cost."""
    payload = await start(darkroom, "darkroom-sim/pixel-forge", {"prompt": "x"})
    follow = f"subscription F($id: ID!) {{ generation(id: $id) {{ status {COST} }} }}"
    async with ws_connect(darkroom.base_url) as client:
        frames = [
            data(frame)["generation"] async for frame in client.subscribe(follow, {"id": payload["generation"]["id"]})
        ]
    costs = [frame["cost"] for frame in frames]
    assert all(cost is not None and cost["basis"] == "per_output" for cost in costs), costs
    assert frames[-1]["status"] == "SUCCEEDED" and costs[-1]["estimated"] is False
    assert costs[-1]["amount"] == pytest.approx(PRICES.price_for("replicate", "darkroom-sim/pixel-forge").amount)  # type: ignore[union-attr]
