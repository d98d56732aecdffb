"""Every call of the client against the simulator over real HTTP: what it sends, and how it reads the answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from server import __version__
from server.provider.errors import ProviderBadResponseError, ProviderNotFoundError
from server.provider.replicate.adapter import ADAPTER as REPLICATE
from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.prediction import output_urls
from server.settings import Settings
from tests.provider.conftest import IMAGES, SMALL, STILL, TOKEN, MakeClient, Stack, finished
from tests.provider.fault_proxy import ok

CREATE_BY_MODEL = f"/v1/models/{IMAGES}/predictions"


async def test_every_request_carries_token_and_user_agent(stack: Stack, client: ReplicateClient) -> None:
    await client.get_model("darkroom-sim", "pixel-forge")
    (request,) = stack.proxy.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"darkroom/{__version__}"
    assert request.headers["accept"] == "application/json"


async def test_base_url_with_a_path_prefix(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", "/simulator/v1/webhooks/default/secret", ok({"key": "whsec_abc"}))
    client = make_client(base_url=stack.url + "/simulator/")
    assert await client.get_webhook_secret() == "whsec_abc"


# --- predictions -----------------------------------------------------------------------------------


async def test_create_by_model_runs_to_success(stack: Stack, client: ReplicateClient) -> None:
    created = await client.create_prediction(model=IMAGES, input={**SMALL, "num_outputs": 2})
    assert created.status == "starting" and created.model == IMAGES
    (request,) = stack.proxy.calls("POST", CREATE_BY_MODEL)
    assert request.json == {"input": {**SMALL, "num_outputs": 2}}
    assert request.headers["content-type"] == "application/json"
    assert "prefer" not in request.headers and "cancel-after" not in request.headers
    done = await finished(client, created.id)
    assert done.status == "succeeded" and done.is_terminal
    assert done.completed_at is not None and done.raw["id"] == created.id


async def test_create_by_version(stack: Stack, client: ReplicateClient) -> None:
    version = (await client.get_model("darkroom-sim", "pixel-forge"))["latest_version"]["id"]
    forms: list[tuple[dict[str, Any], str]] = [
        ({"version": version}, version),
        ({"version": f"{IMAGES}:{version}"}, f"{IMAGES}:{version}"),
        ({"version": IMAGES}, IMAGES),  # an official model's owner/name
        ({"model": f"{IMAGES}:{version}"}, f"{IMAGES}:{version}"),
        ({"model": version}, version),
        ({"model": "somebody/else", "version": version}, version),
    ]
    for kwargs, sent in forms:
        created = await client.create_prediction(input=SMALL, **kwargs)
        assert created.version == version
        assert stack.proxy.calls("POST", "/v1/predictions")[-1].json == {"version": sent, "input": SMALL}
    assert stack.predictions_created == len(forms)


async def test_create_with_webhook_and_headers(stack: Stack, client: ReplicateClient) -> None:
    stack.config.start_seconds = 30.0
    created = await client.create_prediction(
        model=IMAGES,
        input=SMALL,
        webhook="http://127.0.0.1:9/webhooks/replicate",
        webhook_events_filter=["start", "completed"],
        cancel_after="60s",
    )
    assert created.status == "starting"
    (request,) = stack.proxy.calls("POST", CREATE_BY_MODEL)
    assert request.json == {
        "input": SMALL,
        "webhook": "http://127.0.0.1:9/webhooks/replicate",
        "webhook_events_filter": ["start", "completed"],
    }
    assert request.headers["cancel-after"] == "60s"
    await client.cancel_prediction(created.id)


async def test_webhook_filter_without_webhook_is_not_sent(stack: Stack, client: ReplicateClient) -> None:
    await client.create_prediction(model=IMAGES, input=SMALL, webhook_events_filter=["completed"])
    assert stack.proxy.calls("POST", CREATE_BY_MODEL)[0].json == {"input": SMALL}


async def test_create_argument_errors(stack: Stack, client: ReplicateClient) -> None:
    with pytest.raises(ValueError, match="model or a version"):
        await client.create_prediction(input={})
    with pytest.raises(ValueError, match="wait"):
        await client.create_prediction(model=IMAGES, input={}, wait=61)
    assert stack.proxy.requests == []


async def test_prefer_wait_returns_the_finished_prediction(stack: Stack, make_client: MakeClient) -> None:
    # The run outlasts the client's own timeout: Prefer: wait must stretch the read timeout by its wait.
    stack.config.run_seconds = 2.0
    client = make_client(timeout_seconds=0.5)
    prediction = await client.create_prediction(model=STILL, input={"prompt": "now"}, wait=30)
    assert stack.proxy.calls("POST", f"/v1/models/{STILL}/predictions")[0].headers["prefer"] == "wait=30"
    assert prediction.status == "succeeded"
    assert output_urls(prediction.output)


async def test_cancel(stack: Stack, client: ReplicateClient) -> None:
    stack.config.run_seconds = 30.0
    created = await client.create_prediction(model=IMAGES, input=SMALL)
    canceled = await client.cancel_prediction(created.id)
    assert canceled.status == "canceled" and canceled.is_terminal
    assert stack.proxy.calls("POST", f"/v1/predictions/{created.id}/cancel")[0].body == b""
    assert (await client.get_prediction(created.id)).status == "canceled"


async def test_cancel_after_before_start_is_aborted_and_terminal(stack: Stack, client: ReplicateClient) -> None:
    stack.config.start_seconds = 30.0
    created = await client.create_prediction(model=IMAGES, input=SMALL, cancel_after="100ms")
    done = await finished(client, created.id)
    assert done.status == "aborted" and done.is_terminal


async def test_ids_are_quoted_as_one_segment(stack: Stack, client: ReplicateClient) -> None:
    with pytest.raises(ProviderNotFoundError):
        await client.get_prediction("a b?c")
    (request,) = stack.proxy.requests
    assert (request.path, request.query) == ("/v1/predictions/a b?c", {})


# --- outputs ---------------------------------------------------------------------------------------


async def test_output_is_a_list_of_urls(stack: Stack, client: ReplicateClient) -> None:
    created = await client.create_prediction(model=IMAGES, input={**SMALL, "num_outputs": 2})
    done = await finished(client, created.id)
    assert isinstance(done.output, list) and len(done.output) == 2
    urls = output_urls(done.output)
    assert urls == done.output and all(url.startswith(stack.url + "/files/") for url in urls)
    async with httpx.AsyncClient() as http:
        assert [(await http.get(url)).status_code for url in urls] == [200, 200]


async def test_output_is_one_url(stack: Stack, client: ReplicateClient) -> None:
    created = await client.create_prediction(model=STILL, input={"prompt": "a red fox"})
    done = await finished(client, created.id)
    assert isinstance(done.output, str) and output_urls(done.output) == [done.output]


PNG_DATA = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (None, []),
        (PNG_DATA, [PNG_DATA]),
        ([PNG_DATA, "https://replicate.delivery/b.png"], [PNG_DATA, "https://replicate.delivery/b.png"]),
        (
            {"video": "https://replicate.delivery/v.mp4", "poster": "https://replicate.delivery/p.jpg", "fps": 24},
            ["https://replicate.delivery/v.mp4", "https://replicate.delivery/p.jpg"],
        ),
        (
            {"frames": [{"url": "https://x.replicate.delivery/f1.png"}], "caption": "a cat"},
            ["https://x.replicate.delivery/f1.png"],
        ),
        ("just some text", []),
        (["text", 3, None, True], []),
    ],
)
async def test_output_shapes_the_simulator_never_makes(
    stack: Stack, client: ReplicateClient, output: Any, urls: list[str]
) -> None:
    """A data: URI (Prefer: wait may answer one), objects of URLs, and outputs that name no file."""
    created = await client.create_prediction(model=STILL, input={"prompt": "x"})
    stack.proxy.script(
        "GET", f"/v1/predictions/{created.id}", ok({**created.raw, "status": "succeeded", "output": output})
    )
    prediction = await client.get_prediction(created.id)
    assert prediction.output == output
    assert output_urls(prediction.output) == urls


# --- lists -----------------------------------------------------------------------------------------


async def test_list_predictions_follows_next(stack: Stack, client: ReplicateClient) -> None:
    created = [(await client.create_prediction(model=IMAGES, input=SMALL)).id for _ in range(5)]
    assert [p.id async for p in client.list_predictions()] == created[::-1]  # newest first, pages of 3
    pages = stack.proxy.calls("GET", "/v1/predictions")
    assert len(pages) == 2 and pages[0].query == {} and list(pages[1].query) == ["cursor"]


async def test_list_predictions_stops_at_limit(stack: Stack, client: ReplicateClient) -> None:
    created = [(await client.create_prediction(model=IMAGES, input=SMALL)).id for _ in range(5)]
    assert [p.id async for p in client.list_predictions(limit=3)] == created[::-1][:3]
    assert stack.proxy.count("GET", "/v1/predictions") == 1
    assert [p.id async for p in client.list_predictions(limit=4)] == created[::-1][:4]
    assert stack.proxy.count("GET", "/v1/predictions") == 3
    assert [p.id async for p in client.list_predictions(limit=0)] == []
    assert stack.proxy.count("GET", "/v1/predictions") == 3


async def test_a_page_cycle_ends(stack: Stack, client: ReplicateClient) -> None:
    created = await client.create_prediction(model=IMAGES, input=SMALL)
    page = {"next": f"{stack.url}/v1/predictions?cursor=same", "previous": None, "results": [created.raw]}
    stack.proxy.script("GET", "/v1/predictions", ok(page), forever=True)
    assert [p.id async for p in client.list_predictions()] == [created.id, created.id]
    assert stack.proxy.count("GET", "/v1/predictions") == 2


async def test_next_on_another_host_is_refused(stack: Stack, client: ReplicateClient) -> None:
    created = await client.create_prediction(model=IMAGES, input=SMALL)
    page = {"next": "https://elsewhere.example/v1/predictions?cursor=x", "previous": None, "results": [created.raw]}
    stack.proxy.script("GET", "/v1/predictions", ok(page))
    seen = []
    with pytest.raises(ProviderBadResponseError, match="another host"):
        async for prediction in client.list_predictions():
            seen.append(prediction.id)
    assert seen == [created.id]


@pytest.mark.parametrize(
    "body",
    [{"results": "nope"}, {"next": 5, "results": []}, {"next": None, "results": ["x"]}, {"next": None}],
)
async def test_malformed_pages_are_bad_responses(stack: Stack, client: ReplicateClient, body: dict[str, Any]) -> None:
    stack.proxy.script("GET", "/v1/models", ok(body))
    with pytest.raises(ProviderBadResponseError):
        [m async for m in client.list_models()]


# --- models, versions, collections, search ---------------------------------------------------------


async def test_models(stack: Stack, client: ReplicateClient) -> None:
    models = [m async for m in client.list_models()]
    assert len(models) >= 5 and all(m["owner"] == "darkroom-sim" for m in models)
    pages = stack.proxy.count("GET", "/v1/models")
    assert pages == -(-len(models) // 3)  # every page of 3, once
    async for first in client.list_models():
        assert first == models[0]
        break
    assert stack.proxy.count("GET", "/v1/models") == pages + 1  # the next page waits until asked for
    model = await client.get_model("darkroom-sim", "pixel-forge")
    assert model["name"] == "pixel-forge" and model["default_example"]["status"] == "succeeded"


async def test_versions_carry_the_openapi_schema(client: ReplicateClient) -> None:
    model = await client.get_model("darkroom-sim", "pixel-forge")
    versions = await client.list_model_versions("darkroom-sim", "pixel-forge")
    assert [v["id"] for v in versions] == [model["latest_version"]["id"]]
    version = await client.get_model_version("darkroom-sim", "pixel-forge", versions[0]["id"])
    schemas = version["openapi_schema"]["components"]["schemas"]
    assert {"Input", "Output"} <= set(schemas)
    assert "prompt" in schemas["Input"]["required"]


async def test_collection_and_search(stack: Stack, client: ReplicateClient) -> None:
    collection = await client.get_collection("image-to-video")
    assert collection["slug"] == "image-to-video"
    assert {"still-motion", "frame-flow"} <= {m["name"] for m in collection["models"]}
    found = await client.search("pixel", limit=3)
    assert found["query"] == "pixel" and found["models"][0]["model"]["name"] == "pixel-forge"
    assert stack.proxy.calls("GET", "/v1/search")[0].query == {"query": ["pixel"], "limit": ["3"]}


# --- webhooks and files ----------------------------------------------------------------------------


async def test_webhook_secret(stack: Stack, client: ReplicateClient) -> None:
    assert await client.get_webhook_secret() == stack.config.webhook_secret
    stack.proxy.script("GET", "/v1/webhooks/default/secret", ok({"nokey": 1}))
    with pytest.raises(ProviderBadResponseError):
        await client.get_webhook_secret()


async def test_upload_file(stack: Stack, client: ReplicateClient) -> None:
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    uploaded = await client.upload_file(content, "cat.png", "image/png", {"source": "darkroom"})
    assert (uploaded["name"], uploaded["content_type"], uploaded["size"], uploaded["metadata"]) == (
        "cat.png",
        "image/png",
        len(content),
        {"source": "darkroom"},
    )
    (request,) = stack.proxy.calls("POST", "/v1/files")
    parts = _multipart(request.headers["content-type"], request.body)
    assert parts["content"] == (content, 'filename="cat.png"', "image/png")
    assert parts["filename"][0] == b"cat.png" and parts["type"][0] == b"image/png"
    assert json.loads(parts["metadata"][0]) == {"source": "darkroom"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(uploaded["urls"]["get"])).content == content


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (value, filename attribute or "", part content type or "") of a multipart body."""
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts: dict[str, tuple[bytes, str, str]] = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, value = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        disposition = next(line for line in lines if line.lower().startswith("content-disposition"))
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        filename = next((p.strip() for p in disposition.split(";") if p.strip().startswith("filename=")), "")
        kind = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type")), "")
        parts[name] = (value, filename, kind)
    return parts


# --- life cycle and settings -----------------------------------------------------------------------


async def test_context_manager_closes(stack: Stack) -> None:
    async with ReplicateClient(stack.url, TOKEN) as client:
        await client.get_webhook_secret()
    with pytest.raises(RuntimeError):
        await client.get_webhook_secret()
    await client.aclose()  # idempotent


def test_the_client_settings_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPLICATE_API_TOKEN", "REPLICATE_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("REPLICATE_MAX_RETRIES", "7")
    client = REPLICATE.build(Settings()).client
    assert client.base_url == "http://127.0.0.1:8123/simulator"  # no token: the embedded simulator
    assert client._http.headers["authorization"] == "Bearer simulator"
    assert client.retry_policy.max_retries == 7

    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_real")
    monkeypatch.setenv("REPLICATE_API_BASE_URL", "https://replicate.example/")
    monkeypatch.setenv("REPLICATE_TIMEOUT_SECONDS", "12")
    monkeypatch.setenv("REPLICATE_CONNECT_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("REPLICATE_RETRY_BASE_SECONDS", "0.25")
    monkeypatch.setenv("REPLICATE_RETRY_MAX_SECONDS", "9")
    client = REPLICATE.build(Settings()).client
    assert client.base_url == "https://replicate.example"
    assert client._http.headers["authorization"] == "Bearer r8_real"
    assert client._http.timeout == httpx.Timeout(12.0, connect=2.0)
    assert (client.retry_policy.base_seconds, client.retry_policy.max_seconds) == (0.25, 9.0)
