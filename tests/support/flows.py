"""GraphQL documents and small flows the end-to-end tests share."""

from __future__ import annotations

from typing import Any

IMAGE_MODEL = "darkroom-sim/pixel-forge"

GENERATION_FIELDS = """
  id status kind model progress error providerStatus sequence startedAt completedAt
  media { id kind status url contentType byteSize width height durationSeconds sha256 downloadAttempts downloadError }
"""

START = f"""
mutation Start($model: String!, $input: JSON!) {{
  startGeneration(input: {{model: $model, input: $input}}) {{
    generation {{ {GENERATION_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}
"""

FOLLOW = f"subscription Follow($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}"

GET = f"query Get($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}"


async def start_generation(darkroom: Any, prompt: str = "a lighthouse at dusk", **extra: Any) -> dict[str, Any]:
    result = await darkroom.query(START, {"model": IMAGE_MODEL, "input": {"prompt": prompt, **extra}})
    assert "errors" not in result, result
    payload = result["data"]["startGeneration"]
    assert payload["userErrors"] == [], payload
    return dict(payload["generation"])


async def get_generation(darkroom: Any, generation_id: str) -> dict[str, Any]:
    result = await darkroom.query(GET, {"id": generation_id})
    assert "errors" not in result, result
    return dict(result["data"]["generation"])


def settled(generation: dict[str, Any]) -> bool:
    terminal = generation["status"] in ("SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT")
    return terminal and all(media["status"] in ("READY", "FAILED") for media in generation["media"])
