"""answerStream over real websockets: the `gql` client against uvicorn on 127.0.0.1, with both
subprotocols, the default extractive generator, bad input, and the Origin check."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.typing import Origin, Subprotocol

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from schema.common import to_global_id
from tests.servers import serve_in_thread

ALLOWED_ORIGIN = "http://app.example.test"
STREAM = """
subscription($q: String!, $o: AnswerOptions) {
  answerStream(question: $q, options: $o) {
    __typename
    ... on AnswerSources { answerId sessionId sources { document { title } } }
    ... on AnswerDelta { answerId text }
    ... on AnswerDone { answerId sessionId text generator citations { number title } tookMs firstTokenMs }
    ... on AnswerError { answerId code message field }
  }
}
"""


@pytest.fixture(scope="module")
def ws_server(pg_url: str, tmp_root: Path, embedder: LocalEmbedder, app_client: httpx.AsyncClient) -> Iterator[str]:
    # app_client first: it has loaded the demo films this server answers from.
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False, cors_origins=[ALLOWED_ORIGIN])
    with serve_in_thread(create_app(settings, embedder=embedder)) as address:
        yield address


async def _events(address: str, question: str, options: dict[str, Any] | None, protocol: str) -> list[dict]:
    transport = WebsocketsTransport(url=f"ws://{address}/graphql", subprotocols=[protocol])
    events: list[dict] = []
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        request = GraphQLRequest(STREAM, variable_values={"q": question, "o": options})
        async for result in session.subscribe(request):
            events.append(result["answerStream"])
    return events


@pytest.mark.parametrize(
    "protocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]
)
async def test_sources_then_deltas_then_done(ws_server: str, protocol: str) -> None:
    events = await _events(ws_server, "Which film is about a man stuck in a time loop?", None, protocol)
    kinds = [e["__typename"] for e in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone"
    assert set(kinds[1:-1]) == {"AnswerDelta"} and len(kinds) > 5  # streamed in pieces, not one blob
    sources, done = events[0], events[-1]
    assert len(sources["sources"]) == 5
    assert {e["answerId"] for e in events} == {sources["answerId"]}
    assert "".join(e["text"] for e in events[1:-1]) == done["text"]
    assert done["generator"] == "extractive" and done["citations"]
    titles = [s["document"]["title"] for s in sources["sources"]]
    assert all(titles[c["number"] - 1] == c["title"] for c in done["citations"])
    assert 0 < done["firstTokenMs"] <= done["tookMs"]


async def test_bad_input_ends_the_stream_with_a_coded_error(ws_server: str) -> None:
    protocol = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
    empty = await _events(ws_server, "  ", None, protocol)
    assert [(e["__typename"], e["code"], e["field"]) for e in empty] == [("AnswerError", "EMPTY_QUESTION", "question")]
    missing = to_global_id("AnswerSession", uuid.uuid4())
    unknown = await _events(ws_server, "and then?", {"sessionId": missing}, protocol)
    assert [(e["__typename"], e["code"]) for e in unknown] == [("AnswerError", "SESSION_NOT_FOUND")]
    assert "omit sessionId" in unknown[0]["message"]


async def test_follow_up_over_the_socket_keeps_the_session(ws_server: str) -> None:
    protocol = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
    first = await _events(ws_server, "Which film follows a psychologist on a space station?", None, protocol)
    session_id = first[-1]["sessionId"]
    follow = await _events(ws_server, "Who directed it?", {"sessionId": session_id}, protocol)
    assert follow[0]["sessionId"] == session_id and follow[-1]["__typename"] == "AnswerDone"


async def test_a_disallowed_origin_is_refused_before_the_upgrade(ws_server: str) -> None:
    url = f"ws://{ws_server}/graphql"
    protocols = [Subprotocol("graphql-transport-ws")]
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=Origin("http://evil.example"), subprotocols=protocols):
            pass
    assert refused.value.response.status_code == 403
    # The configured origin, and a non-browser client without an Origin header, are let in.
    for origin in (Origin(ALLOWED_ORIGIN), None):
        async with websockets.connect(url, origin=origin, subprotocols=protocols) as ws:
            await ws.send('{"type": "connection_init"}')
            assert '"connection_ack"' in str(await ws.recv())
