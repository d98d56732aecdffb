"""What the browser tests share: Debian's Chromium (not Playwright's downloads), found or skipped."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import services

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if services.IN_CI:
        pytest.fail(f"{reason}; CI must provide it", pytrace=False)
    pytest.skip(reason)


def chromium() -> str:
    """The Chromium executable (CHROMIUM_PATH, else `chromium` on PATH); skip, or fail in CI, without it."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"the playwright package is not installed ({exc})")
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        _unavailable(f"Chromium is not installed at {path} (apt-get install chromium)")
    return path
