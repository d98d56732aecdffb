"""The price table: the shipped default parses and cites where each price came from; a malformed one is
refused with its problem named; the rules that turn prices into costs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.services.spend import costs
from server.services.spend.prices import (
    DEFAULT_PRICE_TABLE,
    Basis,
    Hardware,
    Price,
    PriceTableError,
    load_price_table,
)


def test_the_shipped_table_parses_and_every_price_has_a_source_and_a_date() -> None:
    table = load_price_table()
    assert table.currency == "USD" and table.prices
    entries: list[Price | Hardware] = [*table.prices, *table.hardware]
    for entry in entries:
        assert entry.source and entry.source.startswith("https://"), entry
        assert isinstance(entry.read_on, date), entry
    assert "CHECK" in DEFAULT_PRICE_TABLE.read_text()


def test_the_shipped_table_prices_the_simulators_models() -> None:
    table = load_price_table()
    pixel_forge = table.price_for("replicate", "darkroom-sim/pixel-forge")
    assert pixel_forge is not None and pixel_forge.basis is Basis.PER_OUTPUT
    snap_still = table.price_for("replicate", "darkroom-sim/snap-still")
    assert snap_still is not None and snap_still.basis is Basis.PER_SECOND and snap_still.hardware == "nvidia-t4"
    schnell = table.price_for("fal", "fal-ai/flux/schnell")
    assert schnell is not None and schnell.basis is Basis.PER_OUTPUT
    # No entry, no cost: never a guess.
    assert table.price_for("replicate", "someone/unknown-model") is None
    assert table.price_for("fal", "fal-ai/kling-video/v2.1/master/text-to-video") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[price]]\nmodel = 'replicate:a/b'\n", "exactly one of"),
        ("[[price]]\nmodel = 'replicate:a/b'\nper_second = 1\nper_output = 2\n", "exactly one of"),
        ("[[price]]\nmodel = 'a/b'\nper_output = 1\n", "provider:owner/name"),
        ("[[price]]\nmodel = 'replicate:a/b'\nper_output = -1\n", "0 or more"),
        ("[[price]]\nmodel = 'replicate:a/b'\nhardware = 'gpu'\n", "hardware 'gpu' is not in [hardware]"),
        ("[[price]]\nmodel = 'replicate:a/b'\nper_output = 1\nread_on = 'yesterday'\n", "read_on"),
        ("[[price]]\nmodel = 'replicate:a/b'\nper_output = 1\nprice = 3\n", "unknown keys price"),
        ("currency = 'dollars'\n", "currency"),
        ("[[price]\n", "not valid TOML"),
    ],
)
def test_a_malformed_table_names_its_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PriceTableError, match=r"price table .*prices\.toml") as raised:
        load_price_table(path)
    assert problem in str(raised.value)


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot be read"):
        load_price_table(tmp_path / "nowhere.toml")


def test_the_first_matching_entry_wins_and_hardware_gives_its_price(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        "[hardware.gpu]\nper_second = 0.002\n"
        "[[price]]\nmodel = 'fal:fal-ai/flux/*'\nper_output = 0.5\n"
        "[[price]]\nmodel = 'fal:*'\nhardware = 'gpu'\n"
    )
    table = load_price_table(path)
    flux = table.price_for("fal", "fal-ai/flux/dev")
    other = table.price_for("fal", "fal-ai/other")
    assert flux is not None and (flux.basis, flux.amount) == (Basis.PER_OUTPUT, 0.5)
    assert other is not None and (other.basis, other.amount) == (Basis.PER_SECOND, 0.002)
    assert table.price_for("replicate", "fal-ai/other") is None


def test_estimates_and_settled_costs() -> None:
    table = load_price_table()
    per_output = table.price_for("replicate", "darkroom-sim/pixel-forge")
    per_second = table.price_for("replicate", "darkroom-sim/snap-still")
    assert per_output is not None and per_second is not None
    assert costs.outputs_asked({"num_outputs": 3}) == 3
    assert costs.outputs_asked({"num_images": 2}) == 2
    assert costs.outputs_asked({"prompt": "x"}) == 1
    assert costs.with_count_defaults({"properties": {"num_outputs": {"default": 4}}}, {}) == {"num_outputs": 4}

    estimate = costs.estimate(per_output, {"num_outputs": 3}, [])
    assert estimate == costs.Cost(per_output.amount * 3, "USD", "per_output", estimated=True)
    assert costs.estimate(per_second, {}, []) is None  # no history, no estimate
    by_history = costs.estimate(per_second, {}, [1.0, 9.0, 2.0])
    assert by_history is not None and by_history.amount == pytest.approx(per_second.amount * 2.0)

    def generation(status: str, predict_time: float | None) -> Any:
        return SimpleNamespace(status=status, predict_time=predict_time)

    assert costs.settled(per_output, generation("SUCCEEDED", 1.0), 2) == costs.Cost(
        per_output.amount * 2, "USD", "per_output", estimated=False
    )
    failed = costs.settled(per_output, generation("FAILED", 1.0), 0)
    assert failed is not None and failed.amount == 0.0
    timed = costs.settled(per_second, generation("SUCCEEDED", 4.0), 1)
    assert timed is not None and timed.amount == pytest.approx(per_second.amount * 4.0) and not timed.estimated
    assert costs.settled(per_second, generation("SUCCEEDED", None), 1) is None  # keeps its estimate
    assert (
        costs.settled(per_second, generation("TIMED_OUT", None), 0) is None
    )  # Darkroom stopped it: keeps its estimate
    never_ran = costs.settled(per_second, generation("CANCELED", None), 0)
    assert never_ran is not None and never_ran.amount == 0.0 and not never_ran.estimated


def test_periods_are_calendar_periods_in_utc() -> None:
    now = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)  # a Thursday
    assert costs.period_start("day", now) == datetime(2026, 12, 10, tzinfo=UTC)
    assert costs.period_start("week", now) == datetime(2026, 12, 7, tzinfo=UTC)
    assert costs.period_start("month", now) == datetime(2026, 12, 1, tzinfo=UTC)
