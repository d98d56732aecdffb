"""The providers Darkroom has an adapter for: every package under server/provider/ with an `adapter` module
declaring ``ADAPTER`` (see `server.provider.adapter`), in their `order`."""

from __future__ import annotations

import importlib
import pkgutil

import server.provider
from server.provider.adapter import Adapter


def _discover() -> dict[str, Adapter]:
    found: list[Adapter] = []
    for package in pkgutil.iter_modules(server.provider.__path__):
        if not package.ispkg:
            continue
        try:
            module = importlib.import_module(f"{server.provider.__name__}.{package.name}.adapter")
        except ModuleNotFoundError as missing:
            if missing.name != f"{server.provider.__name__}.{package.name}.adapter":
                raise
            continue
        found.append(module.ADAPTER)
    return {adapter.name: adapter for adapter in sorted(found, key=lambda adapter: adapter.order)}


# Each adapter by its provider's name, in the order providers are configured when PROVIDERS does not say.
ADAPTERS: dict[str, Adapter] = _discover()
