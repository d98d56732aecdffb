"""GraphQL documents and flows of the catalogue and image-to-video tests (over real HTTP).

Generations are started, fetched, awaited and followed with `tests.support.flows`; what is here is
only what the catalogue and animateImage add.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from server.provider.registry import Providers
from server.provider.replicate import ReplicateProvider
from server.provider.replicate.client import ReplicateClient
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL, RECORD_FIELDS, VIDEO_MODEL, start_generation, wait_settled
from tests.support.graphql import data
from tests.support.live_server import free_port

SIM = "darkroom-sim"
PIXEL_FORGE = IMAGE_MODEL  # text-to-image, an array of images
SNAP_STILL = f"{SIM}/snap-still"  # text-to-image, one image
MOTION_SKETCH = VIDEO_MODEL  # text-to-video, with a secret input
STILL_MOTION = f"{SIM}/still-motion"  # image-to-video, image input `image`
FRAME_FLOW = f"{SIM}/frame-flow"  # image-to-video, image input `first_frame_image`

MODEL_FIELDS = """
    id ref owner name description kind coverImageUrl runCount versionId collections
    acceptsImage imageInputField inputSchema fetchedAt stale
    inputs {
      name type title description default minimum maximum exclusiveMinimum exclusiveMaximum options
      format itemType required nullable isFile isImage isImageInput isSecret order
    }
"""

MODELS = f"""
query Models($kind: MediaKind, $search: String, $first: Int, $after: String) {{
  models(kind: $kind, search: $search, first: $first, after: $after) {{
    edges {{ cursor node {{ {MODEL_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

MODEL = f"""
query Model($ref: String!) {{ model(ref: $ref) {{ {MODEL_FIELDS} }} }}
"""

ANIMATE = f"""
mutation Animate($mediaId: ID!, $model: String, $input: JSON) {{
  animateImage(input: {{mediaId: $mediaId, model: $model, input: $input}}) {{
    generation {{ {RECORD_FIELDS} }}
    userErrors {{ field message code retryAfterSeconds }}
  }}
}}
"""

ANIMATIONS = """
query Animations($id: ID!) { node(id: $id) { ... on Media { animations { id sourceMedia { id } } } } }
"""

GENERATIONS = """
query { generations(first: 50) { edges { node { id model } } } }
"""


async def models(darkroom: Darkroom, **variables: Any) -> list[dict[str, Any]]:
    page = data(await darkroom.query(MODELS, variables))["models"]
    return [edge["node"] for edge in page["edges"]]


async def animate(darkroom: Darkroom, media_id: str, model: str | None = None, input: Any = None) -> dict[str, Any]:
    """The animateImage payload (generation and userErrors)."""
    variables = {"mediaId": media_id, "model": model, "input": input}
    payload: dict[str, Any] = data(await darkroom.query(ANIMATE, variables))["animateImage"]
    return payload


async def ready_image(darkroom: Darkroom, model: str = SNAP_STILL) -> dict[str, Any]:
    """A READY image media made by a text-to-image model."""
    started = await start_generation(darkroom, model=model)
    done = await wait_settled(darkroom, started["id"])
    assert done["status"] == "SUCCEEDED", done
    image: dict[str, Any] = done["media"][0]
    assert (image["kind"], image["status"]) == ("IMAGE", "READY"), image
    return image


async def generation_count(darkroom: Darkroom) -> int:
    return len(data(await darkroom.query(GENERATIONS))["generations"]["edges"])


async def animations_of(darkroom: Darkroom, media_id: str) -> list[str]:
    """IDs of the generations that animate the media `media_id` (each must point back at it)."""
    found = data(await darkroom.query(ANIMATIONS, {"id": media_id}))["node"]["animations"]
    assert all(item["sourceMedia"]["id"] == media_id for item in found)
    return [item["id"] for item in found]


@asynccontextmanager
async def provider_down(darkroom: Darkroom) -> AsyncIterator[None]:
    """Inside the block every catalogue call to the provider fails to connect (no retries)."""
    catalogue = darkroom.runtime.catalogue
    working = catalogue.providers
    client = ReplicateClient(f"http://127.0.0.1:{free_port()}", "r8_test", max_retries=0, connect_timeout_seconds=1)
    catalogue.providers = Providers([ReplicateProvider(client)])
    try:
        yield
    finally:
        catalogue.providers = working
        await client.aclose()
