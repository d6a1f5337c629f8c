"""`answer` through GraphQL with the default (offline, extractive) generator over the demo films."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from schema.common import from_global_id, to_global_id
from tests.conftest import error_codes, graphql, graphql_ok, tenant_client

ANSWER = """
query($q: String!, $o: AnswerOptions) {
  answer(question: $q, options: $o) {
    id sessionId question retrievalQuery text generator notes droppedCitations tookMs firstTokenMs
    usage { totalTokens }
    citations { number title chunkId document { id title } }
    sources { document { id title } chunk { id } }
    rerank { requested applied fallbackReason }
  }
}
"""


async def _answer(client: httpx.AsyncClient, question: str, **options: object) -> dict:
    data = await graphql_ok(client, ANSWER, {"q": question, "o": options or None})
    answer: dict = data["answer"]
    return answer


async def _stored(db: Database, answer_id: str) -> dict:
    _, ident = from_global_id(answer_id, expected="Answer")
    async with db.session("default") as session:
        row = (await session.execute(text("SELECT * FROM answers WHERE id = :id"), {"id": ident})).mappings().one()
    return dict(row)


async def test_answer_cites_the_sources_it_quotes(app_client: httpx.AsyncClient, db: Database) -> None:
    answer = await _answer(app_client, "Which film is about a man stuck in a time loop?")
    assert answer["generator"] == "extractive"
    assert len(answer["sources"]) == 5
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", answer["text"])]
    assert cited, answer["text"]
    assert {c["number"] for c in answer["citations"]} == set(cited)
    for citation in answer["citations"]:
        # [n] is sources[n-1]: the citation names the same document and chunk.
        source = answer["sources"][citation["number"] - 1]
        assert citation["document"]["id"] == source["document"]["id"]
        assert citation["chunkId"] == source["chunk"]["id"]
    # Extractive answers quote: every cited sentence is in the source's chunk text.
    assert "time loop" in answer["text"].lower()
    assert answer["usage"] is None and answer["droppedCitations"] == []
    assert answer["firstTokenMs"] is not None and answer["firstTokenMs"] <= answer["tookMs"]

    row = await _stored(db, answer["id"])
    assert row["status"] == "done" and row["generator"] == "extractive"
    assert row["question"] == "Which film is about a man stuck in a time loop?"
    assert row["text"] == answer["text"]
    assert row["citations"] == sorted(set(cited), key=cited.index)
    assert [s["n"] for s in row["sources"]] == [1, 2, 3, 4, 5]
    assert row["took_ms"] > 0


async def test_answer_from_selected_text_retrieves_nothing(app_client: httpx.AsyncClient) -> None:
    passage = (
        "The Treaty of Westphalia was signed in 1648. It ended the Thirty Years' War. "
        "Historians see it as the start of the modern state system."
    )
    answer = await _answer(app_client, "When was the treaty signed?", selectedText=passage)
    assert answer["sources"] == [] and answer["retrievalQuery"] is None
    assert "1648" in answer["text"]
    assert [c["number"] for c in answer["citations"]] == [1]
    assert answer["citations"][0]["title"] == "Selected text" and answer["citations"][0]["document"] is None


async def test_unanswerable_selection_says_so(app_client: httpx.AsyncClient) -> None:
    passage = "Whisk the eggs with sugar until pale. Fold in the flour gently and bake for twenty minutes."
    answer = await _answer(app_client, "What is the orbital period of Neptune?", selectedText=passage)
    assert answer["text"].startswith("The documents do not seem to answer this directly.")


async def test_extractive_generator_reports_that_it_ignores_audience(app_client: httpx.AsyncClient) -> None:
    answer = await _answer(app_client, "What is Solaris about?", audience="BEGINNER")
    assert any("ignores audience=BEGINNER" in n for n in answer["notes"])


async def test_follow_up_condenses_the_session_into_the_retrieval_query(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    first = await _answer(app_client, "Which film follows a psychologist sent to a space station over an ocean?")
    follow = await _answer(app_client, "Who directed it?", sessionId=first["sessionId"])
    assert follow["sessionId"] == first["sessionId"]
    # Without an LLM the previous question is carried into the search, so "it" finds Solaris again.
    assert "psychologist" in follow["retrievalQuery"] and follow["retrievalQuery"].endswith("Who directed it?")
    assert "Solaris" in [s["document"]["title"] for s in follow["sources"]]
    rows = [await _stored(db, a["id"]) for a in (first, follow)]
    assert [r["turn"] for r in rows] == [0, 1]
    assert rows[0]["session_id"] == rows[1]["session_id"]


async def test_answer_bad_input_gets_coded_errors(app_client: httpx.AsyncClient, db: Database) -> None:
    async with db.session("default") as session:
        before = (await session.execute(text("SELECT count(*) FROM answers"))).scalar_one()
    unknown_session = to_global_id("AnswerSession", uuid.uuid4())
    cases: list[tuple[str, dict | None, str]] = [
        ("   ", None, "EMPTY_QUESTION"),
        ("why " * 2600, None, "QUESTION_TOO_LONG"),  # 10,400 characters: over RAGQL_MAX_QUERY_CHARS
        ("time travel", {"sources": 0}, "INVALID_SOURCES"),
        ("time travel", {"sources": 500}, "INVALID_SOURCES"),
        ("time travel", {"selectedText": "  "}, "EMPTY_SELECTED_TEXT"),
        ("time travel", {"selectedText": "x" * 20_001}, "SELECTED_TEXT_TOO_LONG"),
        ("time travel", {"sessionId": unknown_session}, "SESSION_NOT_FOUND"),
        ("time travel", {"sessionId": "not-an-id"}, "INVALID_ID"),
        ("time travel", {"rerank": "SOMETHING"}, "GRAPHQL_VALIDATION_FAILED"),
        ("time travel", {"filter": {"all": [{"field": "year", "op": "GT", "value": "soon"}]}}, "INVALID_FILTER_VALUE"),
    ]
    for question, options, code in cases:
        body = await graphql(app_client, ANSWER, {"q": question, "o": options})
        assert error_codes(body) == [code], (question[:20], options, body)
    async with db.session("default") as session:
        after = (await session.execute(text("SELECT count(*) FROM answers"))).scalar_one()
    assert after == before  # rejected questions store nothing


async def test_unconfigured_rerankers_fall_back_and_say_why(app_client: httpx.AsyncClient) -> None:
    query = """query($s: RerankStrategy!) {
      search(query: "time travel", first: 5, options: {rerank: $s}) {
        hits { document { title } scores { rerank fusedRank rankChange } }
        rerank { requested applied model fallbackReason }
      }
      serverInfo { generator rerankers providers }
    }"""
    plain = await graphql_ok(app_client, query, {"s": "NONE"})
    assert plain["serverInfo"]["generator"] == "extractive" and plain["serverInfo"]["rerankers"] == ["NONE"]
    for strategy, hint in (("COHERE", "RAGQL_COHERE_API_KEY"), ("LLM", "RAGQL_LLM_MODEL")):
        data = await graphql_ok(app_client, query, {"s": strategy})
        info = data["search"]["rerank"]
        assert info["requested"] == strategy and info["applied"] == "NONE" and info["model"] is None
        assert hint in info["fallbackReason"]
        # The fused order, untouched.
        assert [h["document"]["title"] for h in data["search"]["hits"]] == [
            h["document"]["title"] for h in plain["search"]["hits"]
        ]
        assert all(h["scores"]["rerank"] is None and h["scores"]["rankChange"] is None for h in data["search"]["hits"])
        assert [h["scores"]["fusedRank"] for h in data["search"]["hits"]] == [1, 2, 3, 4, 5]


async def test_answer_stream_over_multipart_http_for_clients_without_websockets(app_client: httpx.AsyncClient) -> None:
    query = """subscription { answerStream(question: "Which film is about a time loop?") {
      __typename ... on AnswerDelta { text } ... on AnswerDone { text } } }"""
    headers = {"accept": "multipart/mixed;subscriptionSpec=1.0"}
    async with app_client.stream("POST", "/graphql", json={"query": query}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/mixed")
        body = (await response.aread()).decode()
    payloads = [json.loads(part[part.index("{") :]) for part in body.split("--graphql") if '"payload"' in part]
    events = [p["payload"]["data"]["answerStream"] for p in payloads]
    assert events[0]["__typename"] == "AnswerSources" and events[-1]["__typename"] == "AnswerDone"
    assert "".join(e["text"] for e in events if e["__typename"] == "AnswerDelta") == events[-1]["text"]


async def test_a_repeated_question_reuses_the_answer_until_the_tenant_writes(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    """The answer cache: the same question and options at the same index version get the stored
    answer's text and sources again (read back through the answers table); after an ingest a new
    answer is generated.
    The answer is a Node: node(id:) reads it back."""
    async with tenant_client(pg_url, tmp_root, embedder) as (client, _tenant):
        ask = "query($q: String!) { answer(question: $q) { id text notes sources { document { title } } } }"
        question = {"q": "Which film is about a heist that goes wrong?"}
        first = (await graphql_ok(client, ask, question))["answer"]
        again = (await graphql_ok(client, ask, question))["answer"]
        # The same answer, stored again as the second asker's own (own id, own session).
        assert again["id"] != first["id"] and again["text"] == first["text"]
        assert again["sources"] == first["sources"]
        assert any("answer cache" in n for n in again["notes"]) and not any("answer cache" in n for n in first["notes"])
        node = await graphql_ok(
            client, "query($id: ID!) { node(id: $id) { ... on Answer { id text } } }", {"id": first["id"]}
        )
        assert node["node"] == {"id": first["id"], "text": first["text"]}
        await graphql_ok(
            client,
            "mutation($d: [DocumentInput!]!) { ingestDocuments(input: {documents: $d}) { documents { id } } }",
            {"d": [{"title": "Vault Job", "text": "A heist that goes wrong in a bank vault."}]},
        )
        after = (await graphql_ok(client, ask, question))["answer"]
        assert not any("answer cache" in n for n in after["notes"])
        assert "Vault Job" in [h["document"]["title"] for h in after["sources"]]
