"""Real GraphQL clients against a live ragql on 127.0.0.1 (uvicorn in a thread, the session's
database with the demo films): the Python `gql` client over HTTP and over the websocket, and a
Node program (tests/node/client.mjs) with plain fetch and the npm `graphql-ws` client.

The Node test runs when node and npm are present; its packages come from tests/node/package-lock.json
through `npm ci` (the npm registry). Without node, or when `npm ci` cannot reach the registry, it
skips and says why in the summary: never silently green."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from tests.servers import serve_in_thread

NODE_DIR = Path(__file__).resolve().parent / "node"
NPM_CI_TIMEOUT_S = 180
NODE_TIMEOUT_S = 90

SEARCH = gql(
    """query Search($q: String!, $filter: MetadataFilter) {
      search(query: $q, first: 3, options: {mode: HYBRID, filter: $filter}) {
        queryId
        hits { document { id title year } scores { dense keyword fused } }
      }
    }"""
)
FEEDBACK = gql(
    """mutation Feedback($input: FeedbackInput!) {
      submitFeedback(input: $input) { duplicate feedback { id kind } errors { code message } }
    }"""
)
ASK = gql(
    """subscription Ask($q: String!) {
      answerStream(question: $q) {
        __typename
        ... on AnswerDelta { text }
        ... on AnswerDone { text citations { number title } }
        ... on AnswerError { code message }
      }
    }"""
)


@pytest.fixture(scope="module")
def live_server(pg_url: str, tmp_root: Path, embedder: LocalEmbedder, app_client: httpx.AsyncClient) -> Iterator[str]:
    # app_client first: it has loaded the demo films this server answers from.
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False)
    with serve_in_thread(create_app(settings, embedder=embedder)) as address:
        yield address


async def test_gql_over_http_searches_with_a_filter_and_sends_feedback(live_server: str) -> None:
    transport = HTTPXAsyncTransport(url=f"http://{live_server}/graphql", timeout=30)
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        # The client checked the documents against the schema it introspected (development mode).
        assert session.client.schema is not None and session.client.schema.get_type("SearchHit") is not None
        year_filter = {"all": [{"field": "year", "op": "GTE", "value": 1990}]}
        result = await session.execute(
            GraphQLRequest(SEARCH, variable_values={"q": "heist crew", "filter": year_filter})
        )
        hits = result["search"]["hits"]
        assert len(hits) == 3 and all(h["document"]["year"] >= 1990 for h in hits)
        key = f"gql-{uuid.uuid4()}"
        feedback_input: dict[str, Any] = {
            "kind": "LIKE",
            "userId": "gql-client",
            "documentId": hits[0]["document"]["id"],
            "queryId": result["search"]["queryId"],
            "idempotencyKey": key,
        }
        first = (await session.execute(GraphQLRequest(FEEDBACK, variable_values={"input": feedback_input})))[
            "submitFeedback"
        ]
        again = (await session.execute(GraphQLRequest(FEEDBACK, variable_values={"input": feedback_input})))[
            "submitFeedback"
        ]
    assert first["errors"] == [] and first["duplicate"] is False and first["feedback"]["kind"] == "LIKE"
    assert again["duplicate"] is True and again["feedback"]["id"] == first["feedback"]["id"]


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_gql_over_websockets_streams_an_answer(live_server: str, subprotocol: str) -> None:
    transport = WebsocketsTransport(url=f"ws://{live_server}/graphql", subprotocols=[subprotocol])
    events: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        async for result in session.subscribe(
            GraphQLRequest(ASK, variable_values={"q": "Which films are about time travel?"})
        ):
            events.append(result["answerStream"])
    kinds = [e["__typename"] for e in events]
    assert kinds[0] == "AnswerSources", kinds
    assert kinds[-1] == "AnswerDone" and kinds.count("AnswerDelta") >= 2, kinds
    streamed = "".join(e["text"] for e in events if e["__typename"] == "AnswerDelta")
    assert streamed == events[-1]["text"] and events[-1]["citations"]


def _npm_ci(workdir: Path) -> None:
    for name in ("package.json", "package-lock.json", "client.mjs"):
        shutil.copy(NODE_DIR / name, workdir / name)
    try:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            f"Node client test skipped: `npm ci` did not finish in {NPM_CI_TIMEOUT_S} s (registry unreachable?)"
        )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        pytest.skip("Node client test skipped: `npm ci` failed (offline?): " + " | ".join(tail))


def test_node_client_with_fetch_and_graphql_ws(live_server: str, tmp_path: Path) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"Node client test skipped: {'node' if node is None else 'npm'} is not installed")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"Node client test skipped: node {version} is older than 20 (graphql-ws 6 and global fetch)")
    _npm_ci(tmp_path)
    done = subprocess.run(
        [node, "client.mjs", f"http://{live_server}/graphql"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["search"]) == 3 and all(hit["year"] >= 1990 for hit in seen["search"])
    assert seen["feedback"] == {"first": False, "again": True, "sameEvent": True, "errors": []}
    events = seen["events"]
    assert events[0] == "AnswerSources" and events[-1] == "AnswerDone" and events.count("AnswerDelta") >= 2, events
    assert seen["answer"] == seen["done"]["text"] and seen["done"]["citations"] >= 1
