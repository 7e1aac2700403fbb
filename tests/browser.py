"""Headless Debian Chromium for browser tests, driven by selenium.

`make test` installs Debian's `chromium` and `chromium-driver`; nothing is downloaded at run time
(the driver is named explicitly, so Selenium Manager has nothing to fetch). Pages are opened by
URL, so the same helper serves a report file (`file_url(path)`) or a live local server
(`http://127.0.0.1:PORT/`).

    from browser import chromium, file_url, severe_console_errors

    with chromium() as driver:
        driver.get(file_url(tmp_path / "report.html"))
        assert driver.title
        assert severe_console_errors(driver) == []

The session fixture `browser` (tests/conftest.py) shares one browser across tests.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# No GPU, no sandbox (tests run as root in containers), and no traffic of the browser's own:
# no QUIC, background fetches, component updates or sync.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing_browser() -> str | None:
    """Why the browser cannot start here, or None when it can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return (f"{', '.join(missing)} missing: `make test` installs Debian's chromium and "
                "chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 1024) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh temporary profile and the browser console
    log enabled; quit and cleaned up on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ragtune-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()


def file_url(path: Path) -> str:
    """The file:// URL of a local file."""
    return path.resolve().as_uri()


def console_logs(driver: Any) -> list[dict[str, Any]]:
    """The browser console entries since the last call (reading them empties the buffer)."""
    return list(driver.get_log("browser"))


def severe_console_errors(driver: Any) -> list[str]:
    """Messages of the SEVERE console entries since the last read: script errors, failed or
    blocked loads, Content-Security-Policy violations. Call it once before `driver.get` to
    drop what an earlier page left."""
    return [entry["message"] for entry in console_logs(driver) if entry.get("level") == "SEVERE"]
