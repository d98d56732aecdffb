"""A running job's intermediate outputs are hostile until checked, as its final ones are. Signed webhooks of a
yielding model name, one after another: a pixel bomb, an HTML page, a file over PREVIEW_MAX_BYTES and a file
on a host that is not allowed (the cloud's metadata address). None becomes a preview, nothing of them is
stored, each is logged at INFO (a provider's output is no fault of the server), and the server goes on to
show an ordinary image, served by Darkroom."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

from server.db.models import Generation
from server.graphql.ids import decode_id
from tests.hostile.test_media_types import SCRIPT, bomb_png
from tests.support.file_hosts import allowing, file_host
from tests.support.flows import start_generation
from tests.support.graphql import data
from tests.support.webhooks import post_webhook, prediction, signed
from tests.uploads.support import png

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

PREVIEWS = "query($id: ID!) { generation(id: $id) { status previews { url contentType } media { id } } }"


async def test_hostile_intermediate_outputs_are_refused_and_an_image_is_shown(
    start_darkroom: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.services.generations.previews")
    hosts = {
        "bomb": file_host(bomb_png(), content_type="image/png", name="bomb.png"),
        "page": file_host(SCRIPT, content_type="image/png", name="page.png"),
        "large": file_host(png(1) * 400, content_type="image/png", name="large.png"),
        "image": file_host(png(2), content_type="image/png", name="fine.png"),
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: (await stack.enter_async_context(host)).url for name, host in hosts.items()}
        darkroom = await stack.enter_async_context(
            start_darkroom(
                poller_enabled=False, replicate_file_hosts=allowing(*urls.values()), preview_max_bytes=20_000
            )
        )
        await darkroom.http.patch("/simulator/_control/config", json={"webhook_drop_rate": 1.0, "run_seconds": 60})
        generation = await start_generation(darkroom, "hostile", model="darkroom-sim/preview-image")
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, decode_id(generation["id"], "Generation"))
            assert row is not None and row.provider_id is not None
        # A host the server was not told to allow: the cloud's metadata service, never reached.
        elsewhere = "http://169.254.169.254/latest/meta-data/preview.png"
        outputs: list[str] = []
        for url in [urls["bomb"], urls["page"], urls["large"], elsewhere, urls["image"]]:
            outputs.append(url)
            body, headers = await signed(darkroom, prediction(row.provider_id, "processing", output=list(outputs)))
            response = await post_webhook(darkroom, body, headers)
            assert response.json() == {"result": "applied"}, response.text
            await darkroom.runtime.previews.settled()

        refused = [record for record in caplog.records if record.message == "preview not kept"]
        reasons = [str(getattr(record, "reason", "")) for record in refused]
        assert len(reasons) == 4, reasons
        assert "pixels" in reasons[0] and reasons[1] == "not an image", reasons
        assert "PREVIEW_MAX_BYTES" in reasons[2] and "not an allowed file host" in reasons[3], reasons
        faults = [record for record in caplog.records if record.name.startswith("server.services.generations")]
        assert all(record.levelno == logging.INFO for record in faults), faults
        state = data(await darkroom.query(PREVIEWS, {"id": generation["id"]}))["generation"]
        assert state["status"] == "PROCESSING" and state["media"] == []
        [preview] = state["previews"]
        assert preview["contentType"] == "image/png"
        served = await darkroom.http.get(preview["url"])
        assert served.status_code == 200 and served.content == png(2)
        stored = [entry.key async for entry in darkroom.runtime.storage.list_files()]
        assert stored == [preview["url"].split("/media/", 1)[1]]
        await darkroom.query(
            "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { userErrors { code } } }",
            {"id": generation["id"]},
        )
