"""The root types: each field is wired to one resolver function."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    FieldExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.permission import BasePermission
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, SubscriptionResult
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from domain.errors import DomainError
from resolvers import analytics, answers, apikeys, documents, feedback, jobs, search, server, training
from resolvers import recommendations as recs
from schema.analytics import Analytics
from schema.answers import Answer, AnswerEvent
from schema.apikeys import ApiKey, CreateApiKeyPayload, RevokeApiKeyPayload
from schema.common import Node
from schema.cost import QueryCost
from schema.document_cache import CachedParse
from schema.documents import (
    Chunk,
    DeleteDocumentPayload,
    Document,
    DocumentConnection,
    IngestDocumentsPayload,
)
from schema.errors import ErrorCodes, mask
from schema.feedback import Feedback, SubmitFeedbackPayload
from schema.input_guard import InputGuard
from schema.jobs import CancelIngestionJobPayload, ImportFeedbackPayload, IngestionJob, IngestionJobConnection
from schema.payload_errors import DomainErrorsToPayload
from schema.permissions import IsAdmin, IsEditor, IsReader
from schema.recommendations import RecommendationResult
from schema.search import SearchHit, SearchResult
from schema.server import PrincipalInfo, ServerInfo
from schema.training import RecommendationModel, TrainRecommendationsPayload
from schema.validation import HideSuggestions

READER: list[type[BasePermission]] = [IsReader]
EDITOR: list[type[BasePermission]] = [IsEditor]
ADMIN: list[type[BasePermission]] = [IsAdmin]


def payload_errors() -> list[FieldExtension]:
    """A fresh extension per mutation field: each keeps its own field's payload type."""
    return [DomainErrorsToPayload()]


@strawberry.type
class Query:
    server_info: ServerInfo = strawberry.field(resolver=server.server_info)
    me: PrincipalInfo = strawberry.field(resolver=server.me)
    node: Node | None = strawberry.field(resolver=server.node, permission_classes=READER)
    document: Document | None = strawberry.field(resolver=documents.document, permission_classes=READER)
    documents: DocumentConnection = strawberry.field(resolver=documents.documents_connection, permission_classes=READER)
    search: SearchResult = strawberry.field(resolver=search.search, permission_classes=READER)
    answer: Answer = strawberry.field(
        resolver=answers.answer, description="A grounded answer, not streamed.", permission_classes=READER
    )
    analytics: Analytics = strawberry.field(
        resolver=analytics.analytics,
        description="This tenant's search, feedback and answer figures for [from, to). Admins only.",
        permission_classes=ADMIN,
    )
    recommendations: RecommendationResult = strawberry.field(
        resolver=recs.recommendations,
        description="What this user is likely to want next, learned from their feedback; each item says why.",
        permission_classes=READER,
    )
    recommendation_model: RecommendationModel = strawberry.field(
        resolver=training.recommendation_model,
        description="This tenant's trained recommendation model and its training in flight. Admins only.",
        permission_classes=ADMIN,
    )
    similar_documents: list[SearchHit] = strawberry.field(
        resolver=recs.similar_documents,
        description='"More like this": the documents nearest to this one by vector, never itself.',
        permission_classes=READER,
    )
    api_keys: list[ApiKey] = strawberry.field(
        resolver=apikeys.api_keys, description="This tenant's API keys. Admins only.", permission_classes=ADMIN
    )
    ingestion_job: IngestionJob = strawberry.field(
        resolver=jobs.ingestion_job,
        description="One ingestion job of this tenant; NOT_FOUND for an unknown id or another tenant's.",
        permission_classes=READER,
    )
    ingestion_jobs: IngestionJobConnection = strawberry.field(
        resolver=jobs.ingestion_jobs,
        description="This tenant's ingestion jobs, newest first.",
        permission_classes=READER,
    )


@strawberry.type
class Mutation:
    ingest_documents: IngestDocumentsPayload = strawberry.mutation(
        resolver=documents.ingest_documents, permission_classes=EDITOR, extensions=payload_errors()
    )
    upload_documents: IngestDocumentsPayload = strawberry.mutation(
        resolver=documents.upload_documents, permission_classes=EDITOR, extensions=payload_errors()
    )
    delete_document: DeleteDocumentPayload = strawberry.mutation(
        resolver=documents.delete_document, permission_classes=EDITOR, extensions=payload_errors()
    )
    submit_feedback: SubmitFeedbackPayload = strawberry.mutation(
        resolver=feedback.submit_feedback,
        description="Record one feedback event; with an idempotencyKey, retries are safe.",
        permission_classes=READER,
        extensions=payload_errors(),
    )
    cancel_ingestion_job: CancelIngestionJobPayload = strawberry.mutation(
        resolver=jobs.cancel_ingestion_job,
        description="Stop a QUEUED or RUNNING job. Documents already stored stay; nothing more is stored.",
        permission_classes=EDITOR,
        extensions=payload_errors(),
    )
    import_feedback: ImportFeedbackPayload = strawberry.mutation(
        resolver=jobs.import_feedback,
        description="Load up to 10,000 historical feedback events as a job; each keeps its occurredAt. Admins only.",
        permission_classes=ADMIN,
        extensions=payload_errors(),
    )
    train_recommendations: TrainRecommendationsPayload = strawberry.mutation(
        resolver=training.train_recommendations,
        description="Train this tenant's recommendation model now, as a job (one at a time). Admins only.",
        permission_classes=ADMIN,
        extensions=payload_errors(),
    )
    create_api_key: CreateApiKeyPayload = strawberry.mutation(
        resolver=apikeys.create_api_key,
        description="A new API key of this tenant. Its secret is in the payload, once. Admins only.",
        permission_classes=ADMIN,
        extensions=payload_errors(),
    )
    revoke_api_key: RevokeApiKeyPayload = strawberry.mutation(
        resolver=apikeys.revoke_api_key,
        description="Revoke a key; it stops working on the next request, on every replica. Admins only.",
        permission_classes=ADMIN,
        extensions=payload_errors(),
    )


@strawberry.type
class Subscription:
    answer_stream: AsyncGenerator[AnswerEvent, None] = strawberry.subscription(
        resolver=answers.answer_stream,
        description="AnswerSources first, then AnswerDelta events as text arrives, then AnswerDone or AnswerError.",
        permission_classes=READER,
    )
    ingestion_progress: AsyncGenerator[IngestionJob, None] = strawberry.subscription(
        resolver=jobs.ingestion_progress,
        description="The job now, then on every change of its counts or state; the last event is its final state.",
        permission_classes=READER,
    )


class RagqlSchema(strawberry.Schema):
    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # `execute` serves queries and mutations. Subscriptions run through `subscribe` (websockets,
        # multipart HTTP); one POSTed as plain JSON would otherwise fail deep inside graphql-core.
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query, variable_values, context_value, root_value, operation_name, allowed, operation_extensions
        )

    async def subscribe(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> SubscriptionResult:
        # Legacy graphql-ws sends queries and mutations through `subscribe` too, which allows only
        # subscriptions and failed with INTERNAL. `stream` runs any operation: a query or a
        # mutation yields its one result and completes, as over graphql-transport-ws.
        result = await self.stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types=DEFAULT_ALLOWED_OPERATION_TYPES,
        )
        return cast("SubscriptionResult", result)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Errors normally get their code from ErrorCodes. One that escaped an extension hook skips
        # it, so this is the safety net: such an error is masked here, as ErrorCodes would have.
        request_id = getattr(getattr(execution_context, "context", None), "request_id", "-")
        for error in errors:
            original = error.original_error
            unexpected = original is not None and not isinstance(original, GraphQLError | DomainError)
            if "code" not in (error.extensions or {}) and unexpected:
                mask(error, request_id, getattr(execution_context, "context", None))
            else:
                error.extensions = {"requestId": request_id, **(error.extensions or {})}


# Distinct operation texts kept parsed and validated (each a few KiB).
PARSED_DOCUMENTS = 512


@dataclass(frozen=True)
class QueryLimits:
    """Checked on every operation, before anything executes."""

    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 2000
    introspection: bool = True
    # "Did you mean ...?" in validation errors: development only (they name real fields).
    suggestions: bool = True


def build_schema(limits: QueryLimits | None = None, *, observers: Sequence[Any] = ()) -> RagqlSchema:
    """`observers`: extensions the api layer adds around every operation (metrics, traces, logs)."""
    limits = limits or QueryLimits()
    # The depth and alias limits as validation rules built once: QueryDepthLimiter and
    # MaxAliasesLimiter build a new rule class per request, which no validation cache could match.
    rules: list[type[ASTValidationRule]] = [depth_rule(limits.max_depth, None, None), aliases_rule(limits.max_aliases)]
    extensions: list[Any] = [
        *observers,
        ErrorCodes,
        InputGuard,
        # Classes or factories, never instances: Strawberry builds each per request (it deprecates
        # shared instances, and the cost reported is per request).
        # Parsed and validated documents are kept (LRUs shared across requests, keyed by the query
        # text and the rules): clients send the same few operations with different variables.
        # A document that fails parsing is not cached; one that fails validation is cached with its
        # errors, so a refused document stays refused. The parse carries the token limit (what
        # Strawberry's MaxTokensLimiter sets): a huge document is refused before it is parsed.
        partial(CachedParse, maxsize=PARSED_DOCUMENTS, max_token_count=limits.max_tokens),
        partial(AddValidationRules, rules),
        # Strawberry's ValidationCache validates with graphql-core's "Did you mean" suggestions and
        # overwrites any earlier result, so where suggestions are hidden (production) validation
        # runs uncached through HideSuggestions instead.
        partial(ValidationCache, maxsize=PARSED_DOCUMENTS) if limits.suggestions else HideSuggestions,
        partial(QueryCost, max_cost=limits.max_cost),
    ]
    if not limits.introspection:
        extensions.append(DisableIntrospection)
    return RagqlSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Document, Chunk, Feedback],
        extensions=extensions,
    )
