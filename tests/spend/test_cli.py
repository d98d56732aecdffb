"""`darkroom api-key` with limits: create and update a key's budget, period and max running, and list them
with the spend of the key's current period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.services.access.api_keys import hash_token
from tests.auth.support import KeyClient
from tests.auth.test_revocation import darkroom_cli
from tests.spend.support import start


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database: str, tmp_path: Path) -> None:
    """The CLI reads its settings from the environment: point it at the test's database."""
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")


def row_of(listing: str, name: str) -> list[str]:
    [line] = [line for line in listing.splitlines() if f" {name} " in line]
    return line.split()


@pytest.mark.usefixtures("cli_env")
async def test_keys_are_created_updated_and_listed_with_their_limits(start_darkroom: Any) -> None:
    code, token, _ = await darkroom_cli("api-key", "create", "studio", "--budget", "50", "--period", "week")
    assert code == 0
    token = token.strip()
    code, _, _ = await darkroom_cli("api-key", "create", "--name", "batch", "--max-running", "3")
    assert code == 0

    async with start_darkroom() as darkroom:
        keys = {key.name: key for key in await darkroom.runtime.api_keys.list_keys()}
        studio, batch = keys["studio"], keys["batch"]
        assert studio.token_hash == hash_token(token)
        assert (studio.budget_amount, studio.budget_period, studio.max_running) == (50.0, "week", None)
        assert (batch.budget_amount, batch.budget_period, batch.max_running) == (None, None, 3)

        # The key spends 0.006 (two pixel-forge images at the shipped price).
        payload = await start(KeyClient(darkroom, token), "darkroom-sim/pixel-forge", {"prompt": "x", "num_outputs": 2})
        assert payload["userErrors"] == []

        code, listing, _ = await darkroom_cli("api-key", "list")
        assert code == 0
        assert "MAX RUNNING" in listing and "BUDGET" in listing and "PERIOD" in listing and "SPENT" in listing
        assert row_of(listing, "studio")[-7:] == ["active", "-", "50", "USD", "week", "0.0060", "USD"]
        assert row_of(listing, "batch")[-6:] == ["active", "3", "-", "month", "0.0000", "USD"]

        code, out, _ = await darkroom_cli("api-key", "update", token[:12], "--budget", "10", "--period", "day")
        assert code == 0 and "budget 10/day" in out
        code, out, _ = await darkroom_cli("api-key", "update", str(batch.id), "--max-running", "5")
        assert code == 0 and "max running 5" in out
        code, out, _ = await darkroom_cli("api-key", "update", str(studio.id), "--no-budget", "--max-running", "1")
        assert code == 0 and "budget -" in out and "max running 1" in out
        keys = {key.name: key for key in await darkroom.runtime.api_keys.list_keys()}
        assert (keys["studio"].budget_amount, keys["studio"].budget_period, keys["studio"].max_running) == (
            None,
            None,
            1,
        )
        assert keys["batch"].max_running == 5
        code, _, _ = await darkroom_cli("api-key", "update", str(batch.id), "--no-max-running")
        assert code == 0
        assert [key.max_running for key in await darkroom.runtime.api_keys.list_keys() if key.name == "batch"] == [None]


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("api-key", "create", "x", "--max-running", "0"), 1, "max running must be 1 or more"),
        (("api-key", "create", "x", "--budget", "-5"), 1, "0 or more"),
        (("api-key", "create", "x", "--name", "y"), 2, "give the key's name once"),
        (("api-key", "update", "drk_nosuchkey", "--budget", "5"), 1, "not found"),
        (("api-key", "update", "drk_nosuchkey"), 2, "nothing to change"),
        (("api-key", "update", "drk_nosuchkey", "--budget", "5", "--no-budget"), 2, "cannot be given together"),
    ],
)
async def test_bad_limits_are_refused_with_a_reason(argv: tuple[str, ...], code: int, message: str) -> None:
    got, _, err = await darkroom_cli(*argv)
    assert got == code and message in err
