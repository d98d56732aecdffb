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


def _server_imports(path: Path) -> set[str]:
    return {
        node.module
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server.")
    }


def test_the_layers_below_the_api_never_import_it() -> None:
    """Services, providers, storage, delivery and the database know nothing of GraphQL or the HTTP routes:
    what a client sent (a global ID, say) is decoded at the edge."""
    below = ("services", "provider", "storage", "events", "db", "simulator")
    upward = {
        f"{path.relative_to(SERVER)}: {module}"
        for layer in below
        for path in sorted((SERVER / layer).rglob("*.py"))
        for module in _server_imports(path)
        if module.startswith(("server.graphql", "server.http", "server.app", "server.runtime"))
    }
    assert upward == set()


def test_the_event_log_depends_on_neither_generations_nor_media() -> None:
    """Both write to the log; the log knows only the tables and the fields it snapshots."""
    found = {
        f"{path.relative_to(SERVER)}: {module}"
        for path in sorted((SERVER / "services" / "event_log").rglob("*.py"))
        for module in _server_imports(path)
        if module.startswith(("server.services.generations", "server.services.media"))
    }
    assert found == set()
