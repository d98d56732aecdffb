"""The GraphQL endpoint over real HTTP: GraphiQL, GET and POST, and clear errors for bad input."""

from __future__ import annotations

import base64
import re
from typing import Any

from sqlalchemy import event, func, select

from server.db.models import Generation, Media
from server.domain import GenerationStatus, MediaKind, MediaStatus
from tests.support.darkroom import Darkroom


async def test_graphiql_is_served_to_browsers_with_every_asset_from_darkroom(darkroom: Darkroom) -> None:
    response = await darkroom.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert len(assets) >= 8, assets
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/graphiql/"), asset
        served = await darkroom.http.get(asset)
        assert served.status_code == 200, asset
        assert served.content, asset
    # Each vendored package comes with its license.
    for package in ("react", "react-dom", "graphiql", "plugin-explorer"):
        assert (await darkroom.http.get(f"/graphiql/vendor/{package}/LICENSE")).status_code == 200, package


async def test_graphiql_can_be_switched_off(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(graphiql_enabled=False, poller_enabled=False) as darkroom:
        page = await darkroom.http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert page.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert (await darkroom.http.get("/graphiql/graphiql.js")).status_code == 404
        assert (await darkroom.http.post("/graphql", json={"query": "{ __typename }"})).status_code == 200


async def test_queries_over_get_and_post(darkroom: Darkroom) -> None:
    query = "{ generations(first: 5) { edges { cursor } pageInfo { hasNextPage endCursor } } }"
    by_get = await darkroom.http.get("/graphql", params={"query": query})
    by_post = await darkroom.http.post("/graphql", json={"query": query})
    expected = {"data": {"generations": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}}
    assert by_get.json() == expected
    assert by_post.json() == expected


async def test_mutations_are_refused_over_get(darkroom: Darkroom) -> None:
    response = await darkroom.http.get(
        "/graphql", params={"query": 'mutation { deleteMedia(input: {mediaId: "x"}) { deletedMediaId } }'}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def _error(darkroom: Darkroom, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await darkroom.query(query, variables)
    assert result.get("errors"), result
    return result


async def test_unknown_fields_and_wrong_types_are_validation_errors(darkroom: Darkroom) -> None:
    unknown = await _error(darkroom, "{ generations { edges { node { nope } } } }")
    assert "nope" in unknown["errors"][0]["message"]
    wrong = await _error(darkroom, '{ generations(first: "ten") { edges { cursor } } }')
    assert "Int" in wrong["errors"][0]["message"]
    unknown_input = await _error(
        darkroom,
        'mutation { startGeneration(input: {model: "a/b", input: {}, extra: 1}) { userErrors { code } } }',
    )
    assert "extra" in unknown_input["errors"][0]["message"]


async def test_page_size_over_the_cap_is_refused(darkroom: Darkroom) -> None:
    cap = darkroom.settings.graphql.max_page_size
    result = await _error(darkroom, "query($n: Int) { media(first: $n) { edges { cursor } } }", {"n": cap + 1})
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert str(cap) in result["errors"][0]["message"]
    zero = await _error(darkroom, "{ generations(first: 0) { edges { cursor } } }")
    assert zero["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_malformed_ids_and_cursors_are_clear_errors_and_change_nothing(darkroom: Darkroom) -> None:
    for bad in ["not-base64!!", base64.b64encode(b"Generation:not-a-uuid").decode(), ""]:
        result = await _error(darkroom, "query($id: ID!) { generation(id: $id) { id } }", {"id": bad})
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    media_id_as_generation = base64.urlsafe_b64encode(b"Media:6f1c7d2e-1b7a-4d43-9f3e-0a8d8c1b2a3f").decode()
    result = await _error(
        darkroom,
        "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { userErrors { code } } }",
        {"id": media_id_as_generation},
    )
    assert "not a Generation ID" in result["errors"][0]["message"]
    cursor = await _error(darkroom, '{ generations(after: "garbage") { edges { cursor } } }')
    assert cursor["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    async with darkroom.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Generation)) == 0


async def _seed(darkroom: Darkroom, generations: int, media_each: int) -> None:
    async with darkroom.runtime.sessions.begin() as session:
        for n in range(generations):
            generation = Generation(
                provider="replicate",
                kind=MediaKind.IMAGE,
                model_ref="darkroom-sim/pixel-forge",
                input={"prompt": f"p{n}"},
                status=GenerationStatus.SUCCEEDED,
                provider_id=f"seed{n}",
            )
            session.add(generation)
            await session.flush()
            for position in range(media_each):
                session.add(
                    Media(
                        generation_id=generation.id,
                        position=position,
                        kind=MediaKind.IMAGE,
                        status=MediaStatus.READY,
                        source_url="https://replicate.delivery/x.png",
                    )
                )


def _count_statements(darkroom: Darkroom) -> list[str]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(darkroom.runtime.engine.sync_engine, "before_cursor_execute", record)
    return statements


async def test_page_cost_does_not_grow_with_page_size(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        await _assert_page_cost_is_flat(darkroom)


async def _assert_page_cost_is_flat(darkroom: Darkroom) -> None:
    await _seed(darkroom, generations=30, media_each=2)
    statements = _count_statements(darkroom)
    query = """query($n: Int) { generations(first: $n) { edges { node {
        id status input logs media { id status url generation { id model } animations { id } } sourceMedia { id }
    } } } }"""
    counts = {}
    for size in (2, 25):
        statements.clear()
        result = await darkroom.query(query, {"n": size})
        assert "errors" not in result, result
        assert len(result["data"]["generations"]["edges"]) == size
        counts[size] = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    assert counts[2] == counts[25], (counts, statements)


async def test_pagination_walks_every_row_once(darkroom: Darkroom) -> None:
    await _seed(darkroom, generations=7, media_each=1)
    seen: list[str] = []
    after = None
    while True:
        result = await darkroom.query(
            "query($a: String) { generations(first: 3, after: $a) {"
            " edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            {"a": after},
        )
        page = result["data"]["generations"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 7
    media = await darkroom.query("{ media(first: 100) { edges { node { id kind status generation { id } } } } }")
    assert len(media["data"]["media"]["edges"]) == 7


async def test_node_resolves_every_type(darkroom: Darkroom) -> None:
    await _seed(darkroom, generations=1, media_each=1)
    listing = await darkroom.query("{ media(first: 1) { edges { node { id generation { id } } } } }")
    node = listing["data"]["media"]["edges"][0]["node"]
    for global_id, typename in ((node["id"], "Media"), (node["generation"]["id"], "Generation")):
        result = await darkroom.query("query($id: ID!) { node(id: $id) { __typename id } }", {"id": global_id})
        assert result["data"]["node"] == {"__typename": typename, "id": global_id}
