"""The layering the README describes, held by the imports: only the service layer builds SQL."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "server"


def _sqlalchemy_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "sqlalchemy"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            found.add(node.module)
    return found


def test_routes_resolvers_and_workers_leave_the_sql_to_the_services() -> None:
    """They may hand a session on (to a service's query); the statements are the services' alone."""
    builders = {
        f"{path.relative_to(SERVER)}: {module}"
        for layer in ("http", "graphql", "workers")
        for path in sorted((SERVER / layer).rglob("*.py"))
        for module in _sqlalchemy_imports(path)
        if module != "sqlalchemy.ext.asyncio"
    }
    assert builders == set()


def test_no_test_module_imports_the_conftest() -> None:
    """Fixtures come from conftest by name; what tests import lives in tests/support (or a folder's support)."""
    tests = Path(__file__).resolve().parent
    importers = {
        str(path.relative_to(tests))
        for path in sorted(tests.rglob("*.py"))
        if "node_modules" not in path.parts
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.ImportFrom) and node.module == "tests.conftest"
    }
    assert importers == set()
