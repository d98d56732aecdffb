"""startGeneration and uploadMedia with an idempotency key and metadata, as the tests of both send them."""

from __future__ import annotations

import json
from typing import Any

from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL
from tests.support.graphql import data

START = """
mutation Start($model: String!, $input: JSON!, $key: String, $metadata: JSON) {
  startGeneration(input: {model: $model, input: $input, idempotencyKey: $key, metadata: $metadata}) {
    generation { id model input metadata }
    userErrors { field message code }
  }
}
"""

UPLOAD = """
mutation Upload($file: Upload!, $key: String, $metadata: JSON) {
  uploadMedia(input: {file: $file, idempotencyKey: $key, metadata: $metadata}) {
    media { id sha256 metadata generation { id } }
    userErrors { field message code }
  }
}
"""

PROMPT = {"prompt": "a lighthouse at dusk"}


async def start(darkroom: Darkroom, key: str | None, input: Any = None, **variables: Any) -> dict[str, Any]:
    sent = {"model": IMAGE_MODEL, "input": PROMPT if input is None else input, "key": key, **variables}
    payload: dict[str, Any] = data(await darkroom.query(START, sent))["startGeneration"]
    return payload


def creates(darkroom: Darkroom) -> int:
    """Predictions the simulator was asked to create."""
    return len(darkroom.simulator.stats.creates)


async def upload(
    darkroom: Darkroom, content: bytes, key: str | None, filename: str = "picture.png", **variables: Any
) -> dict[str, Any]:
    """uploadMedia as a multipart request (the GraphQL multipart request spec), with an idempotency key."""
    operations = {"query": UPLOAD, "variables": {"file": None, "key": key, **variables}}
    response = await darkroom.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": '{"0": ["variables.file"]}'},
        files={"0": (filename, content, "image/png")},
        headers={"Apollo-Require-Preflight": "true"},
    )
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = data(response.json())["uploadMedia"]
    return payload
