"""The services know the provider only through its port (the migration that records each generation's
provider is tested in test_migrations.py)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def test_no_service_imports_the_replicate_implementation() -> None:
    found = {
        f"{path.relative_to(SERVER)}: {name}"
        for path in sorted((SERVER / "services").rglob("*.py"))
        for name in _imports(path)
        if name == "server.provider.replicate" or name.startswith("server.provider.replicate.")
    }
    assert found == set()


def test_only_the_composition_asks_whether_the_simulator_plays_the_provider() -> None:
    """`settings.simulated` is read where the runtime is composed, not in the services or the client."""
    readers = {
        str(path.relative_to(SERVER))
        for path in sorted(SERVER.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "simulated"
    }
    assert readers <= {"runtime.py", "app.py", "settings.py"}, readers
