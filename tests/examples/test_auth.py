"""With API keys in use, the examples authenticate with DARKROOM_API_KEY over HTTP and WebSocket alike."""

from __future__ import annotations

import json
from pathlib import Path

from server.graphql.pagination import encode_cursor
from tests.examples.conftest import Client
from tests.examples.support import EXAMPLES, example_env, require_programs, run
from tests.support.darkroom import Darkroom

QUERIES = EXAMPLES / "curl" / "queries.sh"


async def test_follow_with_an_api_key(client: Client, darkroom: Darkroom, tmp_path: Path) -> None:
    token = (await darkroom.runtime.api_keys.create("client examples")).token

    refused = await run(*client.follow, "--out", tmp_path / "refused", env=example_env(darkroom.base_url))
    assert refused.code == 2, refused
    assert "started generation" not in refused.stdout, refused

    env = example_env(darkroom.base_url, DARKROOM_API_KEY=token)
    result = await run(*client.follow, "--out", tmp_path / "downloads", env=env)
    assert result.code == 0, result
    assert "sha256 ok" in result.stdout, result

    refused_feed = await run(*client.feed, env=example_env(darkroom.base_url))
    assert refused_feed.code == 2, refused_feed
    assert "refused" in refused_feed.stderr, refused_feed

    # The whole log from its start: the generation above, replayed to its owner.
    feed = await run(*client.feed, "--after", encode_cursor("event", 0), "--json", "--idle-timeout", "2", env=env)
    assert feed.code == 0, feed
    types = [json.loads(line)["type"] for line in feed.stdout.splitlines()]
    assert types[0] == "GENERATION_CREATED" and types[-1] == "MEDIA_UPDATED", feed


async def test_curl_queries_with_an_api_key(darkroom: Darkroom, tmp_path: Path) -> None:
    require_programs("bash", "curl", "jq", "openssl")
    token = (await darkroom.runtime.api_keys.create("curl")).token
    env = example_env(darkroom.base_url, DARKROOM_API_KEY=token, OUT_DIR=str(tmp_path / "downloads"))
    result = await run("bash", QUERIES, env=env)
    assert result.code == 0, result
    assert "sha256 ok" in result.stdout, result

    refused = await run("bash", QUERIES, env=example_env(darkroom.base_url, OUT_DIR=str(tmp_path / "refused")))
    assert refused.code != 0, refused
    assert "UNAUTHENTICATED" in refused.stderr, refused
