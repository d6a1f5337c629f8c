"""The reference app at / in a real Chromium, every request off 127.0.0.1 blocked, against a real
`ragql serve` whose LLM is the fake OpenAI server of tests/fakes/ (replaced at the wire), streaming
its answer a word every 60 ms so that the page has frames to show it growing in.

Drives: a search with its score breakdown, the genre and year filters and the keyword mode; "more
like this"; a like that changes a user's recommendations (and their reasons); an answer sampled
while it streams, then a click on one of its citations; an upload as an ingestion job with its
progress; the token field of production.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.auth.tokens import JwtVerifier
from api.bootstrap import jwt_config
from api.settings import Settings
from tests.browser.conftest import save_screenshot_path
from tests.browser.harness import missing_browser, ragql_server
from tests.fakes.providers import FakeProviders, Reply

# The fake LLM's reply, written for the sources the demo catalogue gives this question (a fake
# cannot read them; the numbers only have to be valid citations).
ANSWER = (
    "About Time follows a man who can relive his own days to get love right [1]. "
    "La Jetée sends a prisoner back through time in search of help for the present [2]. "
    "Both use time travel to look at love and memory rather than spectacle [1][2]."
)
PIECE_DELAY_S = 0.06


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeProviders]:
    if reason := missing_browser():
        pytest.skip(f"browser tests skipped: {reason}")
    with FakeProviders() as fake:
        yield fake


@pytest.fixture(scope="module")
def app_url(fake_llm: FakeProviders) -> Iterator[str]:
    env = {"RAGQL_LLM_MODEL": "fake-llm", "RAGQL_LLM_BASE_URL": f"{fake_llm.url}/v1", "RAGQL_LLM_API_KEY": "sk-fake"}
    with ragql_server(env) as url:
        yield url


async def _open(page: Any, url: str) -> None:
    await page.goto(url)
    # Start-up runs serverInfo, the genre list, a first search and the default user's recommendations.
    await page.wait_for_selector("#results li.hit", timeout=30_000)
    await page.wait_for_function("document.querySelectorAll('#genre option').length > 1")


async def _hits(page: Any) -> list[dict[str, str]]:
    hits: list[dict[str, str]] = await page.eval_on_selector_all(
        "#results li.hit",
        "els => els.map(e => ({title: e.querySelector('.title').textContent, genre: e.dataset.genre, "
        "year: e.dataset.year, dense: e.querySelector('.score-dense').textContent}))",
    )
    return hits


async def _search_done(page: Any, before: str) -> None:
    await page.wait_for_function(
        "before => { const s = document.getElementById('search-status').textContent;"
        " return s !== before && s.includes('hits'); }",
        arg=before,
        timeout=30_000,
    )


async def test_search_shows_scores_and_the_filters_apply(page: Any, app_url: str) -> None:
    await _open(page, app_url)
    hits = await _hits(page)
    assert len(hits) == 8
    first = page.locator("#results li.hit").first
    assert await first.locator("mark").count() >= 1  # the query's terms are highlighted in the snippet
    for part in ("dense", "keyword", "fused"):
        assert part in await first.locator(".scores").text_content()

    status = await page.text_content("#search-status")
    await page.select_option("#genre", "Comedy")  # a select applies at once
    await _search_done(page, status)
    hits = await _hits(page)
    assert hits and all(h["genre"] == "Comedy" for h in hits), hits

    status = await page.text_content("#search-status")
    await page.fill("#year-min", "2005")
    await page.click("#search-form button[type=submit]")
    await _search_done(page, status)
    hits = await _hits(page)
    assert hits and all(h["genre"] == "Comedy" and int(h["year"]) >= 2005 for h in hits), hits

    status = await page.text_content("#search-status")
    await page.select_option("#mode", "KEYWORD")
    await _search_done(page, status)
    hits = await _hits(page)
    assert hits and all(h["dense"] == "dense –" for h in hits), hits  # BM25 alone: no dense score
    assert "keyword" in await page.text_content("#search-status")
    assert page.blocked == [] and page.js_errors == []


async def test_more_like_this_lists_other_documents(page: Any, app_url: str) -> None:
    await _open(page, app_url)
    title = await page.locator("#results li.hit .title").first.text_content()
    await page.locator("#results li.hit .more-like-this").first.click()
    await page.wait_for_selector("#similar:not([hidden]) #similar-list li")
    assert await page.text_content("#similar-to") == title
    similar = await page.locator("#similar-list .title").all_text_contents()
    assert len(similar) == 5 and title not in similar
    assert page.js_errors == []


async def _recommended(page: Any) -> list[str]:
    titles: list[str] = await page.locator("#recs li.rec > div .title").all_text_contents()
    return titles


async def test_a_like_changes_the_recommendations(page: Any, app_url: str) -> None:
    await _open(page, app_url)
    await page.fill("#user", f"browser-{uuid.uuid4().hex[:8]}")  # a new user: cold start
    await page.click("#recs-form button[type=submit]")
    await page.wait_for_function("document.getElementById('recs-status').textContent.includes('ms')")
    await page.wait_for_selector("#recs li.rec")
    cold = await _recommended(page)
    assert cold

    status = await page.text_content("#search-status")
    await page.fill("#q", "haunted house ghosts")
    await page.select_option("#genre", "Horror")
    await _search_done(page, status)
    liked = await page.locator("#results li.hit .title").first.text_content()
    await page.locator("#results li.hit .like").first.click()
    await page.wait_for_function(
        "text => document.getElementById('recs-status').textContent.startsWith(text)",
        arg=f"liked {liked}",
        timeout=30_000,
    )
    warm = await _recommended(page)
    assert warm and warm != cold
    reasons = await page.locator("#recs .reasons li").all_text_contents()
    assert f"similar to {liked}, which you liked" in reasons, reasons
    assert await page.locator("#recs .reasons li em", has_text=liked).count() >= 1  # *Title* shown in italics
    assert liked not in warm  # excludeSeen: what the user just rated is not recommended back
    assert page.js_errors == []


async def test_the_answer_streams_in_and_a_citation_opens_its_source(
    page: Any, app_url: str, fake_llm: FakeProviders
) -> None:
    fake_llm.reset()
    fake_llm.script_chat(Reply(ANSWER, piece_delay=PIECE_DELAY_S))
    await _open(page, app_url)
    assert await page.is_hidden("#token-form")  # development: no token needed
    # demo-user likes the top hit, so the screenshot shows a recommendation with its reason.
    await page.locator("#results li.hit .like").first.click()
    await page.wait_for_function("document.getElementById('recs-status').textContent.startsWith('liked ')")
    await page.click("#ask-form button[type=submit]")
    await page.wait_for_function("document.getElementById('answer').dataset.state === 'streaming'")
    lengths: list[int] = []
    for _ in range(200):  # sampled every 50 ms, bounded: a stream that never ends fails below
        state = await page.get_attribute("#answer", "data-state")
        if state != "streaming":
            break
        lengths.append(len(await page.text_content("#answer") or ""))
        await asyncio.sleep(0.05)
    assert await page.get_attribute("#answer", "data-state") == "done", await page.text_content("#answer-meta")
    final = (await page.text_content("#answer") or "").strip()
    assert final == ANSWER
    growing = [n for n in lengths if 0 < n < len(ANSWER)]
    # Seen part-way on several samples, and longer each time it changed: it grew in, not at once.
    assert len(set(growing)) >= 2, lengths
    assert growing == sorted(growing), lengths
    assert "llm" in (await page.text_content("#answer-meta") or "")

    citations = page.locator("#answer button.citation")
    assert await citations.count() == 4  # [1], [2], [1][2]
    await citations.nth(1).click()  # [2]
    await page.wait_for_selector("#citation-detail:not([hidden])")
    source_two = await page.locator("#sources li[data-n='2'] .title").text_content()
    assert await page.text_content("#citation-detail .title") == source_two
    assert await page.get_attribute("#sources li.cited", "data-n") == "2"
    assert page.blocked == [] and page.js_errors == []
    # The README's picture: results, recommendations and a finished, cited answer on one page.
    await page.screenshot(path=str(save_screenshot_path("app.png")), full_page=True)


async def test_an_upload_is_ingested_and_reported(page: Any, app_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    note = tmp_path / f"lighthouse-{tag}.md"
    note.write_text(f"# Lighthouse keeper {tag}\n\nA keeper alone on a rock tends the light through winter storms.\n")
    await _open(page, app_url)
    await page.set_input_files("#files", str(note))
    await page.click("#upload-form button[type=submit]")
    await page.wait_for_selector("#upload-results li", timeout=60_000)
    # An ingestion job (mode: ASYNC): its progress came over the ingestionProgress subscription to the end.
    assert await page.get_attribute("#upload-panel", "data-mode") == "async"
    assert await page.get_attribute("#upload-panel", "data-state") == "SUCCEEDED"
    summary = await page.text_content("#upload-results li")
    assert summary is not None and summary.startswith("succeeded: 1 created, 0 updated, 0 unchanged, 0 failed"), summary
    assert "1/1 documents" in (await page.text_content("#upload-status") or "")
    assert await page.get_attribute("#upload-progress", "value") == await page.get_attribute("#upload-progress", "max")
    # It is searchable at once.
    status = await page.text_content("#search-status")
    await page.fill("#q", f"lighthouse keeper {tag}")
    await page.click("#search-form button[type=submit]")
    await _search_done(page, status)
    assert f"Lighthouse keeper {tag}" in await page.locator("#results .title").all_text_contents()
    assert page.js_errors == []


async def test_in_production_the_page_asks_for_a_token_and_sends_it(page: Any, app_url: str) -> None:
    """The page as production serves it (the server itself is in development, where a token that is
    sent is still verified): the token field shows, and what is typed goes with every request."""

    async def as_production(route: Any) -> None:
        response = await route.fetch()
        html = (await response.text()).replace('data-environment="development"', 'data-environment="production"')
        await route.fulfill(response=response, body=html)

    await page.route(f"{app_url}/", as_production)
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization")) if r.url.endswith("/graphql") else None)
    token = JwtVerifier(jwt_config(Settings())).issue(subject="browser", tenant="default", roles=["reader"])
    await page.goto(app_url)
    assert await page.is_visible("#token")
    assert "production" in (await page.text_content("#token-hint") or "")
    await page.fill("#token", token)
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#results li.hit", timeout=30_000)
    assert sent and sent[-1] == f"Bearer {token}"
    assert await page.evaluate("sessionStorage.getItem('ragql.token')") == token
    assert await page.evaluate("localStorage.length") == 0

    # A wrong token is refused by the server, and the page says so.
    await page.fill("#token", "not-a-token")
    await page.click("#token-form button[type=submit]")
    await page.wait_for_function("document.getElementById('server-info').classList.contains('error')")
    assert "UNAUTHENTICATED" in (await page.text_content("#server-info") or "")
