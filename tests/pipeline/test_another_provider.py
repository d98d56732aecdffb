"""The whole pipeline on a second provider, written in a few lines here: the provider port is all it needs.

`MemoryProvider` keeps its predictions in memory, finishes one when told, and reports it by webhook (a
JSON body carrying a shared token) or when polled; its output is a small PNG as a data: URI, which the
downloader fetches like any file. Nothing of Replicate is involved: no simulator runs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from PIL import Image

from server.db.models import Generation
from server.domain import GenerationStatus, MediaKind
from server.graphql.ids import decode_id
from server.provider.errors import ProviderError, ProviderNotFoundError, general_refusal
from server.provider.port import WebhookRejected
from server.provider.types import JobRef, ModelDescription, PredictionUpdate, Refusal
from server.settings import Settings
from tests.support.darkroom import Darkroom
from tests.support.flows import start_generation, wait_settled
from tests.support.live_server import free_port, live_server

MODEL = "memory/painter/v1"
WEBHOOK_TOKEN = "memory-secret"
PAINTER = ModelDescription(
    ref=MODEL,
    kind=MediaKind.IMAGE,
    description="paints pictures",
    input_schema={"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    groups=("text-to-image",),
)


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 40, 40)).save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


class MemoryProvider:
    """A provider whose predictions live in this object; `finish` completes one with a PNG."""

    name = "memory"
    webhook_max_body_bytes = 10_000
    progress_by_webhook = True

    def __init__(self) -> None:
        self.predictions: dict[str, PredictionUpdate] = {}
        self.webhook_urls: dict[str, str | None] = {}

    def finish(self, prediction_id: str) -> None:
        self.predictions[prediction_id] = dataclasses.replace(
            self.predictions[prediction_id],
            status=GenerationStatus.SUCCEEDED,
            provider_status="done",
            output_urls=(_png(),),
        )

    async def create(
        self,
        *,
        model_ref: str,
        version_id: str | None,
        input: dict[str, Any],
        webhook_url: str | None,
        deadline_seconds: float | None = None,
    ) -> PredictionUpdate:
        update = PredictionUpdate(f"mem-{len(self.predictions)}", GenerationStatus.STARTING, "queued")
        self.predictions[update.prediction_id] = update
        self.webhook_urls[update.prediction_id] = webhook_url
        return update

    async def get(self, job: JobRef) -> PredictionUpdate:
        if job.id not in self.predictions:
            raise ProviderNotFoundError("Not found", job.id)
        return self.predictions[job.id]

    async def cancel(self, job: JobRef) -> PredictionUpdate:
        update = dataclasses.replace(await self.get(job), status=GenerationStatus.CANCELED)
        self.predictions[job.id] = update
        return update

    def stopped_by_deadline(self, update: PredictionUpdate, deadline_seconds: float, elapsed_seconds: float) -> bool:
        return False  # it keeps no deadline of its own: Darkroom's poller times its jobs out

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        return f"data:{content_type};base64,{base64.b64encode(content).decode()}"

    async def describe_model(self, ref: str) -> ModelDescription:
        if ref != MODEL:
            raise ProviderNotFoundError("Not found", ref)
        return PAINTER

    async def list_models(self) -> list[ModelDescription]:
        return [PAINTER]

    async def search(self, query: str, *, limit: int) -> list[ModelDescription]:
        return []

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> PredictionUpdate:
        if headers.get("x-memory-token") != WEBHOOK_TOKEN:
            raise WebhookRejected("no token", signature=True)
        try:
            return await self.get(JobRef(json.loads(body)["id"], MODEL))
        except (ValueError, KeyError, ProviderError) as exc:
            raise WebhookRejected(f"not one of ours: {exc}", signature=False) from None

    def refusals(self, error: ProviderError) -> list[Refusal]:
        return [general_refusal(error)]

    async def aclose(self) -> None:
        pass


@contextlib.asynccontextmanager
async def running(
    make_settings: Callable[..., Settings], provider: MemoryProvider, **overrides: Any
) -> AsyncIterator[Darkroom]:
    """A server on `provider`, reachable by it at PUBLIC_URL (on loopback, so PUBLIC_URL_REACHABLE says it
    is). A token is set, so no simulator is mounted."""
    from server.app import create_app

    port = free_port()
    settings = make_settings(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        public_url_reachable=True,
        replicate_api_token="r8_unused",
        **overrides,
    )
    app = create_app(settings, providers=[provider])
    async with live_server(app, port) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield Darkroom(base_url, settings, http, app.state.runtime)


async def _stored_provider(darkroom: Darkroom, generation_id: str) -> str:
    async with darkroom.runtime.sessions() as session:
        row = await session.get(Generation, decode_id(generation_id, "Generation"))
        assert row is not None
        return row.provider


async def test_a_generation_on_another_provider_runs_to_its_downloaded_media(
    make_settings: Callable[..., Settings],
) -> None:
    provider = MemoryProvider()
    async with running(make_settings, provider, poller_enabled=False) as darkroom:
        assert darkroom.runtime.simulators == {}
        started = await start_generation(darkroom, "a red square", model=MODEL)
        assert (started["status"], started["providerStatus"]) == ("STARTING", "queued")
        [(prediction_id, webhook_url)] = provider.webhook_urls.items()
        assert webhook_url is not None and webhook_url.startswith(f"{darkroom.base_url}/webhooks/memory?generation=")

        provider.finish(prediction_id)
        body = json.dumps({"id": prediction_id}).encode()
        assert (await darkroom.http.post(webhook_url, content=body)).status_code == 401
        response = await darkroom.http.post(webhook_url, content=body, headers={"x-memory-token": WEBHOOK_TOKEN})
        assert response.json() == {"result": "applied"}, response.text

        final = await wait_settled(darkroom, started["id"])
        assert (final["status"], final["providerStatus"]) == ("SUCCEEDED", "done")
        [media] = final["media"]
        assert (media["status"], media["contentType"], media["width"], media["height"]) == ("READY", "image/png", 4, 3)
        assert await _stored_provider(darkroom, started["id"]) == "memory"


async def test_the_poller_asks_another_provider_when_no_webhook_comes(make_settings: Callable[..., Settings]) -> None:
    provider = MemoryProvider()
    async with running(make_settings, provider, poll_stale_after_seconds=0.2) as darkroom:
        started = await start_generation(darkroom, "a quiet square", model=MODEL)
        [prediction_id] = provider.predictions
        provider.finish(prediction_id)
        final = await wait_settled(darkroom, started["id"])
        assert final["status"] == "SUCCEEDED" and [m["status"] for m in final["media"]] == ["READY"]
