"""GraphiQL in a real Chromium with every request off 127.0.0.1 blocked: the page loads from
ragql's own assets, runs its default query, and streams a subscription over the websocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from api.graphiql.page import DEFAULT_QUERY
from tests.browser.conftest import save_screenshot_path

RESULT_PANE = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
SUBSCRIPTION = """subscription Ask {
  answerStream(question: "Which films are about time travel?") {
    __typename
    ... on AnswerDelta { text }
    ... on AnswerDone { text citations { number title } tookMs }
  }
}
"""


async def _open(page: Any, url: str) -> None:
    await page.goto(url)
    # React rendered GraphiQL: the run button exists only once every bundle loaded and passed SRI.
    await page.wait_for_selector(".graphiql-execute-button", timeout=30_000)


async def _result(page: Any) -> str:
    text: str = await page.evaluate(RESULT_PANE)
    return text


async def test_graphiql_loads_offline_and_runs_the_default_query(page: Any, ragql_url: str) -> None:
    await _open(page, f"{ragql_url}/graphql")
    editor = await page.evaluate("document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()")
    assert editor == DEFAULT_QUERY
    await page.click(".graphiql-execute-button")
    await page.wait_for_function(f"{RESULT_PANE}.includes('\"hits\"')", timeout=30_000)
    result = json.loads(await _result(page))
    assert "errors" not in result, result
    hits = result["data"]["search"]["hits"]
    assert len(hits) == 5
    assert all(hit["document"]["year"] >= 1980 for hit in hits)
    assert {"dense", "keyword", "fused"} <= hits[0]["scores"].keys()
    # Nothing left the machine, and nothing tried to: no CDN, no fonts from elsewhere.
    assert page.blocked == []
    assert page.js_errors == []
    await page.screenshot(path=str(save_screenshot_path("graphiql.png")))


async def test_a_subscription_in_graphiql_streams_over_the_websocket(page: Any, ragql_url: str) -> None:
    sockets: list[str] = []
    frames: list[dict[str, Any]] = []

    def on_websocket(ws: Any) -> None:
        sockets.append(ws.url)
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_websocket)
    # GraphiQL reads the document from ?q= (Strawberry's page shares queries that way).
    await _open(page, f"{ragql_url}/graphql?q={quote(SUBSCRIPTION)}")
    await page.click(".graphiql-execute-button")
    await page.wait_for_function(f"{RESULT_PANE}.includes('AnswerDone')", timeout=60_000)
    # The pane can show AnswerDone before Playwright has delivered the socket's last frame
    # ("complete") to this process: wait for it rather than race it.
    for _ in range(200):
        if frames and frames[-1].get("type") == "complete":
            break
        await asyncio.sleep(0.05)

    assert sockets == [f"{ragql_url.replace('http', 'ws')}/graphql"]
    assert frames[0]["type"] == "connection_ack"
    events = [f["payload"]["data"]["answerStream"] for f in frames if f["type"] == "next"]
    kinds = [event["__typename"] for event in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone"
    deltas = [event["text"] for event in events if event["__typename"] == "AnswerDelta"]
    assert len(deltas) >= 2, kinds
    done = events[-1]
    # The streamed pieces add up to the final answer, which cites the catalogue.
    assert "".join(deltas).strip() == done["text"].strip()
    assert done["citations"] and all(c["title"] for c in done["citations"])
    assert {"type": "complete", "id": frames[-1].get("id")} == frames[-1]
    # The result pane shows the last event GraphiQL received.
    assert json.loads(await _result(page))["data"]["answerStream"]["__typename"] == "AnswerDone"
    assert page.blocked == []
    await page.screenshot(path=str(save_screenshot_path("graphiql-subscription.png")))
