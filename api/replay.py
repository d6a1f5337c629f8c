"""Whole responses replayed for repeated searches that this process answers from memory (issue 18).

A search whose fused list and documents this process holds (`Resident`, domain/retrieval/cache.py)
needs no database. What it still cost was GraphQL: FastAPI's routing and dependencies, Strawberry's
extensions, graphql-core resolving every field of every hit, and encoding the result, about three
quarters of a cached hit's CPU. For the same request again all of that computes the same bytes but
for two values, so the first response that one resident entry answered is kept as a template, and
the next identical request is answered from it after doing everything that must happen per request:

- Who: the guard authenticated the caller as for any request. Templates are keyed by tenant and
  roles (all of the principal that a search's response or its permission check reads) and by the
  exact request (path, content type, accept, body bytes: the same document, variables and operation
  name, so the parse, validation, depth, alias, token, character and cost checks, functions of
  those alone, passed again).
- Cost and rate limits: the recorded cost is charged to this caller's buckets. Over the limit, or
  if the limiter fails, the request takes the normal path, which refuses it as it always has.
- The search: the domain call is made again with the recorded arguments, so the request gets its
  own queryId, tookMs, query-log row and cache metrics. Its values are spliced into the template
  only if the entry that answered it is the template's own (same key, so same index version; the
  same object). If another answered (a write or an expiry in between), the normal path renders
  the result already computed, with the charge already made.
- Operation metrics and the request log line, as OperationObserver writes them.

A template is only made from: a POST of JSON to /graphql; one query operation whose only root field
is `search`, with every field below it a plain attribute (no resolver, permission or extension; no
directive, fragment or abstract type); one search call with rerank NONE and no personalisation,
whose only cache lookup was a resident hit; a 200 with no errors and only `extensions.cost`. The
per-request values are SearchResult's `queryId` and `tookMs`, and `extensions.cost.throttleStatus`.
"""

from __future__ import annotations

import json
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)
from starlette.types import Send

from api.observability import operation_done, operation_label, tracer
from domain.auth.principal import Principal
from domain.errors import RateLimited
from domain.retrieval.cache import Resident, observing
from domain.retrieval.search import SearchOptions, SearchResult
from domain.retrieval.searching import Searching
from schema.context import ThrottleStatus
from schema.cost.extension import _throttle_report

if TYPE_CHECKING:
    from domain.runtime import Services

MAX_BODY_BYTES = 16 * 1024  # larger requests are not searches worth keeping
TEMPLATES = 1024
TEMPLATE_BYTES = 16 * 1024 * 1024
PER_REQUEST = {"queryId": "query_id", "tookMs": "took_ms"}  # SearchResult fields set per call
ROOT_FIELD = "search"


@dataclass(frozen=True)
class SearchCall:
    tenant_id: str
    query: str
    first: int
    options: SearchOptions


@dataclass
class Recording:
    """What one request's normal execution did, as far as a template needs to know."""

    calls: list[SearchCall] = field(default_factory=list)
    lookups: list[tuple[str, Resident | None]] = field(default_factory=list)
    response: dict[str, Any] | None = None
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    sent: bytes = b""


@dataclass
class Precomputed:
    """A search the fast path ran but could not splice: the normal path renders it, once."""

    call: SearchCall
    result: SearchResult
    cost: int
    status: ThrottleStatus
    used: bool = False
    charged: bool = False


_recording: ContextVar[Recording | None] = ContextVar("replay_recording", default=None)
_precomputed: ContextVar[Precomputed | None] = ContextVar("replay_precomputed", default=None)


class RecordedSearching(Searching):
    """Searching, telling a recording request which searches it made, and handing a precomputed
    result to the normal path that renders it."""

    async def search(self, tenant_id: str, query: str, first: int, options: SearchOptions) -> SearchResult:
        call = SearchCall(tenant_id, query, first, options)
        pre = _precomputed.get()
        if pre is not None and not pre.used and pre.call == call:
            pre.used = True
            return pre.result
        recording = _recording.get()
        if recording is not None:
            recording.calls.append(call)
        return await super().search(tenant_id, query, first, options)


def precharged(cost: int) -> ThrottleStatus | None:
    """The throttle status of a charge the fast path made for this request, once (api/graphql_router)."""
    pre = _precomputed.get()
    if pre is None or pre.charged or pre.cost != cost:
        return None
    pre.charged = True
    return pre.status


def note_response(response_data: object, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """What the router answered, when the request is being recorded (RagqlRouter.create_response)."""
    recording = _recording.get()
    if recording is not None and isinstance(response_data, dict):
        recording.response, recording.status = response_data, status
        recording.headers, recording.sent = headers, body


@dataclass(frozen=True)
class Template:
    call: SearchCall
    cache_key: str
    entry: weakref.ref[Resident]
    cost: int
    parts: tuple[bytes, ...]  # the response around its holes
    holes: tuple[str, ...]  # per hole: "query_id", "took_ms" or "throttle"
    headers: tuple[tuple[bytes, bytes], ...]  # the response's own, but content-length
    operation: str  # the metrics label
    size: int


Key = tuple[str, tuple[str, ...], bytes, bytes, bytes]

SERVED = "served"


class ResponseReplay:
    def __init__(
        self,
        schema: GraphQLSchema,
        encode: Callable[[object], str | bytes],
        *,
        path: str = "/graphql",
        max_templates: int = TEMPLATES,
        max_bytes: int = TEMPLATE_BYTES,
    ) -> None:
        self.schema = schema
        self.encode = encode
        self.path = path
        self.max_templates = max_templates
        self.max_bytes = max_bytes
        self._templates: OrderedDict[Key, Template] = OrderedDict()
        self._bytes = 0
        # Requests that answered from one resident entry but cannot be templates (their document).
        self._refused: OrderedDict[Key, None] = OrderedDict()
        self.served = 0

    # --- which requests ------------------------------------------------------------------
    def key(self, scope: dict[str, Any], headers: dict[str, str], principal: Principal, body: bytes) -> Key | None:
        """The template key of this request, or None if it could never have one."""
        if scope.get("method") != "POST" or scope.get("path") != self.path or scope.get("query_string"):
            return None
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/json") or not body or len(body) > MAX_BODY_BYTES:
            return None
        accept = headers.get("accept", "")
        roles = tuple(sorted(principal.roles))
        return (principal.tenant_id, roles, content_type.encode(), accept.encode(), body)

    # --- answering -----------------------------------------------------------------------
    async def serve(
        self,
        key: Key,
        *,
        principal: Principal,
        ip: str,
        charge: Callable[[Principal, str, int], Any],
        services: Services,
        request_id: str,
        send: Send,
    ) -> str | Precomputed | None:
        """SERVED when this answered the request; a Precomputed result for the normal path to
        render; None when the normal path should do all of it."""
        template = self._templates.get(key)
        if template is None:
            return None
        started = time.perf_counter()
        entry = template.entry()
        cache = services.search_cache
        if entry is None or not await cache.serves(template.call.tenant_id, template.cache_key, entry):
            self._forget(key)
            return None
        self._templates.move_to_end(key)
        try:
            status: ThrottleStatus = await charge(principal, ip, template.cost)
        except RateLimited:
            return None  # the normal path charges again, is refused again, and says so
        except Exception:
            return None  # and there, a limiter failure becomes its usual coded error
        call = template.call
        with tracer.start_as_current_span("graphql.operation") as span, observing() as lookups:
            try:
                result = await services.searching.search(call.tenant_id, call.query, call.first, call.options)
            except Exception:
                # Not expected of a resident hit; the normal path searches again and reports it.
                return Precomputed(call, _FAILED, template.cost, status, used=True)
            if len(lookups) != 1 or lookups[0][0] != template.cache_key or lookups[0][1] is not entry:
                return Precomputed(call, result, template.cost, status)
            body = _splice(template, result, status, self.encode)
            await send({"type": "http.response.start", "status": 200, "headers": _headers(template, body)})
            await send({"type": "http.response.body", "body": body})
            self.served += 1
            operation_done(
                span,
                request_id=request_id,
                tenant=principal.tenant_id,
                name=template.operation,
                kind="query",
                seconds=time.perf_counter() - started,
                errors=[],
            )
        return SERVED

    @contextmanager
    def normal_path(self, key: Key | None, fallback: Precomputed | None) -> Iterator[None]:
        """Around the normal execution: records it (a key) and hands it a precomputed search."""
        recording = Recording() if key is not None and fallback is None else None
        tokens = (_recording.set(recording), _precomputed.set(fallback))
        try:
            with observing() as lookups:
                yield
        finally:
            _recording.reset(tokens[0])
            _precomputed.reset(tokens[1])
        if recording is not None and key is not None:
            recording.lookups = list(lookups)
            self._learn(key, recording)

    # --- learning ------------------------------------------------------------------------
    def _learn(self, key: Key, rec: Recording) -> None:
        if key in self._templates or key in self._refused:
            return
        # Cheap checks first: most requests are not one resident-hit search.
        if len(rec.calls) != 1 or len(rec.lookups) != 1 or rec.lookups[0][1] is None:
            return
        if rec.status != 200 or rec.response is None or "errors" in rec.response:
            return
        call = rec.calls[0]
        if call.options.rerank != "NONE" or call.options.personalize is not None:
            return
        template = self._template(key, call, rec)
        if template is None:
            self._refused[key] = None
            while len(self._refused) > self.max_templates:
                self._refused.popitem(last=False)
            return
        self._templates[key] = template
        self._bytes += template.size
        while len(self._templates) > self.max_templates or self._bytes > self.max_bytes:
            self._forget(next(iter(self._templates)))

    def _template(self, key: Key, call: SearchCall, rec: Recording) -> Template | None:
        assert rec.response is not None
        shape = _shape(self.schema, key[4])
        if shape is None:
            return None
        root_key, holes, operation_name = shape
        response = rec.response
        if set(response) != {"data", "extensions"} or set(response["extensions"]) != {"cost"}:
            return None
        cost = response["extensions"]["cost"]
        if set(cost) != {"requestedQueryCost", "maximumQueryCost", "throttleStatus"}:
            return None
        # The normal path's own bytes, from the same encoder: what the template is cut from.
        if _as_bytes(self.encode(response)) != rec.sent:
            return None
        data = response["data"]
        result = data.get(root_key) if isinstance(data, dict) else None
        if set(data) != {root_key} or not isinstance(result, dict):
            return None
        marker = f"ragql-hole-{uuid.uuid4().hex}"
        kinds: dict[str, str] = {}
        filled = dict(result)
        for i, (response_key, kind) in enumerate(holes):
            filled[response_key] = f"{marker}-{i}"
            kinds[f"{marker}-{i}"] = kind
        kinds[f"{marker}-t"] = "throttle"
        marked = {"data": {root_key: filled}, "extensions": {"cost": {**cost, "throttleStatus": f"{marker}-t"}}}
        encoded = _as_bytes(self.encode(marked))
        parts, order = _cut(encoded, marker, kinds)
        if parts is None:
            return None
        lookup_key, entry = rec.lookups[0]
        assert entry is not None
        headers = tuple((k, v) for k, v in rec.headers if k.lower() != b"content-length")
        return Template(
            call=call,
            cache_key=lookup_key,
            entry=weakref.ref(entry),
            cost=int(cost["requestedQueryCost"]),
            parts=parts,
            holes=order,
            headers=headers,
            operation=operation_label(operation_name),
            size=len(encoded) + len(key[4]) + 512,
        )

    def _forget(self, key: Key) -> None:
        template = self._templates.pop(key, None)
        if template is not None:
            self._bytes -= template.size


_FAILED: Any = None  # a Precomputed marked used: the normal path never takes its result


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _cut(encoded: bytes, marker: str, kinds: dict[str, str]) -> tuple[tuple[bytes, ...] | None, tuple[str, ...]]:
    """The encoded response split at its holes (each a quoted marker, found exactly once)."""
    parts: list[bytes] = []
    order: list[str] = []
    rest = encoded
    needle = f'"{marker}-'.encode()
    while (at := rest.find(needle)) >= 0:
        end = rest.find(b'"', at + 1)
        name = rest[at + 1 : end].decode()
        if name not in kinds:
            return None, ()
        parts.append(rest[:at])
        order.append(kinds.pop(name))
        rest = rest[end + 1 :]
    parts.append(rest)
    if kinds:  # a hole that did not appear
        return None, ()
    return tuple(parts), tuple(order)


def _splice(template: Template, result: SearchResult, status: ThrottleStatus, encode: Callable[[object], Any]) -> bytes:
    values = {
        "query_id": json.dumps(str(result.query_id)).encode(),
        "took_ms": json.dumps(float(result.took_ms)).encode(),
        "throttle": _as_bytes(encode(_throttle_report(status))),
    }
    out = [template.parts[0]]
    for kind, part in zip(template.holes, template.parts[1:], strict=True):
        out.append(values[kind])
        out.append(part)
    return b"".join(out)


def _headers(template: Template, body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode()), *template.headers]


def _shape(schema: GraphQLSchema, body: bytes) -> tuple[str, list[tuple[str, str]], str | None] | None:
    """(response key of `search`, [(response key, per-request value)], operation name) when the
    request is one query of `search` over plain fields only; else None."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict) or not set(request) <= {"query", "variables", "operationName"}:
        return None
    query = request.get("query")
    if not isinstance(query, str):
        return None
    try:
        document = parse(query)
    except GraphQLError:
        return None
    if len(document.definitions) != 1 or not isinstance(document.definitions[0], OperationDefinitionNode):
        return None
    operation = document.definitions[0]
    if operation.operation != OperationType.QUERY or operation.directives:
        return None
    roots = operation.selection_set.selections
    if len(roots) != 1 or not isinstance(roots[0], FieldNode) or roots[0].directives:
        return None
    root = roots[0]
    if root.name.value != ROOT_FIELD or root.selection_set is None or schema.query_type is None:
        return None
    result_type = _object_type(schema.query_type.fields[ROOT_FIELD].type)
    holes: list[tuple[str, str]] = []
    if result_type is None or not _plain(result_type, root.selection_set, holes, top=True):
        return None
    name = operation.name.value if operation.name else None
    if request.get("operationName") not in (None, name):
        return None
    return root.alias.value if root.alias else root.name.value, holes, name


def _object_type(graphql_type: Any) -> GraphQLObjectType | None:
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return graphql_type if isinstance(graphql_type, GraphQLObjectType) else None


def _plain(parent: GraphQLObjectType, selections: SelectionSetNode, holes: list[tuple[str, str]], *, top: bool) -> bool:
    """Whether every selected field is a plain attribute (recursively); notes the per-request ones."""
    for selection in selections.selections:
        if not isinstance(selection, FieldNode) or selection.directives or selection.arguments:
            return False
        name = selection.name.value
        response_key = selection.alias.value if selection.alias else name
        if name == "__typename":
            continue
        graphql_field = parent.fields.get(name)
        if graphql_field is None:
            return False
        definition = (graphql_field.extensions or {}).get("strawberry-definition")
        if definition is None or definition.base_resolver is not None:
            return False
        if definition.permission_classes or definition.extensions or definition.directives:
            return False
        if top and name in PER_REQUEST:
            holes.append((response_key, PER_REQUEST[name]))
        inner = graphql_field.type
        while isinstance(inner, GraphQLNonNull | GraphQLList):
            inner = inner.of_type
        if selection.selection_set is not None:
            if not isinstance(inner, GraphQLObjectType):
                return False  # an interface or union: what it resolves to is not a plain attribute
            if not _plain(inner, selection.selection_set, holes, top=False):
                return False
    return True
