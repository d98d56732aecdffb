"""The Python (gql) and Node (graphql-ws) examples, run as a user runs them, against a live server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.examples.conftest import Client
from tests.examples.support import Background, example_env, run
from tests.support.darkroom import Darkroom
from tests.support.flows import get_generation, settled, start_generation
from tests.support.live_server import free_port
from tests.support.waiting import eventually, new_subscriptions


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def event_settled(event: dict[str, Any]) -> bool:
    generation = event["generation"]
    return generation["status"] == "SUCCEEDED" and all(m["status"] == "READY" for m in generation["media"])


async def until_subscribed(feed: Background, darkroom: Darkroom, opened_before: int) -> None:
    """The example says it subscribed, and its subscription is registered on the server."""
    await eventually(lambda: "subscribed" in feed.stderr, timeout=30)
    await new_subscriptions(darkroom.runtime.hub, opened_before, timeout=30)


async def test_follow_starts_a_generation_watches_it_and_downloads_every_file(
    client: Client, darkroom: Darkroom, tmp_path: Path
) -> None:
    out = tmp_path / "downloads"
    result = await run(*client.follow, "--num-outputs", "2", "--out", out, env=example_env(darkroom.base_url))

    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("started generation "), result
    statuses = [line.split()[0] for line in lines[1:] if not line.startswith("downloaded")]
    assert statuses[0] in ("STARTING", "PROCESSING"), result  # the state when the subscription began
    order = ["STARTING", "PROCESSING", "SUCCEEDED"]
    ranks = [order.index(status) for status in statuses]
    assert ranks == sorted(ranks) and statuses[-1] == "SUCCEEDED", result
    assert lines[-3].startswith("SUCCEEDED") and lines[-3].endswith("media: READY, READY"), result
    downloaded = [line for line in lines if line.startswith("downloaded ")]
    assert len(downloaded) == 2 and all("sha256 ok" in line for line in downloaded), result
    files = sorted(out.iterdir())
    assert len(files) == 2
    for file in files:
        assert file.name.startswith(hashlib.sha256(file.read_bytes()).hexdigest()[:16])
        assert file.suffix == ".webp"


async def test_follow_sent_again_with_its_idempotency_key_follows_the_same_generation(
    client: Client, darkroom: Darkroom, tmp_path: Path
) -> None:
    env = example_env(darkroom.base_url)
    runs = [
        await run(*client.follow, "--idempotency-key", "cover-A-17", "--out", tmp_path / name, env=env)
        for name in ("first", "again")
    ]

    assert all(result.code == 0 for result in runs), runs
    first, again = (result.stdout.splitlines()[0] for result in runs)
    assert first == again and first.endswith("(idempotency key cover-A-17)"), runs
    assert len(darkroom.simulator.stats.creates) == 1


async def test_follow_shows_a_queued_generation_waiting_its_turn_and_resubscribes_across_a_restart(
    client: Client, start_darkroom: Any, tmp_path: Path
) -> None:
    port = free_port()
    options = ("--retry-base", "0.05", "--retry-cap", "0.4", "--out", tmp_path / "out")
    follow: Background | None = None
    try:
        # The holder never finishes here (a long run, and the simulator forgets it in the restart), so the
        # followed generation waits in line until the server restarts with room for it.
        async with start_darkroom(port=port, max_running_per_key=1, simulator_run_seconds=60.0) as first:
            await start_generation(first, "holds the only slot")
            follow = await Background.start(*client.follow, *options, env=example_env(first.base_url), logs=tmp_path)
            await eventually(lambda: "QUEUED" in follow.stdout, timeout=30)
        await eventually(lambda: "connection lost" in follow.stderr, timeout=30)

        async with start_darkroom(port=port, max_running_per_key=2):
            result = await follow.finish(timeout=60)
    finally:
        if follow is not None:
            await follow.stop()

    assert result.code == 0, result
    lines = [line for line in result.stdout.splitlines()[1:] if not line.startswith("downloaded")]
    assert lines[0].startswith("QUEUED") and "#1 in line: this key runs at most 1 generation" in lines[0], result
    assert lines[-1].startswith("SUCCEEDED"), result
    assert "sha256 ok" in result.stdout, result
    # The shutdown closed the socket as a service restart; the example subscribed again and followed on.
    assert "1012" in result.stderr.split("connection lost", 1)[1].splitlines()[0], result


async def test_follow_reports_refused_input_and_exits_2(client: Client, darkroom: Darkroom, tmp_path: Path) -> None:
    result = await run(
        *client.follow, "--num-outputs", "99", "--out", tmp_path / "none", env=example_env(darkroom.base_url)
    )
    assert result.code == 2, result
    assert "OUT_OF_RANGE" in result.stderr and "num_outputs" in result.stderr, result


async def test_feed_resumes_after_a_cursor_with_no_gap_and_no_duplicate(
    client: Client, darkroom: Darkroom, tmp_path: Path
) -> None:
    env = example_env(darkroom.base_url)
    opened = darkroom.runtime.hub.subscriptions_opened
    feed = await Background.start(*client.feed, "--count", "3", "--json", env=env, logs=tmp_path / "first")
    try:
        await until_subscribed(feed, darkroom, opened)
        generation = await start_generation(darkroom)
        first = await feed.finish(timeout=60)
    finally:
        await feed.stop()
    assert first.code == 0, first
    seen = json_lines(first.stdout)
    assert len(seen) == 3, first
    await eventually(lambda: _settled(darkroom, generation), timeout=60)

    resumed = await run(*client.feed, "--after", seen[0]["cursor"], "--json", "--idle-timeout", "2", env=env)

    assert resumed.code == 0, resumed
    replayed = json_lines(resumed.stdout)
    assert [event["cursor"] for event in replayed[:2]] == [event["cursor"] for event in seen[1:]], resumed
    cursors = [event["cursor"] for event in seen[:1] + replayed]
    assert len(set(cursors)) == len(cursors), "no event twice"
    assert {event["generation"]["id"] for event in replayed} == {generation["id"]}
    sequences = [event["sequence"] for event in seen[:1] + replayed]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "no gap"
    assert event_settled(replayed[-1]), replayed[-1]


async def _settled(darkroom: Darkroom, generation: dict[str, Any]) -> bool:
    return settled(await get_generation(darkroom, generation["id"]))


async def test_feed_refuses_a_malformed_cursor(client: Client, darkroom: Darkroom) -> None:
    result = await run(*client.feed, "--after", "not-a-cursor", env=example_env(darkroom.base_url))
    assert result.code == 2, result
    assert "not a valid cursor" in result.stderr, result


async def test_feed_reconnects_after_a_server_restart_and_misses_nothing(
    client: Client, start_darkroom: Any, tmp_path: Path
) -> None:
    port = free_port()
    # Short backoff bounds, so the retries while the server is down cost the test little.
    options = ("--json", "--idle-timeout", "5", "--retry-base", "0.05", "--retry-cap", "0.4", "--retry-for", "60")
    feed: Background | None = None
    try:
        async with start_darkroom(port=port) as first:
            opened = first.runtime.hub.subscriptions_opened
            feed = await Background.start(*client.feed, *options, env=example_env(first.base_url), logs=tmp_path)
            await until_subscribed(feed, first, opened)
            before = await start_generation(first, "before the restart")
            await eventually(lambda: any(event_settled(event) for event in json_lines(feed.stdout)), timeout=60)
        await eventually(lambda: "connection lost" in feed.stderr, timeout=30)
        await eventually(lambda: "reconnecting in" in feed.stderr, timeout=30)
        seen_before_the_drop = json_lines(feed.stdout)  # nothing can arrive while the server is down

        async with start_darkroom(port=port) as second:
            after = await start_generation(second, "while the feed was away")
            await eventually(lambda: _settled(second, after), timeout=60)
            result = await feed.finish(timeout=90)
    finally:
        if feed is not None:
            await feed.stop()

    assert result.code == 0, result
    # The shutdown closed the socket as a service restart, and the feed took that as "reconnect".
    assert "1012" in result.stderr.split("connection lost", 1)[1].splitlines()[0], result
    # It resubscribed after the last event it had printed: the server replayed from there.
    assert f"subscribed after {seen_before_the_drop[-1]['cursor']}" in result.stderr, result
    events = json_lines(result.stdout)
    assert events[: len(seen_before_the_drop)] == seen_before_the_drop, result
    cursors = [event["cursor"] for event in events]
    assert len(set(cursors)) == len(cursors), result
    for generation in (before, after):
        mine = [event for event in events if event["generation"]["id"] == generation["id"]]
        assert [event["sequence"] for event in mine] == list(range(1, len(mine) + 1)), result
        assert event_settled(mine[-1]), result
