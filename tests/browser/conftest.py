"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, against a real
`ragql serve` process. Without Chromium or playwright every test here skips and says why
(`-ra` prints the reason in the summary)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import CHROMIUM, ROOT, missing_browser, only_loopback, ragql_server

BROWSER_OUT = ROOT / ".ragql-browser"
# Chromium resolves this name to 127.0.0.1 (--host-resolver-rules): a page on an origin that
# ragql does not allow, without leaving the machine.
FOREIGN_HOST = "frontend.invalid"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def ragql_url() -> Iterator[str]:
    if reason := missing_browser():
        pytest.skip(f"browser tests skipped: {reason}")
    with ragql_server() as url:
        yield url


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if reason := missing_browser():
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[f"--host-resolver-rules=MAP {FOREIGN_HOST} 127.0.0.1"]
        )
        yield chromium
        await chromium.close()


class Blocked(list[str]):
    """Every request the page tried to send anywhere but 127.0.0.1 (all of them were aborted)."""


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    blocked = Blocked()

    async def loopback_only(route: Any) -> None:
        url = route.request.url
        if only_loopback(url) or url.startswith(f"http://{FOREIGN_HOST}:"):
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort()

    await context.route("**/*", loopback_only)
    page = await context.new_page()
    page.blocked = blocked
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.console = console
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        (BROWSER_OUT / "failures").mkdir(parents=True, exist_ok=True)
        shot = BROWSER_OUT / "failures" / f"{request.node.name}.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the failed page: {shot}\nJS errors: {errors}\nblocked: {list(blocked)}")
    await context.close()


def save_screenshot_path(name: str) -> Path:
    """Where a test saves a screenshot for the README: docs/screenshots/ when the file is missing or
    RAGQL_UPDATE_SCREENSHOTS=1 (so `make test` does not rewrite committed images on every run),
    otherwise .ragql-browser/latest/ for a look at this run's page."""
    committed = ROOT / "docs" / "screenshots" / name
    update = os.environ.get("RAGQL_UPDATE_SCREENSHOTS") == "1" or not committed.exists()
    path = committed if update else BROWSER_OUT / "latest" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
