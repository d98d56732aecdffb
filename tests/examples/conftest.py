"""The client examples run against a live server on SQLite only: they exercise the API, not the database."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.examples.support import EXAMPLES, require_node_modules


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'darkroom.db'}"


@dataclass(frozen=True)
class Client:
    """How to run one language's examples; both languages' take the same options."""

    follow: tuple[str, ...]
    feed: tuple[str, ...]
    upload: tuple[str, ...]


CLIENTS = {
    "python": Client(
        follow=(sys.executable, str(EXAMPLES / "python" / "follow_generation.py")),
        feed=(sys.executable, str(EXAMPLES / "python" / "event_feed.py")),
        upload=(sys.executable, str(EXAMPLES / "python" / "upload_and_animate.py")),
    ),
    "node": Client(
        follow=("node", str(EXAMPLES / "node" / "follow-generation.mjs")),
        feed=("node", str(EXAMPLES / "node" / "event-feed.mjs")),
        upload=("node", str(EXAMPLES / "node" / "upload-and-animate.mjs")),
    ),
}


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    if request.param == "node":
        require_node_modules()
    return CLIENTS[request.param]
