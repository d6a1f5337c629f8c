"""Query cost: `estimate_cost` against ragql's real field names, and the `QueryCost` extension on
a tiny schema of its own (no database)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

import graphql
import httpx
import pytest
import strawberry
from fastapi import FastAPI
from starlette.responses import Response
from starlette.testclient import TestClient
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import ExecutionResult

from domain.errors import RateLimited
from schema.context import Charger, ThrottleStatus
from schema.cost import DEFAULT_WEIGHTS, QueryCost, estimate_cost, ingest_cost
from schema.errors import ErrorCodes
from schema.root import build_schema


def cost(query: str, variables: dict[str, Any] | None = None, operation_name: str | None = None) -> int:
    return estimate_cost(graphql.parse(query), operation_name, variables)


# --- estimate_cost, on ragql's field names ----------------------------------------------------


def test_leaves_are_free_and_objects_cost_one() -> None:
    assert cost("{ serverInfo { version embeddingDim rerankers } me { tenant roles } }") == 2
    assert cost('{ document(id: "1") { id title tags metadata __typename } }') == 1


def test_every_operation_costs_at_least_one() -> None:
    assert cost("{ __typename }") == 1


DOCUMENTS = """
query Docs($n: Int = 7) {
  documents(first: $n) { edges { node { id title } } pageInfo { hasNextPage } totalCount }
}"""


def test_first_multiplies_the_page_from_a_literal_a_variable_and_the_default() -> None:
    # documents 1 + edges (1 + first x node 1) + pageInfo 1
    assert cost("{ documents(first: 5) { edges { node { id } } pageInfo { hasNextPage } } }") == 1 + 6 + 1
    assert cost(DOCUMENTS, {"n": 50}) == 1 + 51 + 1
    assert cost(DOCUMENTS) == 1 + 8 + 1  # the operation's default for $n
    assert cost("{ documents { edges { node { id } } } }") == 1 + 21  # the schema's default, 20
    assert cost("{ documents(first: 5000) { edges { node { id } } } }") == 1 + 101  # clamped to 100


def test_search_multiplies_its_hits() -> None:
    query = '{ search(query: "x", first: 5) { hits { document { title } chunk { text } score } totalCandidates } }'
    assert cost(query) == 10 + 1 + (1 + 5 * 2)
    assert cost('{ search(query: "x") { hits { document { id } } } }') == 10 + 1 + (1 + 10 * 1)


def test_other_paged_root_fields() -> None:
    assert cost("{ recommendations(first: 3) { items { document { id } } queryId } }") == 10 + 1 + (1 + 3)
    assert cost('{ similarDocuments(id: "1", first: 4) { document { id } chunk { id } } }') == 5 + 1 + 4 * 2


def test_lists_without_first_count_ten_and_nested_lists_multiply() -> None:
    answer = '{ answer(question: "q") { sources { document { id } chunk { id } } citations { document { id } } } }'
    assert cost(answer) == 50 + 1 + (1 + 10 * 2) + (1 + 10 * 1)
    # `sources` under a hit is not in the schema; the estimate does not need it to be, and it
    # shows a list inside a paged list counts first x 10.
    assert cost('{ search(query: "x", first: 5) { hits { sources { document { id } } } } }') == 10 + 1 + (
        1 + 5 * (1 + 10 * 1)
    )


def test_user_error_lists_count_once() -> None:
    assert cost('mutation { deleteDocument(input: {id: "1"}) { deletedId errors { code } } }') == 5 + 1 + 1


def test_fragments_and_inline_fragments_are_counted_where_spread() -> None:
    query = """
    query { ...Root }
    fragment Root on Query { search(query: "x", first: 4) { ...Result } }
    fragment Result on SearchResult { hits { ...Hit ... on SearchHit { chunk { id } } } }
    fragment Hit on SearchHit { document { id } }
    """
    # The root surcharge and the page size both reach through the fragments.
    assert cost(query) == 10 + 1 + (1 + 4 * 2)

    twice = """
    { similarDocuments(id: "1", first: 2) { ...H } answer(question: "q") { sources { ...H } } }
    fragment H on SearchHit { document { id } }
    """
    assert cost(twice) == (5 + 1 + 2 * 1) + (50 + 1 + (1 + 10 * 1))


def test_a_fragment_cycle_terminates() -> None:
    query = """
    { document(id: "1") { ...A } }
    fragment A on Document { ...B }
    fragment B on Document { ...A }
    """
    assert cost(query) == 1


def test_fragments_spread_twice_per_level_stay_linear_to_estimate() -> None:
    # F0 spreads F1 twice, F1 spreads F2 twice, ...: 2**39 copies of `me` once expanded. Walking
    # them one by one would never finish; memoised per fragment it is 40 small steps.
    levels = 40
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels - 1)]
    fragments.append(f"fragment F{levels - 1} on Query {{ me {{ tenant }} }}")
    assert cost("{ ...F0 }\n" + "\n".join(fragments)) == 2 ** (levels - 1)


def test_rerank_adds_its_surcharge() -> None:
    plain = '{ search(query: "x", options: %s) { totalCandidates } }'
    assert cost(plain % "null") == 11
    assert cost(plain % "{rerank: NONE}") == 11
    assert cost(plain % "{rerank: COHERE}") == 31
    with_variable = 'query($o: SearchOptions) { search(query: "x", options: $o) { totalCandidates } }'
    assert cost(with_variable, {"o": {"rerank": "LLM"}}) == 31
    assert cost(with_variable, {"o": {"mode": "DENSE"}}) == 11
    nested_default = 'query($r: RerankStrategy = LLM) { search(query: "x", options: {rerank: $r}) { tookMs } }'
    assert cost(nested_default) == 31

    answer = 'query($o: AnswerOptions) { answer(question: "q", options: $o) { text } }'
    assert cost(answer, {"o": {"rerank": "COHERE", "sources": 3}}) == 50 + 1 + 20
    stream = 'subscription { answerStream(question: "q", options: {rerank: LLM}) { __typename } }'
    assert cost(stream) == 50 + 1 + 20
    assert cost("{ recommendations(options: {rerank: LLM}) { queryId } }") == 10 + 1 + 20


INGEST = """
mutation Ingest($input: IngestDocumentsInput!) {
  ingestDocuments(input: $input) { chunksEmbedded errors { code } }
}"""


def test_ingest_counts_documents_from_variables_and_literals() -> None:
    # Each small document: 5, plus 1 for its first (started) 1,000 characters.
    docs = [{"title": f"t{i}", "text": "body"} for i in range(3)]
    assert cost(INGEST, {"input": {"documents": docs}}) == 6 * 3 + 1 + 1
    nested = "mutation($d: [DocumentInput!]!) { ingestDocuments(input: {documents: $d}) { chunksEmbedded } }"
    assert cost(nested, {"d": docs[:2]}) == 6 * 2 + 1
    literal = """mutation { ingestDocuments(input: {documents: [{title: "a", text: "b"}, {title: "c", text: "d"}]})
                 { chunksEmbedded } }"""
    assert cost(literal) == 6 * 2 + 1
    # Input coercion makes a lone object a one-item list.
    lone = 'mutation { ingestDocuments(input: {documents: {title: "a", text: "b"}}) { chunksEmbedded } }'
    assert cost(lone) == 6 + 1
    # Unknown (the variable is missing; coercion will reject it): the largest batch.
    assert cost(INGEST, {}) == 5 * 256 + 1 + 1


def test_ingest_cost_follows_document_size() -> None:
    small = [{"title": "t", "text": "x" * 10}] * 200
    large = [{"title": "t", "text": "x" * 1_190_000}]
    # One 1.19 MB document embeds ~1,700 chunks: it must cost more than one small document.
    assert ingest_cost(large) == 5 + 1_191
    assert cost(INGEST, {"input": {"documents": large}}) == 5 + 1_191 + 1 + 1
    assert ingest_cost(small) == 200 * 6
    # Attribute objects (what a job or the service holds) count the same as GraphQL input.
    assert ingest_cost([DocumentLike("t", "x" * 2_500)]) == 5 + 3


class DocumentLike:
    def __init__(self, title: str, text: str) -> None:
        self.title, self.text = title, text


class SizedUpload:
    def __init__(self, size: int) -> None:
        self.size = size


def test_upload_cost_follows_file_sizes() -> None:
    upload = "mutation($f: [Upload!]!) { uploadDocuments(input: {files: $f}) { chunksEmbedded } }"
    assert cost(upload, {"f": [SizedUpload(10)] * 200}) == 50 + 200 * (5 + 1) + 1
    assert cost(upload, {"f": [SizedUpload(5_000_000)]}) == 50 + 5 + 5_000 + 1


def test_selected_text_length_counts() -> None:
    query = 'query($o: AnswerOptions) { answer(question: "q", options: $o) { text } }'
    assert cost(query, {"o": {"selectedText": "x" * 20_000}}) == 50 + 200 + 1
    stream = 'subscription($o: AnswerOptions) { answerStream(question: "q", options: $o) { __typename } }'
    assert cost(stream, {"o": {"selectedText": "x" * 150}}) == 50 + 2 + 1


def test_a_first_the_estimator_cannot_read_counts_as_the_maximum() -> None:
    # Raw (uncoerced) floats: never the default, which is what let `100.0` cost 20.
    assert cost("query($n: Int) { documents(first: $n) { edges { node { id } } } }", {"n": 100.0}) == 1 + 101


def test_introspection_costs_a_flat_ten() -> None:
    assert cost("{ __schema { types { name fields { name type { name ofType { name } } } } } }") == 10
    assert cost('{ __type(name: "Query") { name fields { name } } }') == 10
    assert cost("{ __schema { queryType { name } } me { tenant } }") == 11


def test_root_mutations_are_looked_up_by_name() -> None:
    assert cost('mutation { createApiKey(input: {name: "ci"}) { key } }') == 5 + 1
    assert cost('mutation { revokeApiKey(input: {id: "k"}) { revokedId } }') == 5 + 1
    assert cost("mutation { uploadDocuments(input: {files: []}) { chunksEmbedded } }") == 50 + 1
    assert cost("mutation { submitFeedback(input: {kind: VIEW}) { duplicate } }") == 2 + 1
    assert cost("{ analytics { tokens { total } topQueries { query } } }") == 20 + 1 + 1 + (1 + 10 * 0)


def test_only_the_selected_operation_counts() -> None:
    doc = 'query A { me { tenant } } query B { answer(question: "q") { text } }'
    assert cost(doc, operation_name="A") == 1
    assert cost(doc, operation_name="B") == 51
    # Ambiguous or unknown: execution rejects it, so only the minimum is counted.
    assert cost(doc) == 1
    assert cost(doc, operation_name="C") == 1


def test_skip_and_include_are_honoured() -> None:
    query = """query($skip: Boolean!) {
      me { tenant }
      answer(question: "q") @skip(if: $skip) { text }
      ... @include(if: false) { search(query: "x") { tookMs } }
    }"""
    assert cost(query, {"skip": True}) == 1
    assert cost(query, {"skip": False}) == 1 + 51


def sdl_default(argument: graphql.GraphQLArgument) -> Any:
    assert argument.ast_node is not None and argument.ast_node.default_value is not None
    return graphql.value_from_ast_untyped(argument.ast_node.default_value)


def test_weights_match_the_real_schema() -> None:
    """The tables name fields by hand; this catches a rename, a new list or a changed default."""
    schema = graphql.build_schema(build_schema().as_str())
    query_type = schema.query_type
    assert query_type is not None
    roots: dict[str, graphql.GraphQLField] = {}
    for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
        roots.update({f"{root.name}.{name}": field_ for name, field_ in root.fields.items()} if root else {})

    for key, paged in DEFAULT_WEIGHTS.paged.items():
        type_name, name = key.split(".")
        assert type_name == "Query", key
        root_field = query_type.fields[name]
        assert sdl_default(root_field.args["first"]) == paged.default_first, name
        returned = graphql.get_named_type(root_field.type)
        if paged.items is None:
            assert graphql.is_list_type(graphql.get_nullable_type(root_field.type)), name
        else:
            assert isinstance(returned, graphql.GraphQLObjectType), name
            assert graphql.is_list_type(graphql.get_nullable_type(returned.fields[paged.items].type)), name

    object_lists = {
        field_name
        for type_ in schema.type_map.values()
        if isinstance(type_, graphql.GraphQLObjectType)
        and not graphql.is_introspection_type(type_)
        and type_ is not query_type  # root lists are paged
        for field_name, field_ in type_.fields.items()
        if graphql.is_list_type(graphql.get_nullable_type(field_.type))
        and graphql.is_composite_type(graphql.get_named_type(field_.type))
    }
    assert object_lists, "no object lists found: the check below would prove nothing"
    assert object_lists - {"errors"} <= DEFAULT_WEIGHTS.list_fields

    assert set(DEFAULT_WEIGHTS.root_fields) <= set(roots)
    assert DEFAULT_WEIGHTS.per_document_fields <= set(roots)
    assert DEFAULT_WEIGHTS.per_file_fields <= set(roots)
    assert DEFAULT_WEIGHTS.selected_text_fields <= set(roots)
    assert DEFAULT_WEIGHTS.rerank_fields <= set(roots)


# --- the QueryCost extension, on a tiny schema ------------------------------------------------

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def reset_calls() -> Iterator[None]:
    calls.clear()
    yield


@strawberry.type
class Doc:
    id: strawberry.ID


@strawberry.type
class Hit:
    score: float

    @strawberry.field
    def document(self) -> Doc:
        return Doc(id=strawberry.ID("d1"))


@strawberry.type
class DeletePayload:
    deleted_id: strawberry.ID | None


@strawberry.type
class Query:
    @strawberry.field
    def similar_documents(self, first: int = 10) -> list[Hit]:
        calls["similarDocuments"] += 1
        return [Hit(score=1.0) for _ in range(first)]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def delete_document(self, id: strawberry.ID) -> DeletePayload:
        calls["deleteDocument"] += 1
        return DeletePayload(deleted_id=id)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def answer_stream(self, question: str) -> AsyncGenerator[Hit, None]:
        calls["answerStream"] += 1
        yield Hit(score=1.0)


class Ctx(BaseContext):
    def __init__(self, charge: Charger | None = None) -> None:
        super().__init__()
        self.charge = charge
        self.request_id = "req-1"


def tiny_schema(max_cost: int) -> strawberry.Schema:
    # A factory, so each request gets its own QueryCost (Strawberry shares instances).
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[ErrorCodes, lambda: QueryCost(max_cost=max_cost)],
    )


SIMILAR = "query($n: Int!) { similarDocuments(first: $n) { document { id } } }"  # costs 5 + 1 + n
STREAM = 'subscription { answerStream(question: "q") { score } }'  # costs 50 + 1


def status(available: int = 992) -> ThrottleStatus:
    return ThrottleStatus(maximum_available=1000, currently_available=available, restore_rate=50.0, backend="local")


class RecordingCharger:
    def __init__(self, outcome: ThrottleStatus | Exception) -> None:
        self.outcome = outcome
        self.charged: list[int] = []

    async def __call__(self, cost: int) -> ThrottleStatus:
        self.charged.append(cost)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def only_error(result: ExecutionResult) -> graphql.GraphQLError:
    assert result.data is None
    assert result.errors is not None and len(result.errors) == 1
    return result.errors[0]


async def test_an_over_max_query_is_rejected_before_it_runs() -> None:
    charger = RecordingCharger(status())
    result = await tiny_schema(50).execute(SIMILAR, {"n": 100}, context_value=Ctx(charger))
    error = only_error(result)
    assert error.message == (
        "This query costs 106, more than the maximum of 50. Ask for fewer items (lower `first`) or split it."
    )
    assert error.extensions == {"code": "QUERY_TOO_COSTLY", "cost": 106, "maximumCost": 50, "requestId": "req-1"}
    assert calls["similarDocuments"] == 0
    # Not what it would have cost, but the minimum for a refusal: refusals are work too.
    assert charger.charged == [DEFAULT_WEIGHTS.rejected]
    assert result.extensions == {"cost": {"requestedQueryCost": 106, "maximumQueryCost": 50}}


async def test_an_over_max_mutation_is_rejected_before_it_runs() -> None:
    result = await tiny_schema(5).execute('mutation { deleteDocument(id: "1") { deletedId } }')
    error = only_error(result)
    assert error.message.startswith("This mutation costs 6, more than the maximum of 5.")
    assert error.extensions is not None and error.extensions["code"] == "QUERY_TOO_COSTLY"
    assert calls["deleteDocument"] == 0


@pytest.mark.parametrize("first", [100.0, 1e2])
async def test_a_float_first_is_costed_as_the_int_it_coerces_to(first: float) -> None:
    # graphql-core accepts 100.0 and 1e2 as an Int; the estimate must see the 100 execution uses.
    charger = RecordingCharger(status())
    result = await tiny_schema(50).execute(SIMILAR, {"n": first}, context_value=Ctx(charger))
    assert only_error(result).extensions == {
        "code": "QUERY_TOO_COSTLY",
        "cost": 106,
        "maximumCost": 50,
        "requestId": "req-1",
    }
    assert calls["similarDocuments"] == 0


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ similarDocuments(first: 2) { document { id } ", None),  # unparsable
        ("{ similarDocuments(first: 2) { nope } }", None),  # invalid
        (SIMILAR, {"n": "two"}),  # variables that do not coerce
    ],
)
async def test_refused_operations_are_charged_the_minimum(query: str, variables: dict[str, Any] | None) -> None:
    charger = RecordingCharger(status())
    result = await tiny_schema(1000).execute(query, variables, context_value=Ctx(charger))
    assert result.errors
    assert charger.charged == [DEFAULT_WEIGHTS.rejected]
    assert calls["similarDocuments"] == 0


async def test_a_charge_reports_its_throttle_status() -> None:
    charger = RecordingCharger(status(available=992))
    result = await tiny_schema(1000).execute(SIMILAR, {"n": 2}, context_value=Ctx(charger))
    assert result.errors is None
    assert result.data == {"similarDocuments": [{"document": {"id": "d1"}}] * 2}
    assert charger.charged == [8]
    assert result.extensions == {
        "cost": {
            "requestedQueryCost": 8,
            "maximumQueryCost": 1000,
            "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 992, "restoreRate": 50.0},
        }
    }


async def test_without_a_charger_only_the_cost_is_reported() -> None:
    result = await tiny_schema(1000).execute(SIMILAR, {"n": 2}, context_value=Ctx(charge=None))
    assert result.errors is None
    assert result.extensions == {"cost": {"requestedQueryCost": 8, "maximumQueryCost": 1000}}
    # A context without a `charge` attribute at all (Strawberry's default dict) works the same.
    result = await tiny_schema(1000).execute(SIMILAR, {"n": 2})
    assert result.errors is None and calls["similarDocuments"] == 2


@pytest.mark.parametrize(("retry_after_s", "expected"), [(2.1, 3), (0.2, 1), (0.0, 1), (5.0, 5)])
async def test_rate_limited_is_rejected_with_retry_after(retry_after_s: float, expected: int) -> None:
    ctx = Ctx(RecordingCharger(RateLimited("Slow down: 3 of 8 left.", retry_after_s=retry_after_s)))
    ctx.response = Response()
    result = await tiny_schema(1000).execute(SIMILAR, {"n": 2}, context_value=ctx)
    error = only_error(result)
    assert error.message == "Slow down: 3 of 8 left."
    assert error.extensions == {"code": "RATE_LIMITED", "retryAfter": expected, "requestId": "req-1"}
    assert calls["similarDocuments"] == 0
    assert ctx.response.status_code == 429
    assert ctx.response.headers["Retry-After"] == str(expected)
    assert result.extensions == {"cost": {"requestedQueryCost": 8, "maximumQueryCost": 1000}}


async def test_a_failing_charger_fails_closed_and_is_masked() -> None:
    charger = RecordingCharger(RuntimeError("redis://secret-host refused"))
    result = await tiny_schema(1000).execute(SIMILAR, {"n": 2}, context_value=Ctx(charger))
    error = only_error(result)
    assert error.extensions is not None and error.extensions["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret-host" not in error.message
    assert calls["similarDocuments"] == 0


async def test_concurrent_requests_each_report_their_own_cost() -> None:
    arrived = 0
    both_in = asyncio.Event()

    async def charge(cost: int) -> ThrottleStatus:
        # Hold both requests inside on_execute at once, so a shared report would get mixed up.
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_in.set()
        await both_in.wait()
        return status(available=1000 - cost)

    schema = tiny_schema(1000)
    small, large = await asyncio.gather(
        schema.execute(SIMILAR, {"n": 2}, context_value=Ctx(charge)),
        schema.execute(SIMILAR, {"n": 4}, context_value=Ctx(charge)),
    )
    for result, expected in ((small, 8), (large, 10)):
        assert result.errors is None
        assert result.extensions is not None
        assert result.extensions["cost"]["requestedQueryCost"] == expected
        assert result.extensions["cost"]["throttleStatus"]["currentlyAvailable"] == 1000 - expected


async def collect(stream: Any) -> list[ExecutionResult]:
    return [result async for result in stream]


async def test_an_over_max_subscription_is_rejected_before_it_runs() -> None:
    charger = RecordingCharger(status())
    results = await collect(await tiny_schema(10).subscribe(STREAM, context_value=Ctx(charger)))
    assert len(results) == 1
    error = only_error(results[0])
    assert error.message.startswith("This subscription costs 51, more than the maximum of 10.")
    assert error.extensions is not None
    assert (error.extensions["code"], error.extensions["cost"]) == ("QUERY_TOO_COSTLY", 51)
    assert calls["answerStream"] == 0
    assert charger.charged == [DEFAULT_WEIGHTS.rejected]


async def test_a_rate_limited_subscription_is_rejected_before_it_runs() -> None:
    ctx = Ctx(RecordingCharger(RateLimited("Slow down.", retry_after_s=1.5)))
    results = await collect(await tiny_schema(1000).subscribe(STREAM, context_value=ctx))
    error = only_error(results[0])
    assert error.extensions is not None
    assert (error.extensions["code"], error.extensions["retryAfter"]) == ("RATE_LIMITED", 2)
    assert calls["answerStream"] == 0


async def test_a_subscription_within_budget_is_charged_and_runs() -> None:
    charger = RecordingCharger(status())
    results = await collect(await tiny_schema(1000).subscribe(STREAM, context_value=Ctx(charger)))
    assert [r.data for r in results] == [{"answerStream": {"score": 1.0}}]
    assert charger.charged == [51]
    assert calls["answerStream"] == 1


# --- over HTTP, through Strawberry's FastAPI router ---------------------------------------------


def tiny_app(max_cost: int, charge: Callable[[int], Awaitable[ThrottleStatus]]) -> FastAPI:
    async def get_context() -> Ctx:
        return Ctx(charge)

    app = FastAPI()
    router: GraphQLRouter[Ctx, None] = GraphQLRouter(tiny_schema(max_cost), context_getter=get_context)
    app.include_router(router, prefix="/graphql")
    return app


def http_client(charge: Callable[[int], Awaitable[ThrottleStatus]]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=tiny_app(1000, charge))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_http_reply_carries_the_cost_extensions() -> None:
    async with http_client(RecordingCharger(status(available=992))) as client:
        response = await client.post("/graphql", json={"query": SIMILAR, "variables": {"n": 2}})
    assert response.status_code == 200
    assert response.json()["extensions"]["cost"] == {
        "requestedQueryCost": 8,
        "maximumQueryCost": 1000,
        "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 992, "restoreRate": 50.0},
    }


async def test_http_rate_limited_is_a_429_with_retry_after() -> None:
    async with http_client(RecordingCharger(RateLimited("Slow down.", retry_after_s=2.5))) as client:
        response = await client.post("/graphql", json={"query": SIMILAR, "variables": {"n": 2}})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 3, "requestId": "req-1"}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 8
    assert calls["similarDocuments"] == 0


def test_over_websockets_a_rejection_is_one_next_then_complete() -> None:
    # graphql-transport-ws: not the protocol's `error` message (Strawberry keeps that for
    # validation errors) but a `next` with the error and no data, then `complete`.
    app = tiny_app(10, RecordingCharger(status()))
    with TestClient(app) as client, client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json() == {"type": "connection_ack"}
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": STREAM}})
        message = ws.receive_json()
        assert (message["id"], message["type"], message["payload"]["data"]) == ("1", "next", None)
        assert message["payload"]["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        assert message["payload"]["extensions"]["cost"] == {"requestedQueryCost": 51, "maximumQueryCost": 10}
        assert ws.receive_json() == {"id": "1", "type": "complete"}
    assert calls["answerStream"] == 0
