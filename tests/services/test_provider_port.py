"""The services know the provider only through its port (the migration that records each generation's
provider is tested in test_migrations.py)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from server.provider.registry import ProviderNotConfiguredError, Providers
from server.provider.replicate import ReplicateClient, ReplicateProvider
from server.settings import Settings

SERVER = Path(__file__).resolve().parents[2] / "server"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


# Each adapter is a package of its own under server/provider/.
ADAPTERS = sorted(path.name for path in (SERVER / "provider").iterdir() if (path / "__init__.py").exists())


def test_no_service_imports_an_adapter() -> None:
    assert ADAPTERS == ["fal", "replicate"]
    found = {
        f"{path.relative_to(SERVER)}: {name}"
        for path in sorted((SERVER / "services").rglob("*.py"))
        for name in _imports(path)
        for adapter in ADAPTERS
        if name == f"server.provider.{adapter}" or name.startswith(f"server.provider.{adapter}.")
    }
    assert found == set()


def test_the_providers_with_a_token_run_and_with_none_both_simulators() -> None:
    assert Settings().provider_names == ["replicate", "fal"]
    assert Settings().embedded_simulator and Settings().embedded_fal_simulator
    assert Settings(replicate_api_token="r8_x").provider_names == ["replicate"]
    assert Settings(fal_key="k").provider_names == ["fal"]
    chosen = Settings(providers="replicate, fal", default_provider="fal", replicate_api_token="r8_x")
    assert chosen.provider_names == ["fal", "replicate"]
    assert chosen.embedded_fal_simulator and not chosen.embedded_simulator
    assert not chosen.only_embedded_simulators, "a real provider decides whether webhooks can reach us"
    wrong_ones: list[dict[str, Any]] = [
        {"providers": "replicate,midjourney"},
        {"providers": " , "},
        {"default_provider": "nobody"},
        {"providers": "replicate", "default_provider": "fal"},
    ]
    for wrong in wrong_ones:
        with pytest.raises(ValueError):
            Settings(**wrong)


def test_a_generation_of_a_provider_no_longer_configured_is_refused_by_name() -> None:
    providers = Providers([ReplicateProvider(ReplicateClient("http://127.0.0.1:9", "r8_unused"))])
    assert providers.names == ["replicate"] and "fal" not in providers
    with pytest.raises(ProviderNotConfiguredError) as refused:
        providers.get("fal")
    assert refused.value.code == "PROVIDER_NOT_CONFIGURED"


def test_only_the_composition_asks_whether_the_simulator_plays_the_provider() -> None:
    """`settings.simulated` is read where the runtime is composed, not in the services or the client."""
    readers = {
        str(path.relative_to(SERVER))
        for path in sorted(SERVER.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "simulated"
    }
    assert readers <= {"runtime.py", "app.py", "settings.py"}, readers
