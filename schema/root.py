"""The root types: each field is wired to one resolver function."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.types import ExecutionContext

from domain.errors import DomainError
from resolvers import analytics, answers, documents, feedback, search, server
from resolvers import recommendations as recs
from schema.analytics import Analytics
from schema.answers import Answer, AnswerEvent
from schema.common import Node
from schema.documents import (
    Chunk,
    DeleteDocumentPayload,
    Document,
    DocumentConnection,
    IngestDocumentsPayload,
)
from schema.errors import ErrorCodes
from schema.feedback import Feedback, SubmitFeedbackPayload
from schema.recommendations import RecommendationResult
from schema.search import SearchHit, SearchResult
from schema.server import PrincipalInfo, ServerInfo


@strawberry.type
class Query:
    server_info: ServerInfo = strawberry.field(resolver=server.server_info)
    me: PrincipalInfo = strawberry.field(resolver=server.me)
    node: Node | None = strawberry.field(resolver=server.node)
    document: Document | None = strawberry.field(resolver=documents.document)
    documents: DocumentConnection = strawberry.field(resolver=documents.documents_connection)
    search: SearchResult = strawberry.field(resolver=search.search)
    answer: Answer = strawberry.field(resolver=answers.answer, description="A grounded answer, not streamed.")
    analytics: Analytics = strawberry.field(
        resolver=analytics.analytics, description="This tenant's search, feedback and answer figures for [from, to)."
    )
    recommendations: RecommendationResult = strawberry.field(
        resolver=recs.recommendations,
        description="What this user is likely to want next, learned from their feedback; each item says why.",
    )
    similar_documents: list[SearchHit] = strawberry.field(
        resolver=recs.similar_documents,
        description='"More like this": the documents nearest to this one by vector, never itself.',
    )


@strawberry.type
class Mutation:
    ingest_documents: IngestDocumentsPayload = strawberry.mutation(resolver=documents.ingest_documents)
    upload_documents: IngestDocumentsPayload = strawberry.mutation(resolver=documents.upload_documents)
    delete_document: DeleteDocumentPayload = strawberry.mutation(resolver=documents.delete_document)
    submit_feedback: SubmitFeedbackPayload = strawberry.mutation(
        resolver=feedback.submit_feedback,
        description="Record one feedback event; with an idempotencyKey, retries are safe.",
    )


@strawberry.type
class Subscription:
    answer_stream: AsyncGenerator[AnswerEvent, None] = strawberry.subscription(
        resolver=answers.answer_stream,
        description="AnswerSources first, then AnswerDelta events as text arrives, then AnswerDone or AnswerError.",
    )


class RagqlSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Expected errors are the client's business; unexpected ones are logged by ErrorCodes
        # with the request id, so nothing is logged twice and no stack trace is printed here.
        logging.getLogger("ragql.graphql").debug(
            "graphql errors: %s", [e.message for e in errors if not isinstance(e.original_error, DomainError)]
        )


def build_schema(*, max_depth: int = 10, max_aliases: int = 30, max_tokens: int = 4000) -> RagqlSchema:
    extensions: list[Any] = [
        ErrorCodes,
        QueryDepthLimiter(max_depth=max_depth),
        MaxAliasesLimiter(max_alias_count=max_aliases),
        MaxTokensLimiter(max_token_count=max_tokens),
    ]
    return RagqlSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Document, Chunk, Feedback],
        extensions=extensions,
    )
