"""Property-based fuzz of the whole GraphQL schema with hypothesis-graphql.

Three categories, each a hypothesis property over POST /graphql:

* valid queries generated from the live schema, against the shared demo app (`app_client`);
* valid mutations, against a fresh tenant app of their own so the shared demo data stays intact;
* invalid operations: hypothesis-graphql's NEGATIVE mode, AST corruptions of valid operations
  (unknown field or argument, wrong-typed value, swapped operation type), subscriptions sent as a
  plain JSON POST, Upload scalars given inline, text damage (dropped brace, inserted junk,
  truncation) and raw unicode text.

Every response must be a GraphQL response: no 5xx, a JSON object with `data` or `errors`, no
"Traceback", and every error carrying an `extensions.code` that is not INTERNAL_SERVER_ERROR (the
masked form of an unexpected exception in our code). A failure quotes the server's own traceback
from the `ragql.errors` log.

Wiring: pytest-asyncio runs these tests on the session event loop, and `@given` cannot drive an
async test. So each test runs a synchronous `@given` property in a worker thread
(`asyncio.to_thread`) while the loop stays free; each example submits its request to that loop with
`asyncio.run_coroutine_threadsafe` and blocks on the result. Hypothesis thus owns the whole run:
it generates, and on a failure it shrinks, to a minimal operation.

Size: 150 query, 100 mutation and 150 invalid examples, split evenly over one test per query
root field, per mutation and per invalid family (see `_groups` for why). RAGQL_FUZZ_EXAMPLES is a
multiplier (0.2 for a smoke run, 10 for a soak). `derandomize=True` fixes the seed, so a run is
reproducible for a given schema; changing the schema changes what is generated. Run with -s to
see the examples sent per target and per category.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from domain.providers.embedding import LocalEmbedder
from schema.common import to_global_id
from schema.root import build_schema
from tests.conftest import graphql_ok, tenant_client


def _scaled(base: int) -> int:
    factor = float(os.environ.get("RAGQL_FUZZ_EXAMPLES", "1"))
    return max(1, round(base * factor))


QUERY_EXAMPLES = _scaled(150)
MUTATION_EXAMPLES = _scaled(100)
INVALID_EXAMPLES = _scaled(150)


def _share(total: int, parts: int) -> int:
    """Each fuzz target's share of its category's budget, rounded up."""
    return max(1, -(-total // parts))


# A single request that takes this long is a hang, not a slow example.
REQUEST_TIMEOUT_S = 60.0

# The live schema, not schema.graphql, so the fuzz follows every change to the types.
SCHEMA = graphql.build_schema(str(build_schema()))


def _narrow(schema: graphql.GraphQLSchema, type_name: str, field_name: str, scalar: str) -> bool:
    """Give one input field a scalar type of its own, in the schema the strategies generate from.

    hypothesis-graphql picks a strategy per scalar type, so `Condition.field` would draw from every
    String and almost never name a filterable key, and `Condition.value` from every JSON. With
    scalars of their own they get strategies aimed at the filter parser. They still print as
    plain literals, so the operations stay valid against the real schema."""
    input_type = schema.type_map.get(type_name)
    if not isinstance(input_type, graphql.GraphQLInputObjectType) or field_name not in input_type.fields:
        return False
    old = input_type.fields[field_name]
    named = graphql.GraphQLScalarType(scalar)
    new_type = graphql.GraphQLNonNull(named) if isinstance(old.type, graphql.GraphQLNonNull) else named
    input_type.fields[field_name] = graphql.GraphQLInputField(new_type, default_value=old.default_value)
    return True


NARROWED = _narrow(SCHEMA, "Condition", "field", "FilterKey") and _narrow(SCHEMA, "Condition", "value", "FilterValue")

T = TypeVar("T")
Target = Literal["demo", "scratch"]


# --- which root fields can be generated --------------------------------------------------------


def _reaches(type_: graphql.GraphQLInputType, scalar: str, seen: frozenset[str] = frozenset()) -> bool:
    named = graphql.get_named_type(type_)
    if named.name == scalar:
        return True
    if isinstance(named, graphql.GraphQLInputObjectType) and named.name not in seen:
        return any(_reaches(f.type, scalar, seen | {named.name}) for f in named.fields.values())
    return False


def _root_fields_without(root: graphql.GraphQLObjectType, scalar: str) -> list[str]:
    return [
        name for name, field in root.fields.items() if not any(_reaches(a.type, scalar) for a in field.args.values())
    ]


assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None and SCHEMA.subscription_type is not None
# An Upload can only arrive as a multipart file part, never as a literal in the query text, so a
# valid mutation cannot carry one: positive mutations leave those fields out (uploadDocuments).
# The invalid category sends them with inline literals instead.
MUTATION_FIELDS = _root_fields_without(SCHEMA.mutation_type, "Upload")


def _groups(root: graphql.GraphQLObjectType, names: Sequence[str]) -> dict[str, list[str]]:
    """One fuzz target per root field that takes arguments; the argument-less ones share one.

    Per field, because hypothesis stops generating soon after its first failure: fuzzing the
    whole root at once, a bug in `analytics` would hide one in `search` until it is fixed. The
    argument-less fields are pooled since alone their few selections could run out before the
    example budget does, which would look like a silently empty strategy."""
    groups: dict[str, list[str]] = {name: [name] for name in names if root.fields[name].args}
    argless = [name for name in names if not root.fields[name].args]
    if argless:
        groups["no-arguments"] = argless
    return groups


QUERY_GROUPS = _groups(SCHEMA.query_type, list(SCHEMA.query_type.fields))
MUTATION_GROUPS = _groups(SCHEMA.mutation_type, MUTATION_FIELDS)
# hypothesis-graphql generates for the Query and Mutation roots only; a schema whose query root is
# our Subscription type lets it generate subscription selections too.
SUBSCRIPTION_SCHEMA = graphql.GraphQLSchema(query=SCHEMA.subscription_type)


# --- custom scalar strategies --------------------------------------------------------------------

# Realistic strings reach past the first validation far more often than random text: a known
# genre, a metadata key, a limit's edge, NUL. Random text stays in the mix.
FILTER_KEYS = ["genre", "tags", "rating", "year", "source", "custom"]
INTERESTING_STRINGS = [
    "",
    " ",
    "time travel",
    "heist crew steals",
    "Primer",
    "Drama",
    "Science Fiction",
    "metadata.genre",
    "%",
    "_",
    "\\",
    "' OR 1=1 --",
    "<mark>x</mark>",
    "\x00",
    "a\x00b",
    "😀",
    "a" * 1001,
    "x" * 20_001,
]
TEXT = st.text(alphabet=st.characters(codec="utf-8"))
STRINGS = st.one_of(TEXT, st.sampled_from(INTERESTING_STRINGS), st.sampled_from(FILTER_KEYS))
# Past int32, int64 and float64 precision: where a JSON number meets a typed SQL parameter.
EDGE_INTS = [2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 10**30]
JSON_KEYS = st.sampled_from([*FILTER_KEYS, "title", "externalId"]) | st.from_regex(
    r"[_A-Za-z][_0-9A-Za-z]{0,15}", fullmatch=True
)


def _object(entries: dict[str, graphql.ValueNode]) -> graphql.ObjectValueNode:
    return nodes.Object([graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in entries.items()])


def _json_values() -> st.SearchStrategy[graphql.ValueNode]:
    leaves: st.SearchStrategy[graphql.ValueNode] = st.one_of(
        st.just(nodes.Null),
        st.booleans().map(nodes.Boolean),
        # Unbounded, with the type boundaries called out: a JSON year of 10**30 is the client's mistake.
        (st.integers() | st.sampled_from(EDGE_INTS)).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        STRINGS.map(nodes.String),
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4).map(nodes.List)
            | st.dictionaries(JSON_KEYS, children, max_size=4).map(_object)
        ),
        max_leaves=12,
    )


_TIMEZONES: st.SearchStrategy[tzinfo | None] = (
    st.none() | st.just(UTC) | st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
)


def _zoned(naive: st.SearchStrategy[datetime]) -> st.SearchStrategy[datetime]:
    return st.builds(lambda d, tz: d.replace(tzinfo=tz), naive, _TIMEZONES)


# The whole datetime range (year 1 to 9999) plus a band around today, naive and aware, and the
# extremes themselves, where date arithmetic overflows.
_EDGE_DATETIMES = [datetime.min, datetime.max, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]
DATETIMES = st.one_of(
    st.sampled_from(_EDGE_DATETIMES),
    _zoned(st.datetimes()),
    _zoned(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1))),
).map(lambda d: nodes.String(d.isoformat()))


def _ids(real: Sequence[str]) -> st.SearchStrategy[graphql.ValueNode]:
    """Half ids that exist (so the resolver gets past the lookup), half well-formed ids that do
    not and malformed ones."""
    forged = st.builds(to_global_id, st.sampled_from(["Document", "Feedback", "Chunk", "Answer", "Nope"]), st.uuids())
    garbled = st.builds(
        lambda kind, rest: base64.urlsafe_b64encode(f"{kind}:{rest}".encode()).decode(),
        st.sampled_from(["Document", "Feedback", ""]),
        st.text(max_size=40),
    )
    wrong = st.one_of(forged, garbled, st.uuids().map(str), STRINGS).map(nodes.String) | st.integers().map(nodes.Int)
    return st.sampled_from(list(real)).map(nodes.String) | wrong if real else wrong


# Mostly the built-in filter keys, with dotted and unknown names and random text.
FILTER_FIELDS = st.one_of(
    st.sampled_from(FILTER_KEYS), st.sampled_from(["metadata.genre", "tags.0", "Genre"]), STRINGS
).map(nodes.String)
_FILTER_SCALARS: st.SearchStrategy[graphql.ValueNode] = st.one_of(
    st.sampled_from(EDGE_INTS).map(nodes.Int),
    st.integers(-10, 3000).map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.sampled_from(["Drama", "Comedy", "2001", "x", ""]).map(nodes.String),
    st.booleans().map(nodes.Boolean),
)
# Scalars, lists of them (IN), and any JSON at all.
FILTER_VALUES = st.one_of(_FILTER_SCALARS, st.lists(_FILTER_SCALARS, max_size=4).map(nodes.List), _json_values())


# Every argument is drawn independently and the first one out of range ends the request, so
# uniform int32 values (`first: 1634421`) would stop nearly every example at FIRST_OUT_OF_RANGE.
# Mostly small, in-range values then, and the full range too.
INTS = st.one_of(st.integers(1, 10), st.integers(-1, 120), st.integers(-(2**31), 2**31 - 1)).map(nodes.Int)


def _scalars(real_ids: Sequence[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    # Built-in scalars can be overridden too: hypothesis-graphql checks custom_scalars first.
    return {
        "FilterKey": FILTER_FIELDS,
        "FilterValue": FILTER_VALUES,
        "JSON": _json_values(),
        "DateTime": DATETIMES,
        "String": STRINGS.map(nodes.String),
        "ID": _ids(real_ids),
        "Int": INTS,
    }


# What an Upload looks like when a client puts it in the query text instead of a multipart part.
INLINE_UPLOADS = st.one_of(
    STRINGS.map(nodes.String), st.integers(0, 10).map(nodes.Int), st.just(_object({"filename": nodes.String("a.txt")}))
)


# --- invalid operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request: the operation text, which app receives it, and whether it must be rejected."""

    query: str
    target: Target
    must_error: bool = False


def _fields(selection_set: graphql.SelectionSetNode) -> Iterator[graphql.FieldNode]:
    for selection in selection_set.selections:
        if isinstance(selection, graphql.FieldNode):
            yield selection
            if selection.selection_set:
                yield from _fields(selection.selection_set)
        elif isinstance(selection, graphql.InlineFragmentNode):
            yield from _fields(selection.selection_set)


def _input_slots(value: graphql.ValueNode) -> Iterator[graphql.ObjectFieldNode]:
    if isinstance(value, graphql.ObjectValueNode):
        for field in value.fields:
            yield field
            yield from _input_slots(field.value)
    elif isinstance(value, graphql.ListValueNode):
        for item in value.values:
            yield from _input_slots(item)


WRONG_VALUES: st.SearchStrategy[graphql.ValueNode] = st.sampled_from(
    [
        nodes.String("wrong"),
        nodes.Int(7),
        nodes.Int(2**40),
        nodes.Float(0.5),
        nodes.Boolean(True),
        nodes.Null,
        nodes.Enum("NOT_A_VALUE"),
        nodes.List([nodes.Int(1), nodes.String("x")]),
        _object({"notAField": nodes.Int(1)}),
        graphql.VariableNode(name=graphql.NameNode(value="undefined")),
    ]
)
BOGUS_NAMES = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,12}", fullmatch=True).map(lambda s: f"zz{s}")


def _swap(document: graphql.DocumentNode, target: graphql.Node, replacement: graphql.Node) -> graphql.DocumentNode:
    """The document with one node replaced (AST nodes are frozen; `visit` rebuilds the ancestors)."""

    class Swap(graphql.Visitor):
        def enter(self, node: graphql.Node, *_args: object) -> graphql.Node | None:
            return replacement if node is target else None

    return cast(graphql.DocumentNode, graphql.visit(document, Swap()))


@st.composite
def _corrupted(draw: st.DrawFn, valid: st.SearchStrategy[str], target: Target) -> Case:
    """A valid operation damaged at the AST level, so the result still parses."""
    document = graphql.parse(draw(valid), no_location=True)
    operation = cast(graphql.OperationDefinitionNode, document.definitions[0])
    fields = list(_fields(operation.selection_set))
    how = draw(st.sampled_from(["wrong_value", "bogus_field", "bogus_argument", "operation_type"]))
    slots: list[graphql.ArgumentNode | graphql.ObjectFieldNode] = [a for f in fields for a in f.arguments or ()]
    slots += [s for a in list(slots) for s in _input_slots(a.value)]
    if how == "wrong_value" and slots:
        slot = draw(st.sampled_from(slots))
        damaged = _swap(document, slot, replace(slot, value=draw(WRONG_VALUES)))
        # Some replacements stay valid (anything is JSON; null fits a nullable input).
        return Case(graphql.print_ast(damaged), target)
    original: graphql.Node
    if how == "bogus_field":
        holders: list[graphql.OperationDefinitionNode | graphql.FieldNode] = [operation]
        holder = draw(st.sampled_from(holders + [f for f in fields if f.selection_set]))
        assert holder.selection_set is not None
        bogus = graphql.FieldNode(name=graphql.NameNode(value=draw(BOGUS_NAMES)), arguments=(), directives=())
        selections = (*holder.selection_set.selections, bogus)
        original, changed = holder, replace(holder, selection_set=replace(holder.selection_set, selections=selections))
    elif how == "operation_type":
        # Root field names are disjoint across Query, Mutation and Subscription.
        others = [t for t in graphql.OperationType if t != operation.operation]
        original, changed = operation, replace(operation, operation=draw(st.sampled_from(others)))
    else:
        field = draw(st.sampled_from(fields))
        argument = graphql.ArgumentNode(name=graphql.NameNode(value=draw(BOGUS_NAMES)), value=nodes.Int(1))
        original, changed = field, replace(field, arguments=(*(field.arguments or ()), argument))
    return Case(graphql.print_ast(_swap(document, original, changed)), target, must_error=True)


JUNK = st.sampled_from(
    ["{", "}", "(", ")", "[", "]", ":", '"', '"""', "$", "$x", "...", "@skip", "\\u", "#", "\x00", ","]
)


@st.composite
def _damaged(draw: st.DrawFn, valid: st.SearchStrategy[str], target: Target) -> Case:
    """A valid operation with its text damaged; it usually no longer parses."""
    text = draw(valid)
    how = draw(st.sampled_from(["drop", "insert", "truncate"]))
    if how == "drop":
        # Prefer the structural characters: a dropped brace or quote is the classic client bug.
        structural = [i for i, c in enumerate(text) if c in '{}()[]:"$'] or list(range(len(text)))
        i = draw(st.sampled_from(structural))
        text = text[:i] + text[i + 1 :]
    elif how == "insert":
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(JUNK | st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8)) + text[i:]
    else:
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    # Damage inside a string literal can leave a valid operation: no error is required.
    return Case(text, target)


def _as_subscription(document: graphql.DocumentNode) -> str:
    operation = cast(graphql.OperationDefinitionNode, document.definitions[0])
    subscription = replace(operation, operation=graphql.OperationType.SUBSCRIPTION)
    return graphql.print_ast(_swap(document, operation, subscription))


def _invalid_families(real_ids: Sequence[str]) -> dict[str, st.SearchStrategy[Case]]:
    """Each family is fuzzed as a test of its own: once hypothesis finds a bug it soon stops
    generating, so a trivial failure in one family (the empty query) would starve the others."""
    scalars = _scalars(real_ids)
    valid_queries = queries(SCHEMA, custom_scalars=scalars)
    # Anything derived from a mutation goes to the scratch tenant: damage can leave it valid.
    valid_mutations = mutations(SCHEMA, fields=MUTATION_FIELDS, custom_scalars=scalars)
    inline_uploads = {**scalars, "Upload": INLINE_UPLOADS}
    return {
        "raw_text": TEXT.map(lambda q: Case(q, "demo")),
        "damaged_text": _damaged(valid_queries, "demo") | _damaged(valid_mutations, "scratch"),
        "ast_corruption": _corrupted(valid_queries, "demo") | _corrupted(valid_mutations, "scratch"),
        "negative_mode": st.one_of(
            queries(SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE).map(lambda q: Case(q, "demo", must_error=True)),
            mutations(SCHEMA, custom_scalars=inline_uploads, mode=Mode.NEGATIVE).map(
                lambda q: Case(q, "scratch", must_error=True)
            ),
        ),
        # A subscription needs websockets or a multipart response; a JSON POST cannot carry one.
        "subscription_over_post": queries(SUBSCRIPTION_SCHEMA, custom_scalars=scalars, print_ast=_as_subscription).map(
            lambda q: Case(q, "demo", must_error=True)
        ),
        # No error is required: `files: []` is a valid (empty) list of uploads.
        "inline_upload": mutations(SCHEMA, fields=["uploadDocuments"], custom_scalars=inline_uploads).map(
            lambda q: Case(q, "scratch")
        ),
    }


INVALID_FAMILIES = list(_invalid_families([]))


# Operations the fuzz found, or that were found by hand next to what it found, run as explicit
# examples before anything is generated. With a fixed seed, a schema change that reshuffles generation could
# otherwise walk past a bug it once found (or its return after a fix). Keyed by fuzz target.
PINNED: dict[str, list[str]] = {
    "analytics": [
        # The default window start, `to` minus 30 days, lies before year 1.
        '{ analytics(to: "0001-01-01T00:00:00") { searchCount } }',
        # Converted to UTC, the window starts before year 1.
        '{ analytics(from: "0001-01-01T00:00:00+14:00", to: "0001-01-02T00:00:00+14:00") { searchCount } }',
    ],
    # A year past the int32 column (any value over 2**31 - 1 will do).
    "documents": [
        '{ documents(filter: {all: [{field: "year", op: IN, value: [9223372036854775808]}]}) { totalCount } }'
    ],
    "search": [
        '{ search(query: "a", options: {filter: {all: [{field: "year", op: GT, value: 9223372036854775808}]}}) '
        "{ queryId } }"
    ],
    # A spread of an undefined fragment.
    "damaged_text": ["{ serverInfo { ...rerankers } }"],
}


# --- the properties ------------------------------------------------------------------------------


class ServerBug(AssertionError):
    """A response that breaks the contract. Each crash site gets its own subclass (below) because
    hypothesis tells bugs apart by exception type and line: with one class, the first crash found
    would hide every other one behind the same `raise`."""


_BUG_CLASSES: dict[str, type[ServerBug]] = {}


def _bug(site: str, message: str) -> ServerBug:
    name = "ServerBug_" + re.sub(r"\W+", "_", site)
    if name not in _BUG_CLASSES:
        _BUG_CLASSES[name] = cast(type[ServerBug], type(name, (ServerBug,), {}))
    return _BUG_CLASSES[name](message)


def _server_traceback(caplog: pytest.LogCaptureFixture, request_id: str | None) -> tuple[str, str]:
    """The traceback `ragql.errors` logged for this request id, and the exception's type name."""
    for record in caplog.records:
        if record.name == "ragql.errors" and f"request_id={request_id}" in record.getMessage() and record.exc_info:
            exc_type = record.exc_info[0]
            return logging.Formatter().formatException(record.exc_info), exc_type.__name__ if exc_type else "?"
    return "(no traceback logged for this request id)", "unlogged"


def check(case: Case, response: httpx.Response, caplog: pytest.LogCaptureFixture) -> None:
    status = response.status_code
    where = f"\noperation: {case.query!r}\nHTTP {status}: {response.text[:3000]}"
    if status >= 500:
        raise _bug(f"http_{status}", "server error" + where)
    if "Traceback" in response.text:
        raise _bug("traceback_in_body", "a traceback leaked into the response" + where)
    try:
        body: Any = response.json()
    except ValueError:
        raise _bug(f"not_json_{status}", "the response body is not JSON" + where) from None
    if not isinstance(body, dict) or not ("data" in body or "errors" in body):
        raise _bug("not_graphql", "the response has neither `data` nor `errors`" + where)
    errors = body.get("errors") or []
    if case.must_error and not errors:
        raise _bug("invalid_accepted", "an invalid operation was accepted" + where)
    for error in errors:
        extensions = error.get("extensions") or {}
        code = extensions.get("code")
        if code is None:
            raise _bug("no_code", "an error without extensions.code" + where)
        if code == "INTERNAL_SERVER_ERROR":
            log, exc_name = _server_traceback(caplog, extensions.get("requestId"))
            path = error.get("path") or ["(no path)"]
            raise _bug(f"internal_{path[0]}_{exc_name}", "unexpected server error" + where + "\nserver log:\n" + log)


# Requests sent per category, printed when the module finishes (visible with -s).
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_totals() -> Iterator[None]:
    yield
    print(f"\n[fuzz] examples sent per category: {dict(SENT)}")


async def _fuzz(
    category: str,
    name: str,
    cases: st.SearchStrategy[Case],
    clients: dict[Target, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
    max_examples: int,
    pinned: Sequence[Case] = (),
) -> int:
    """Run the property over the `pinned` cases, then `max_examples` generated ones; return how
    many requests were sent."""
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.ERROR, logger="ragql.errors")
    sent = 0

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=REQUEST_TIMEOUT_S)

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        # Requests are slow next to hypothesis' expectations and some operations are large by design.
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def prop(case: Case) -> None:
        nonlocal sent
        sent += 1
        caplog.clear()
        # An exception escaping the app is raised here by httpx's ASGI transport rather than
        # answered with a 500; hypothesis counts and shrinks it like any other failure.
        response = on_loop(clients[case.target].post("/graphql", json={"query": case.query}))
        check(case, response, caplog)

    for case in pinned:
        prop = example(case=case)(prop)
    try:
        await asyncio.to_thread(prop)
    finally:
        # Counted on failure too: hypothesis stops generating soon after a bug, so a failing
        # target sends fewer than its budget (plus the shrinking attempts).
        SENT[category] += sent
        print(f"\n[fuzz] {category}/{name}: {sent} examples sent (max_examples={max_examples})")
    return sent


@pytest.fixture(scope="module")
async def scratch(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """A fresh, empty tenant that mutations may change at will, seeded with a few documents, a
    search, a feedback event and an answer so generated ids can hit real rows."""
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (client, _tenant):
        yield client, await _seed(client)


@pytest.fixture(scope="module")
async def demo_ids(app_client: httpx.AsyncClient) -> list[str]:
    """Real ids of the shared demo tenant. Nothing but queries reach that tenant, so it only
    gains what every search, recommendation and answer records (query log, stored answers)."""
    data = await graphql_ok(
        app_client,
        '{ documents(first: 5) { edges { node { id } } } search(query: "time travel", first: 3) '
        '{ queryId hits { chunk { id } } } answer(question: "What is Primer about?") { id sessionId } }',
    )
    ids = [e["node"]["id"] for e in data["documents"]["edges"]]
    ids += [data["search"]["queryId"], *(h["chunk"]["id"] for h in data["search"]["hits"])]
    return [*ids, data["answer"]["id"], data["answer"]["sessionId"]]


async def _seed(client: httpx.AsyncClient) -> list[str]:
    docs = [
        {"title": f"Seed {i}", "text": text, "externalId": f"seed-{i}", "metadata": meta}
        for i, (text, meta) in enumerate(
            [
                ("A heist crew plans one last job in Lisbon.", {"genre": "Thriller", "year": 2001, "rating": 3.5}),
                ("Two engineers build a time machine in a garage.", {"genre": "Science Fiction", "tags": ["time"]}),
                ("A lighthouse keeper befriends a stranded whale.", {"genre": "Drama", "source": "seed"}),
            ]
        )
    ]
    ingested = await graphql_ok(
        client,
        "mutation($i: IngestDocumentsInput!) { ingestDocuments(input: $i) { documents { id } } }",
        {"i": {"documents": docs}},
    )
    doc_ids = [d["id"] for d in ingested["ingestDocuments"]["documents"]]
    data = await graphql_ok(
        client,
        '{ search(query: "time machine heist", first: 3) { queryId hits { chunk { id } } } '
        'answer(question: "Who builds a time machine?") { id sessionId } }',
    )
    ids = [*doc_ids, data["search"]["queryId"], data["answer"]["id"], data["answer"]["sessionId"]]
    ids += [hit["chunk"]["id"] for hit in data["search"]["hits"]]
    feedback = await graphql_ok(
        client,
        "mutation($d: ID!, $q: ID) { submitFeedback(input: {kind: LIKE, documentId: $d, queryId: $q}) "
        "{ feedback { id } } }",
        {"d": doc_ids[0], "q": data["search"]["queryId"]},
    )
    if feedback["submitFeedback"]["feedback"]:
        ids.append(feedback["submitFeedback"]["feedback"]["id"])
    return ids


@pytest.mark.parametrize("group", list(QUERY_GROUPS))
async def test_fuzz_queries(
    group: str, app_client: httpx.AsyncClient, demo_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    budget = _share(QUERY_EXAMPLES, len(QUERY_GROUPS))
    strategy = queries(SCHEMA, fields=QUERY_GROUPS[group], custom_scalars=_scalars(demo_ids))
    cases = strategy.map(lambda q: Case(q, "demo"))
    pinned = [Case(q, "demo") for q in PINNED.get(group, [])]
    sent = await _fuzz("queries", group, cases, {"demo": app_client}, caplog, budget, pinned)
    assert sent >= budget


@pytest.mark.parametrize("group", list(MUTATION_GROUPS))
async def test_fuzz_mutations(
    group: str, scratch: tuple[httpx.AsyncClient, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, ids = scratch
    budget = _share(MUTATION_EXAMPLES, len(MUTATION_GROUPS))
    strategy = mutations(SCHEMA, fields=MUTATION_GROUPS[group], custom_scalars=_scalars(ids))
    sent = await _fuzz(
        "mutations", group, strategy.map(lambda q: Case(q, "scratch")), {"scratch": client}, caplog, budget
    )
    assert sent >= budget


@pytest.mark.parametrize("family", INVALID_FAMILIES)
async def test_fuzz_invalid_operations(
    family: str,
    app_client: httpx.AsyncClient,
    demo_ids: list[str],
    scratch: tuple[httpx.AsyncClient, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, scratch_ids = scratch
    budget = _share(INVALID_EXAMPLES, len(INVALID_FAMILIES))
    cases = _invalid_families(demo_ids + scratch_ids)[family]
    clients: dict[Target, httpx.AsyncClient] = {"demo": app_client, "scratch": client}
    pinned = [Case(q, "demo") for q in PINNED.get(family, [])]
    sent = await _fuzz("invalid", family, cases, clients, caplog, budget, pinned)
    assert sent >= budget


def test_generators_cover_the_schema() -> None:
    """Guards against a silently narrowed fuzz: every query field is a target, only the
    Upload-taking mutation is left out of the valid mutations, and subscriptions are generated."""
    assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
    assert sorted(f for group in QUERY_GROUPS.values() for f in group) == sorted(SCHEMA.query_type.fields)
    assert set(MUTATION_FIELDS) == set(SCHEMA.mutation_type.fields) - {"uploadDocuments"}, MUTATION_FIELDS
    assert set(SUBSCRIPTION_SCHEMA.type_map) >= {"Subscription", "AnswerEvent"}
    assert NARROWED, "Condition.field/value moved: update _narrow's targets"
    assert set(PINNED) <= set(QUERY_GROUPS) | set(INVALID_FAMILIES), "a pinned target was renamed"


# --- the same fuzz against a production app, with a real admin token ----------------------------

PRODUCTION_EXAMPLES = _scaled(40)
PRODUCTION_INVALID_FAMILIES = ["negative_mode", "ast_corruption", "damaged_text"]


@pytest.fixture(scope="module")
async def production(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """Production mode (introspection and suggestions off, credentials required), every request
    with an admin token of a fresh tenant; rate limits raised so the fuzz reaches the resolvers."""
    import uuid

    from tests.security_harness import Signer, production_client

    signer = Signer(tmp_root)
    unlimited = {"rate_per_user": 10**9, "rate_per_ip": 10**9, "tenant_quota": 10**9, "rate_per_api_key": 10**9}
    async with production_client(pg_url, tmp_root, embedder, signer, **unlimited) as client:
        token = signer.hs256(f"fuzz-prod-{uuid.uuid4().hex[:8]}", ["admin"])
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, await _seed(client)


async def test_fuzz_production_queries(
    production: tuple[httpx.AsyncClient, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, ids = production
    cases = queries(SCHEMA, custom_scalars=_scalars(ids)).map(lambda q: Case(q, "demo"))
    sent = await _fuzz("production", "queries", cases, {"demo": client}, caplog, PRODUCTION_EXAMPLES)
    assert sent >= PRODUCTION_EXAMPLES


@pytest.mark.parametrize("family", PRODUCTION_INVALID_FAMILIES)
async def test_fuzz_production_invalid_operations(
    family: str, production: tuple[httpx.AsyncClient, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, ids = production
    budget = _share(PRODUCTION_EXAMPLES, len(PRODUCTION_INVALID_FAMILIES))
    cases = _invalid_families(ids)[family]
    sent = await _fuzz("production", family, cases, {"demo": client, "scratch": client}, caplog, budget)
    assert sent >= budget
