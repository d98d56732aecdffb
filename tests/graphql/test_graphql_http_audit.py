"""graphql-http's GraphQL-over-HTTP audit suite (the npm package's `serverAudits`), run through Node against
a live server: no MUST may fail (an error) and no SHOULD (a warning).

The audits live in tests/graphql_http_audit/ with their lock file; `.ci/run` installs them with
`npm ci --prefix tests/graphql_http_audit`. Without node or those packages the test skips, except under
CI=true, where it fails.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.examples.support import run
from tests.support.services import IN_CI

AUDIT = Path(__file__).resolve().parents[1] / "graphql_http_audit"

# The audits are about the HTTP layer; one database is enough.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _require_audit_packages() -> str:
    node = shutil.which("node")
    if node is None:
        reason = "node is not installed"
    elif not (AUDIT / "node_modules" / "graphql-http").is_dir():
        reason = "the audit's packages are not installed (npm ci --prefix tests/graphql_http_audit)"
    else:
        return node
    if IN_CI:
        pytest.fail(f"{reason}; CI must provide it", pytrace=False)
    pytest.skip(reason)


async def test_graphql_http_audits_find_no_error_and_no_warning(start_darkroom: Callable[..., Any]) -> None:
    node = _require_audit_packages()
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        finished = await run(node, AUDIT / "audit.mjs", f"{darkroom.base_url}/graphql", env={}, cwd=AUDIT)
    assert finished.code == 0, str(finished)
    results = json.loads(finished.stdout)
    assert len(results) > 50, results
    failing = [result for result in results if result["status"] in ("error", "warn")]
    assert failing == [], json.dumps(failing, indent=2)
