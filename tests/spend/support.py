"""GraphQL documents and helpers the cost, spend and budget tests share."""

from __future__ import annotations

import re
from typing import Any

from tests.support.darkroom import Darkroom
from tests.support.graphql import data

COST_FIELDS = "amount currency basis estimated"
COST = f"cost {{ {COST_FIELDS} }}"

START = f"""
mutation Start($model: String!, $input: JSON!) {{
  startGeneration(input: {{model: $model, input: $input}}) {{
    generation {{ id status predictTime {COST} media {{ id status }} }}
    userErrors {{ field message code }}
  }}
}}
"""

ANIMATE = f"""
mutation Animate($mediaId: ID!, $model: String, $input: JSON) {{
  animateImage(input: {{mediaId: $mediaId, model: $model, input: $input}}) {{
    generation {{ id {COST} }}
    userErrors {{ field message code }}
  }}
}}
"""

GET = f"query Get($id: ID!) {{ generation(id: $id) {{ id status predictTime {COST} media {{ id status }} }} }}"

ESTIMATE = f"""
query Estimate($model: String!, $input: JSON!) {{ estimateCost(model: $model, input: $input) {{ {COST_FIELDS} }} }}
"""

VIEWER = "{ viewer { spend { amount currency budget period periodStart } } }"

STATS = """
{ stats { currency models { model spend predictTime } keys { keyId keyName generations spend } } }
"""


async def start(client: Any, model: str, input: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = data(await client.query(START, {"model": model, "input": input}))["startGeneration"]
    return payload


async def estimate(client: Any, model: str, input: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = data(await client.query(ESTIMATE, {"model": model, "input": input}))["estimateCost"]
    return found


async def spent_metric(darkroom: Darkroom, model: str) -> float:
    """darkroom_spend_total for `model`, scraped from /metrics (0 before its first settled cost)."""
    text = (await darkroom.http.get("/metrics")).text
    pattern = rf'^darkroom_spend_total{{model="{re.escape(model)}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
