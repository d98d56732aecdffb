"""Per-key mutation rate limits, and CORS for browser pages on the configured origins only."""

from __future__ import annotations

import uuid

import pytest
import websockets

from server.graphql.ids import encode_id
from server.services.access.buckets import LocalBuckets
from server.services.access.rate_limits import Limited, Rate, RateLimited, RateLimiter
from server.services.access.viewer import Viewer
from tests.auth.support import bearer, init, new_key, raw_socket
from tests.support.graphql import data

CANCEL = """mutation($id: ID!) {
  cancelGeneration(input: {id: $id}) { generation { id } userErrors { field message code retryAfterSeconds } }
}"""
APP = "https://app.example.com"
QUERY = "{ generations { edges { cursor } } }"


async def test_mutations_over_the_limit_are_answered_rate_limited(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(rate_limit_mutations_per_minute=6, rate_limit_mutations_burst=3) as darkroom:
        alice = await new_key(darkroom, "alice")
        bob = await new_key(darkroom, "bob")
        missing = {"id": encode_id("Generation", "00000000-0000-4000-8000-000000000000")}
        answers = [data(await alice.query(CANCEL, missing))["cancelGeneration"]["userErrors"][0] for _ in range(4)]
        assert [answer["code"] for answer in answers] == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"]
        limited = answers[-1]
        # 6 a minute: one more every 10 s.
        assert 0 < limited["retryAfterSeconds"] <= 10
        assert f"{limited['retryAfterSeconds']:g} s" in limited["message"]
        # Queries have a bucket of their own, and another key has its own buckets.
        assert "errors" not in await alice.query(QUERY)
        assert data(await bob.query(CANCEL, missing))["cancelGeneration"]["userErrors"][0]["code"] == "NOT_FOUND"


async def test_the_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(LocalBuckets(clock=lambda: now[0]), {Limited.MUTATIONS: Rate(per_minute=60, burst=2)})
    key = Viewer.key(uuid.uuid4())
    await limiter.take(key, Limited.MUTATIONS)
    await limiter.take(key, Limited.MUTATIONS)
    try:
        await limiter.take(key, Limited.MUTATIONS)
    except RateLimited as exc:
        assert exc.retry_after_seconds == 1.0
    else:
        raise AssertionError("the third mutation in a burst of two was allowed")
    now[0] = 1.0
    await limiter.take(key, Limited.MUTATIONS)
    # The open server's anonymous caller is not limited; 0 a minute turns the limit off.
    off = RateLimiter(LocalBuckets(), {Limited.MUTATIONS: Rate(per_minute=0, burst=1)})
    for _ in range(10):
        await limiter.take(Viewer.anonymous(), Limited.MUTATIONS)
        await off.take(key, Limited.MUTATIONS)


async def test_cors_answers_the_configured_origins_only(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(cors_origins=f"{APP}, https://admin.example.com") as darkroom:
        key = await new_key(darkroom, "gallery")
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = await darkroom.http.options("/graphql", headers={"Origin": APP, **preflight})
        assert allowed.status_code in (200, 204)
        assert allowed.headers["access-control-allow-origin"] == APP
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "POST" in allowed.headers["access-control-allow-methods"]

        other = await darkroom.http.options("/graphql", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code >= 400

        response = await darkroom.http.post(
            "/graphql",
            json={"query": "{ generations { edges { cursor } } }"},
            headers={"Origin": APP, **bearer(key.token)},
        )
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == APP
        foreign = await darkroom.http.post(
            "/graphql",
            json={"query": QUERY},
            headers={"Origin": "https://evil.example", **bearer(key.token)},
        )
        assert "access-control-allow-origin" not in foreign.headers

        # WebSockets from pages on the listed origins are accepted; from any other page, refused.
        async with raw_socket(darkroom.base_url, origin=APP) as socket:
            assert (await init(socket, bearer(key.token)))["type"] == "connection_ack"
        with pytest.raises(websockets.InvalidStatus):
            async with raw_socket(darkroom.base_url, origin="https://evil.example"):
                pass


async def test_without_cors_origins_no_origin_is_allowed(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom() as darkroom:
        response = await darkroom.http.post("/graphql", json={"query": QUERY}, headers={"Origin": APP})
        assert "access-control-allow-origin" not in response.headers
