"""Fixtures for the browser tests: the built page served by ``veil.web`` and
headless Debian Chromium driven by Playwright.

The tests skip, with the reason, when Chromium, the ``playwright`` package or
the built page (``scripts/build_web.sh``) is missing. Set
``VEIL_REQUIRE_WEB=1`` (CI does, after building) to make those a failure
instead, so a broken build can never pass as "skipped".
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
CHROMIUM = os.environ.get("VEIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REQUIRED = os.environ.get("VEIL_REQUIRE_WEB", "") not in ("", "0")

# The shared helpers that build files full of metadata live in tests/.
sys.path.insert(0, str(ROOT / "tests"))


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (VEIL_REQUIRE_WEB is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def web_dist() -> Path:
    if not (DIST / "index.html").is_file() or not (DIST / "veil_wasm.wasm").is_file():
        unavailable(f"the page is not built ({DIST}): run scripts/build_web.sh")
    return DIST


@pytest.fixture(scope="session")
def base_url(web_dist: Path):
    from veil.web import make_server

    server = make_server(web_dist, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, name="veil-web-test", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        unavailable(f"Chromium not found at {CHROMIUM}: run scripts/install_web_deps.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed: run scripts/install_web_deps.sh")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class RequestLog:
    """Every request a browser context makes (pages and their workers)."""

    def __init__(self) -> None:
        self.urls: list = []

    def __call__(self, request) -> None:
        self.urls.append(request.url)

    def off_origin(self, base_url: str) -> list:
        origin = urlsplit(base_url)[:2]
        # blob: and data: URLs are made inside the page; nothing leaves it.
        return [u for u in self.urls if not u.startswith(("blob:", "data:")) and urlsplit(u)[:2] != origin]


@pytest.fixture()
def requests_log() -> RequestLog:
    return RequestLog()


@pytest.fixture()
def context(browser, requests_log):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    ctx.on("request", requests_log)
    yield ctx
    ctx.close()


@pytest.fixture()
def page(context, base_url):
    """The page, loaded and ready for a photo (WebAssembly and the model loaded)."""
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url)
    page.wait_for_selector("body[data-state=idle], body[data-state=error]", state="attached", timeout=120_000)
    assert page.evaluate("document.body.dataset.state") == "idle", page.evaluate("window.veilPage.lastError")
    page.errors = errors  # type: ignore[attr-defined]
    return page
