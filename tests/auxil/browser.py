"""Headless Chromium for the browser tests (dashboard, demo): Debian's ``chromium`` package,
driven by Playwright — never a browser Playwright downloads.

Without it the browser tests skip, saying how to install it; ``CAREBOT_REQUIRE_BROWSER=1``
(set by ``.ci/run``) turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CAREBOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
REQUIRE_BROWSER = os.environ.get("CAREBOT_REQUIRE_BROWSER", "") not in ("", "0")


def require_chromium() -> str:
    """The Chromium executable; skips the test (or fails, when required) without one."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium (or set CAREBOT_CHROMIUM)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason} (CAREBOT_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM
