"""How the image to animate reaches the provider, while the generation always records Darkroom's own URL.

PUBLIC_URL set: the provider fetches Darkroom's media URL. A provider that cannot reach Darkroom (a real
token, no PUBLIC_URL; here a separate simulator): the image is uploaded through the files API, or sent
inline as a data: URI when the upload fails and the file is small.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from server.provider.errors import ProviderServerError
from server.simulator.service import SimulatorCore
from tests.catalogue.flows import FRAME_FLOW, STILL_MOTION, animate, generation_count, ready_image
from tests.support.darkroom import Darkroom
from tests.support.flows import wait_settled
from tests.support.live_server import free_port
from tests.support.providers import PROVIDER_CASES, StartDarkroom


def sent_input(simulator: SimulatorCore) -> dict[str, Any]:
    """The input of the simulator's latest prediction, as the provider received it."""
    latest = max(simulator.engine.predictions.values(), key=lambda prediction: prediction.seq)
    return dict(latest.input)


async def animated(darkroom: Darkroom, model: str, field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the source image, the finished video generation) of animating a fresh image with `model`."""
    image = await ready_image(darkroom)
    payload = await animate(darkroom, image["id"], model, {"prompt": "drift"})
    assert payload["userErrors"] == []
    assert payload["generation"]["input"][field] == image["url"], "the record keeps Darkroom's lasting URL"
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert [(m["kind"], m["status"]) for m in done["media"]] == [("VIDEO", "READY")]
    assert done["sourceMedia"]["id"] == image["id"]
    return image, done


def behind_a_separate_provider(
    start_darkroom: StartDarkroom,
) -> AbstractAsyncContextManager[tuple[Darkroom, SimulatorCore]]:
    """Darkroom with a token and no PUBLIC_URL, talking to a Replicate simulator of its own."""
    return PROVIDER_CASES["replicate"].behind_a_separate_simulator(start_darkroom)


async def test_with_public_url_the_provider_fetches_darkrooms_own_media_url(
    start_darkroom: Callable[..., Any],
) -> None:
    port = free_port()
    public_url = f"http://localhost:{port}"
    async with start_darkroom(port=port, public_url=public_url) as darkroom:
        image, _ = await animated(darkroom, STILL_MOTION, "image")
        assert image["url"].startswith(f"{public_url}/media/")
        assert sent_input(darkroom.simulator)["image"] == image["url"]
        assert darkroom.simulator.files.uploads == {}


@pytest.mark.parametrize(("model", "field"), [(STILL_MOTION, "image"), (FRAME_FLOW, "first_frame_image")])
async def test_without_public_url_the_image_is_uploaded_through_the_files_api(
    start_darkroom: Callable[..., Any], model: str, field: str
) -> None:
    async with behind_a_separate_provider(start_darkroom) as (darkroom, simulator):
        assert darkroom.simulator is None
        await animated(darkroom, model, field)
        (upload,) = simulator.files.uploads.values()
        assert upload.content_type.startswith("image/") and upload.content
        assert sent_input(simulator)[field] == upload.to_json(simulator.base_url)["urls"]["get"]


async def test_when_the_upload_fails_a_small_image_is_sent_inline(
    start_darkroom: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_upload(*_: Any, **__: Any) -> Any:
        raise ProviderServerError("Internal Server Error", "the files API is down", status=500)

    async with behind_a_separate_provider(start_darkroom) as (darkroom, simulator):
        monkeypatch.setattr(darkroom.replicate.client, "upload_file", broken_upload)
        await animated(darkroom, FRAME_FLOW, "first_frame_image")
        assert sent_input(simulator)["first_frame_image"].startswith("data:image/")
        assert simulator.files.uploads == {}


async def test_when_the_upload_fails_a_large_image_is_a_user_error(
    start_darkroom: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_upload(*_: Any, **__: Any) -> Any:
        raise ProviderServerError("Internal Server Error", "the files API is down", status=500)

    async with behind_a_separate_provider(start_darkroom) as (darkroom, simulator):
        image = await ready_image(darkroom)
        before = await generation_count(darkroom)
        monkeypatch.setattr(darkroom.replicate.client, "upload_file", broken_upload)
        monkeypatch.setattr("server.services.generations.launch.DATA_URI_MAX_BYTES", 16)
        payload = await animate(darkroom, image["id"], STILL_MOTION)
        assert payload["generation"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["mediaId"], "UPLOAD_FAILED")]
        assert await generation_count(darkroom) == before
        assert simulator.stats.predictions_created == before
