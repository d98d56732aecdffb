"""Replicate and fal at once in one process: each generation runs, is followed, cancelled and finished
through the provider that started it, whichever provider is the default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from server.app import create_app
from server.settings import Settings
from tests.fal.support import fast_config as fal_config
from tests.simulator.support import fast_config as replicate_config
from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, IMAGE_MODEL, start_generation, wait_settled
from tests.support.graphql import data, ws_connect
from tests.support.live_server import free_port, live_server

FAL_MODEL = "fal-ai/flux/schnell"
MODELS = """query Models($provider: String, $after: String) {
  models(provider: $provider, first: 50, after: $after) { edges { node { id ref provider kind } } }
}"""
CANCEL = """mutation Cancel($id: ID!) {
  cancelGeneration(input: {id: $id}) { generation { id status provider providerStatus } userErrors { code } }
}"""


async def _follow(darkroom: Darkroom, generation_id: str) -> list[dict[str, Any]]:
    async with ws_connect(darkroom.base_url) as ws:
        return [data(payload)["generation"] async for payload in ws.subscribe(FOLLOW, {"id": generation_id})]


async def _provider_of(darkroom: Darkroom, generation_id: str) -> str:
    query = "query($id: ID!) { generation(id: $id) { provider } }"
    provider: str = data(await darkroom.query(query, {"id": generation_id}))["generation"]["provider"]
    return provider


async def test_both_providers_list_their_models_and_run_their_own_generations(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(
        providers="replicate,fal", simulator_run_seconds=2.0, poll_progress_seconds=0.3
    ) as darkroom:
        everything = [edge["node"] for edge in data(await darkroom.query(MODELS, {}))["models"]["edges"]]
        assert {model["provider"] for model in everything} == {"replicate", "fal"}
        only_fal = [edge["node"] for edge in data(await darkroom.query(MODELS, {"provider": "fal"}))["models"]["edges"]]
        assert only_fal and {model["provider"] for model in only_fal} == {"fal"}
        assert FAL_MODEL in [model["ref"] for model in only_fal]

        on_replicate = await start_generation(darkroom, "a harbour at dawn", model=IMAGE_MODEL)
        on_fal = await start_generation(darkroom, "a harbour at dusk", model=f"fal:{FAL_MODEL}")
        followed = await asyncio.gather(_follow(darkroom, on_replicate["id"]), _follow(darkroom, on_fal["id"]))
        for states, provider in zip(followed, ("replicate", "fal"), strict=True):
            statuses = [state["status"] for state in states]
            assert statuses[-1] == "SUCCEEDED" and "PROCESSING" in statuses, (provider, statuses)
        for generation, provider in ((on_replicate, "replicate"), (on_fal, "fal")):
            assert await _provider_of(darkroom, generation["id"]) == provider
            final = await wait_settled(darkroom, generation["id"])
            assert final["media"] and {media["status"] for media in final["media"]} == {"READY"}
        # Each simulator ran exactly its own job.
        assert darkroom.simulator.stats.predictions_created == 1
        assert darkroom.runtime.simulators["fal"].stats.predictions_created == 1


async def test_each_cancel_goes_to_the_provider_that_runs_the_generation(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(providers="fal,replicate", simulator_run_seconds=30.0) as darkroom:
        on_fal = await start_generation(darkroom, "slow fal", model=FAL_MODEL)  # fal is the default here
        on_replicate = await start_generation(darkroom, "slow replicate", model=f"replicate:{IMAGE_MODEL}")
        for generation, provider in ((on_fal, "fal"), (on_replicate, "replicate")):
            payload = data(await darkroom.query(CANCEL, {"id": generation["id"]}))["cancelGeneration"]
            assert payload["userErrors"] == [], payload
            assert (payload["generation"]["provider"], payload["generation"]["status"]) == (provider, "CANCELED")


@contextlib.asynccontextmanager
async def _simulators() -> AsyncIterator[tuple[str, str, Any, Any]]:
    """Both simulators on their own ports, so that they outlive the Darkroom servers of a test."""
    from server.provider.fal.simulator import FalSimulator
    from server.provider.replicate.simulator import Simulator

    replicate_port, fal_port = free_port(), free_port()
    replicate = Simulator(replicate_config(replicate_port, run_seconds=3.0, allow_private_inputs=True))
    fal = FalSimulator(fal_config(fal_port, start_seconds=0.3, run_seconds=3.0, allow_private_inputs=True))
    try:
        async with (
            live_server(replicate.app, replicate_port) as replicate_url,
            live_server(fal.app, fal_port) as fal_url,
        ):
            yield replicate_url, fal_url, replicate, fal
    finally:
        await replicate.aclose()
        await fal.aclose()


async def test_changing_the_default_leaves_running_generations_on_the_provider_that_started_them(
    make_settings: Callable[..., Settings],
) -> None:
    async with _simulators() as (replicate_url, fal_url, replicate, fal):
        port = free_port()

        def settings(providers: str) -> Settings:
            return make_settings(
                port=port,
                providers=providers,
                replicate_api_base_url=replicate_url,
                replicate_webhook_secret=replicate.config.webhook_secret,
                fal_base_url=fal_url,
                public_url=f"http://127.0.0.1:{port}",
                public_url_reachable=True,
            )

        @contextlib.asynccontextmanager
        async def serving(providers: str) -> AsyncIterator[Darkroom]:
            app = create_app(settings(providers))
            async with live_server(app, port) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                yield Darkroom(base_url, app.state.runtime.settings, http, app.state.runtime)

        async with serving("replicate,fal") as darkroom:
            on_replicate = await start_generation(darkroom, "before the switch", model="darkroom-sim/pixel-forge")
            on_fal = await start_generation(darkroom, "before the switch", model="fal-ai/flux/schnell")
        # The same database, now with fal as the default; both jobs are still running at their providers.
        async with serving("fal,replicate") as darkroom:
            assert darkroom.runtime.providers.default.name == "fal"
            for generation, provider in ((on_replicate, "replicate"), (on_fal, "fal")):
                final = await wait_settled(darkroom, generation["id"], timeout=60)
                assert final["status"] == "SUCCEEDED", final
                assert {media["status"] for media in final["media"]} == {"READY"}
                assert await _provider_of(darkroom, generation["id"]) == provider
        assert replicate.stats.predictions_created == 1 and fal.stats.predictions_created == 1


async def test_a_fal_job_carries_its_place_in_fals_queue_until_it_starts(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    query = "query($id: ID!) { generation(id: $id) { status queuePosition } }"
    # No poller: the place is the one fal's submit answered, until fal's webhook ends the job.
    async with start_darkroom(providers="fal", simulator_run_seconds=1.0, poller_enabled=False) as darkroom:
        queue_length = darkroom.runtime.simulators["fal"].config.queue_length
        generation = await start_generation(darkroom, "in line", model=FAL_MODEL)
        first = data(await darkroom.query(query, {"id": generation["id"]}))["generation"]
        assert (first["status"], first["queuePosition"]) == ("STARTING", queue_length)
        final = await wait_settled(darkroom, generation["id"])
        assert final["status"] == "SUCCEEDED"
        assert data(await darkroom.query(query, {"id": generation["id"]}))["generation"]["queuePosition"] is None
