"""Keys from the command line: create prints the token once, list never shows it, revoke shuts the key out.

The CLI runs `server.cli.main` with its own engine, as another process would: the running server
learns of the revocation from the database alone, and closes the key's open sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from server import cli
from server.services.access.api_keys import hash_token
from tests.auth.support import bearer, closed_with, init, new_key, post, raw_socket
from tests.support.darkroom import Darkroom
from tests.support.waiting import eventually

QUERY = "{ generations(first: 1) { edges { cursor } } }"
FEED = "subscription { generationEvents { type } }"


async def darkroom_cli(*argv: str) -> tuple[int, str, str]:
    """Run `darkroom <argv>` in a thread (it runs its own event loop); exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return cli.main(list(argv))

    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database: str, tmp_path: Path) -> None:
    """The CLI reads its settings from the environment: point it at the test's database."""
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")


@pytest.mark.usefixtures("cli_env")
async def test_the_cli_creates_lists_and_revokes_keys(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    code, token, note = await darkroom_cli("api-key", "create", "--name", "gallery")
    token = token.strip()
    assert code == 0 and token.startswith("drk_") and len(token) > 40
    assert "not shown again" in note

    async with start_darkroom(auth_refresh_seconds=0.3) as darkroom:
        keys = await darkroom.runtime.api_keys.list_keys()
        assert [(key.name, key.prefix, key.token_hash) for key in keys] == [("gallery", token[:12], hash_token(token))]
        assert (await post(darkroom, QUERY)).status_code == 401
        assert (await post(darkroom, QUERY, bearer(token))).status_code == 200

        code, listing, _ = await darkroom_cli("api-key", "list")
        assert code == 0 and "gallery" in listing and token[:12] in listing and "active" in listing
        assert token not in listing

        async def last_used() -> object:
            return (await darkroom.runtime.api_keys.list_keys())[0].last_used_at

        assert await eventually(last_used, timeout=10)

        async with raw_socket(darkroom.base_url) as socket:
            assert (await init(socket, bearer(token)))["type"] == "connection_ack"
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FEED}}))
            code, out, err = await darkroom_cli("api-key", "revoke", token[:12])
            assert code == 0 and str(keys[0].id) in out
            assert "open again" in err
            assert await closed_with(socket) == 4403

        assert (await post(darkroom, QUERY, bearer(token))).status_code == 401
        code, listing, _ = await darkroom_cli("api-key", "list")
        assert "revoked" in listing
        [revoked] = await darkroom.runtime.api_keys.list_keys()
        assert revoked.revoked_at is not None

    code, _, err = await darkroom_cli("api-key", "revoke", "drk_nosuchkey")
    assert code == 1 and "not found" in err


async def test_revoking_in_process_closes_only_that_keys_sockets_at_once(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    # A long refresh interval: the revocation itself, not the periodic re-read, closes the socket.
    async with start_darkroom(auth_refresh_seconds=600) as darkroom:
        alice = await new_key(darkroom, "alice")
        bob = await new_key(darkroom, "bob")
        async with raw_socket(darkroom.base_url) as hers, raw_socket(darkroom.base_url) as his:
            assert (await init(hers, bearer(alice.token)))["type"] == "connection_ack"
            assert (await init(his, bearer(bob.token)))["type"] == "connection_ack"
            assert darkroom.runtime.api_keys.open_sockets == 2
            keys = {key.name: key for key in await darkroom.runtime.api_keys.list_keys()}
            await darkroom.runtime.api_keys.revoke(str(keys["alice"].id))
            assert await closed_with(hers, timeout=5) == 4403
            assert (await post(darkroom, QUERY, bearer(alice.token))).status_code == 401
            # Bob's socket is untouched and still answers.
            await his.send('{"type": "ping"}')
            assert '"pong"' in str(await asyncio.wait_for(his.recv(), 5))
            assert (await post(darkroom, QUERY, bearer(bob.token))).status_code == 200
        await _sockets_forgotten(darkroom)


async def _sockets_forgotten(darkroom: Darkroom) -> None:
    for _ in range(100):
        if darkroom.runtime.api_keys.open_sockets == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("closed sockets are still registered")
