"""The price table: what a model costs to run, per second of its run time or per output file.

The operator keeps it in a TOML file (PRICE_TABLE_PATH; the default is `prices.toml` beside this module).
Each `[[price]]` entry names a glob over "provider:owner/name" and one price: `per_second`, `hardware`
(a named `[hardware.NAME]` entry with its own `per_second`) or `per_output`. The first entry that matches
a model is its price; a model no entry matches has no cost at all (never a guessed one). A malformed
table is refused when the server starts, with the problem named (`PriceTableError`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

DEFAULT_PRICE_TABLE = Path(__file__).with_name("prices.toml")
DEFAULT_CURRENCY = "USD"


class PriceTableError(ValueError):
    """The price table cannot be read or says something impossible; the message names where."""


class Basis(StrEnum):
    PER_SECOND = "per_second"
    PER_OUTPUT = "per_output"


@dataclass(frozen=True, slots=True)
class Price:
    pattern: str  # a glob over "provider:owner/name"
    basis: Basis
    amount: float  # per second of run time, or per output file, in `currency`
    currency: str
    hardware: str | None = None
    source: str | None = None
    read_on: date | None = None

    def matches(self, model_key: str) -> bool:
        return fnmatchcase(model_key, self.pattern)


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    per_second: float
    source: str | None
    read_on: date | None


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: tuple[Price, ...]
    hardware: tuple[Hardware, ...] = ()
    currency: str = DEFAULT_CURRENCY

    def price_for(self, provider: str, model_ref: str) -> Price | None:
        """The first entry matching the model, or None: the model has no known price."""
        key = f"{provider}:{model_ref}"
        return next((price for price in self.prices if price.matches(key)), None)


def load_price_table(path: Path | None = None) -> PriceTable:
    """The table at `path` (None: the shipped default); PriceTableError names what is wrong with it."""
    where = path or DEFAULT_PRICE_TABLE
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceTableError(f"price table {where}: cannot be read ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"price table {where}: not valid TOML ({exc})") from exc
    try:
        return parse_price_table(data)
    except PriceTableError as exc:
        raise PriceTableError(f"price table {where}: {exc}") from None


def parse_price_table(data: dict[str, Any]) -> PriceTable:
    currency = data.get("currency", DEFAULT_CURRENCY)
    if not _is_currency(currency):
        raise PriceTableError(f"currency must be a code such as USD, not {currency!r}")
    unknown = set(data) - {"currency", "hardware", "price"}
    if unknown:
        raise PriceTableError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    hardware_table = data.get("hardware", {})
    if not isinstance(hardware_table, dict):
        raise PriceTableError("[hardware] must be a table of named entries")
    hardware = {name: _hardware(name, entry) for name, entry in hardware_table.items()}
    entries = data.get("price", [])
    if not isinstance(entries, list):
        raise PriceTableError("prices must be [[price]] entries")
    prices = tuple(_price(index, entry, hardware, currency) for index, entry in enumerate(entries, start=1))
    return PriceTable(prices=prices, hardware=tuple(hardware.values()), currency=currency)


def _hardware(name: str, entry: Any) -> Hardware:
    where = f"[hardware.{name}]"
    if not isinstance(entry, dict):
        raise PriceTableError(f"{where} must be a table")
    _only(where, entry, {"per_second", "source", "read_on", "description"})
    return Hardware(
        name=name,
        per_second=_amount(where, "per_second", entry.get("per_second")),
        source=_source(where, entry),
        read_on=_read_on(where, entry),
    )


def _price(index: int, entry: Any, hardware: dict[str, Hardware], currency: str) -> Price:
    where = f"[[price]] #{index}"
    if not isinstance(entry, dict):
        raise PriceTableError(f"{where} must be a table")
    _only(where, entry, {"model", "per_second", "per_output", "hardware", "currency", "source", "read_on", "note"})
    pattern = entry.get("model")
    if not isinstance(pattern, str) or ":" not in pattern:
        raise PriceTableError(f'{where}: model must be a glob over "provider:owner/name", not {pattern!r}')
    where = f"{where} ({pattern})"
    given = [key for key in ("per_second", "per_output", "hardware") if key in entry]
    if len(given) != 1:
        raise PriceTableError(f"{where}: give exactly one of per_second, hardware or per_output")
    own_currency = entry.get("currency", currency)
    if not _is_currency(own_currency):
        raise PriceTableError(f"{where}: currency must be a code such as USD, not {own_currency!r}")
    name = None
    if given[0] == "hardware":
        name = entry["hardware"]
        if name not in hardware:
            raise PriceTableError(f"{where}: hardware {name!r} is not in [hardware]")
        basis, amount = Basis.PER_SECOND, hardware[name].per_second
    elif given[0] == "per_second":
        basis, amount = Basis.PER_SECOND, _amount(where, "per_second", entry["per_second"])
    else:
        basis, amount = Basis.PER_OUTPUT, _amount(where, "per_output", entry["per_output"])
    return Price(
        pattern=pattern,
        basis=basis,
        amount=amount,
        currency=own_currency,
        hardware=name,
        source=_source(where, entry),
        read_on=_read_on(where, entry),
    )


def _only(where: str, entry: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise PriceTableError(f"{where}: unknown keys {', '.join(sorted(unknown))}")


def _amount(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PriceTableError(f"{where}: {key} must be a number of 0 or more, not {value!r}")
    return float(value)


def _source(where: str, entry: dict[str, Any]) -> str | None:
    source = entry.get("source")
    if source is not None and (not isinstance(source, str) or not source.startswith(("https://", "http://"))):
        raise PriceTableError(f"{where}: source must be the URL the price was read from, not {source!r}")
    return source


def _read_on(where: str, entry: dict[str, Any]) -> date | None:
    read_on = entry.get("read_on")
    if read_on is not None and not isinstance(read_on, date):
        raise PriceTableError(f"{where}: read_on must be a TOML date (2026-12-07), not {read_on!r}")
    return read_on


def _is_currency(value: Any) -> bool:
    return isinstance(value, str) and 3 <= len(value) <= 8 and value.isalpha() and value.isupper()
