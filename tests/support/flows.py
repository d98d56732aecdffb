"""GraphQL documents and small flows the end-to-end tests share."""

from __future__ import annotations

from typing import Any

from tests.support.graphql import data, ws_connect
from tests.support.waiting import eventually

IMAGE_MODEL = "darkroom-sim/pixel-forge"
VIDEO_MODEL = "darkroom-sim/motion-sketch"

GENERATION_FIELDS = """
  id status kind model progress error providerStatus sequence startedAt completedAt
  media { id kind status url contentType byteSize width height durationSeconds sha256 downloadAttempts downloadError }
"""

# Queries and mutations also show the stored input and the image a video was made from; the subscription
# (FOLLOW) keeps to the fields its events carry.
RECORD_FIELDS = f"""{GENERATION_FIELDS}  input sourceMedia {{ id kind status }}
"""

START = f"""
mutation Start($model: String!, $input: JSON!) {{
  startGeneration(input: {{model: $model, input: $input}}) {{
    generation {{ {RECORD_FIELDS} }}
    userErrors {{ field message code retryAfterSeconds }}
  }}
}}
"""

FOLLOW = f"subscription Follow($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}"

GET = f"query Get($id: ID!) {{ generation(id: $id) {{ {RECORD_FIELDS} }} }}"


async def start_payload(darkroom: Any, model: str, input: Any) -> dict[str, Any]:
    """The startGeneration payload: the generation, or the userErrors saying why there is none."""
    payload: dict[str, Any] = data(await darkroom.query(START, {"model": model, "input": input}))["startGeneration"]
    return payload


async def start_generation(
    darkroom: Any, prompt: str = "a lighthouse at dusk", *, model: str = IMAGE_MODEL, **extra: Any
) -> dict[str, Any]:
    payload = await start_payload(darkroom, model, {"prompt": prompt, **extra})
    assert payload["userErrors"] == [], payload
    return dict(payload["generation"])


async def get_generation(darkroom: Any, generation_id: str) -> dict[str, Any]:
    result = await darkroom.query(GET, {"id": generation_id})
    assert "errors" not in result, result
    return dict(result["data"]["generation"])


def settled(generation: dict[str, Any]) -> bool:
    terminal = generation["status"] in ("SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT")
    return terminal and all(media["status"] in ("READY", "FAILED") for media in generation["media"])


async def wait_settled(darkroom: Any, generation_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The generation once it is `settled`, polled over GraphQL."""

    async def check() -> dict[str, Any] | None:
        state = await get_generation(darkroom, generation_id)
        return state if settled(state) else None

    return dict(await eventually(check, timeout=timeout, interval=0.1))


async def follow(darkroom: Any, generation_id: str) -> list[dict[str, Any]]:
    """Every state the `generation` subscription (FOLLOW) sends, until it completes."""
    async with ws_connect(darkroom.base_url) as client:
        return [data(payload)["generation"] async for payload in client.subscribe(FOLLOW, {"id": generation_id})]
