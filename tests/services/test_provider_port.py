"""The services know the provider only through its port (the migration that records each generation's
provider is tested in test_migrations.py)."""

from __future__ import annotations

import ast
import re
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
    assert Settings().embeds("replicate") and Settings().embeds("fal")
    assert Settings(replicate_api_token="r8_x").provider_names == ["replicate"]
    assert Settings(fal_key="k").provider_names == ["fal"]
    chosen = Settings(providers="replicate, fal", default_provider="fal", replicate_api_token="r8_x")
    assert chosen.provider_names == ["fal", "replicate"]
    assert chosen.embeds("fal") and not chosen.embeds("replicate")
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


def test_only_the_adapters_ask_whether_a_simulator_plays_their_provider() -> None:
    """`simulated` is read where a provider is composed, its adapter, not in the services or the clients."""
    readers = {
        str(path.relative_to(SERVER))
        for path in sorted(SERVER.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "simulated"
    }
    assert readers <= {f"provider/{adapter}/adapter.py" for adapter in ADAPTERS}, readers


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _words(node: ast.AST, docstrings: set[int]) -> list[str]:
    """What a node names in code: identifiers, imported modules, and texts that are not prose (a word, a
    path, a setting); prose (docstrings, descriptions, messages) may speak of any provider."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
        return [] if any(character.isspace() for character in node.value) else [node.value]
    return []


def test_no_module_outside_a_providers_package_names_a_provider() -> None:
    """Adding a provider is writing its package: the rest composes whichever adapters there are
    (`server.provider.adapters`). Migrations are history and keep the names they were written with."""
    name = re.compile(r"(?:^|[^a-z])(" + "|".join(ADAPTERS) + r")(?:[^a-z]|$)", re.IGNORECASE)
    found = set()
    for path in sorted(SERVER.rglob("*.py")):
        parts = path.relative_to(SERVER).parts
        if (parts[:1] == ("provider",) and len(parts) > 2 and parts[1] in ADAPTERS) or parts[:2] == (
            "db",
            "migrations",
        ):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            for word in _words(node, docstrings):
                if name.search(word.replace("_", " ").replace(".", " ")):
                    found.add(f"{path.relative_to(SERVER)}:{getattr(node, 'lineno', '?')}: {word[:60]}")
    assert found == set()
