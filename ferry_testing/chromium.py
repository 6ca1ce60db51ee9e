"""The headless Chromium the browser tests and bench/web.py drive (Debian's package,
launched by Playwright for Python; never `playwright install`)."""

from __future__ import annotations

from typing import Final

CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Flags for a quiet, reproducible browser: nothing fetched in the background."""
