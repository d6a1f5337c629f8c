"""A frontend on another origin (a second static server, another port) calls ragql from a real
Chromium: a fetch query, a websocket subscription (graphql-transport-ws written by hand in the
page) and a multipart subscription over fetch. Development mode allows loopback origins; a
page on a name ragql does not allow gets nothing, over HTTP or the websocket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import FOREIGN_HOST
from tests.browser.harness import static_server

PAGE_DIR = Path(__file__).resolve().parent / "other_origin"


@pytest.fixture(scope="module")
def frontend(ragql_url: str) -> Iterator[str]:
    with static_server(PAGE_DIR) as url:
        yield url


async def _status(page: Any, element: str) -> str:
    text: str = await page.text_content(f"#{element}")
    return text


async def test_a_page_on_another_origin_queries_and_subscribes(page: Any, ragql_url: str, frontend: str) -> None:
    assert urlsplit(frontend).port != urlsplit(ragql_url).port  # another origin, same machine
    await page.goto(f"{frontend}/index.html?api={ragql_url}")
    for element in ("search-status", "ws-status", "multipart-status"):
        await page.wait_for_function(
            f"!['pending', 'acknowledged'].includes(document.getElementById('{element}').textContent)",
            timeout=60_000,
        )
    assert await _status(page, "search-status") == "ok 200"
    hits = await page.locator("#hits li").all_text_contents()
    assert len(hits) == 3 and all(hit.strip() for hit in hits)

    assert await _status(page, "ws-status") == "complete"
    events = await page.locator("#events li").all_text_contents()
    assert events[0] == "AnswerSources" and events[-1] == "AnswerDone"
    assert events.count("AnswerDelta") >= 2
    assert len((await _status(page, "answer")).strip()) > 20

    assert await _status(page, "multipart-status") == "ok 200"
    assert int((await _status(page, "multipart-deltas")).split()[0]) >= 2
    assert page.blocked == [] and page.js_errors == []


async def test_a_page_on_an_origin_ragql_does_not_allow_gets_nothing(page: Any, ragql_url: str, frontend: str) -> None:
    foreign = frontend.replace("127.0.0.1", FOREIGN_HOST)
    await page.goto(f"{foreign}/index.html?api={ragql_url}")
    assert await page.evaluate("location.origin") == foreign
    for element in ("search-status", "ws-status", "multipart-status"):
        await page.wait_for_function(f"document.getElementById('{element}').textContent !== 'pending'", timeout=30_000)
    # CORS: the browser refuses to hand the response to the page, and says why.
    assert (await _status(page, "search-status")).startswith("failed: TypeError")
    assert (await _status(page, "multipart-status")).startswith("failed: TypeError")
    refusals = [line for line in page.console if f"from origin '{foreign}' has been blocked by CORS policy" in line]
    assert len(refusals) == 2, page.console
    # The websocket Origin check: the handshake is refused (403), so the socket never opens.
    assert (await _status(page, "ws-status")).startswith("closed before completing")
    assert await page.locator("#events li").count() == 0
