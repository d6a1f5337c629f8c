"""answer (query) and answerStream (subscription): one domain stream, two deliveries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from domain.answers import service as answers
from domain.answers.sources import Source
from domain.answers.stored import StoredAnswer
from domain.errors import DomainError
from domain.providers.llm import Usage as DomainUsage
from resolvers.filters import to_domain_filter
from resolvers.search import to_rerank_info, to_search_hit
from schema.answers import (
    Answer,
    AnswerDelta,
    AnswerDone,
    AnswerError,
    AnswerEvent,
    AnswerOptions,
    AnswerSources,
    Citation,
    Usage,
)
from schema.common import from_global_id, to_global_id
from schema.context import Context
from schema.documents import Document
from schema.error_codes import to_graphql
from schema.payload_errors import first_error_as_event
from schema.search import SearchHit


def _request(question: str, options: AnswerOptions | None) -> answers.AnswerRequest:
    opts = options or AnswerOptions()
    session = None
    if opts.session_id is not None:
        _, session = from_global_id(opts.session_id, expected="AnswerSession", field="options.sessionId")
    return answers.AnswerRequest(
        question=question,
        sources=opts.sources,
        filter=to_domain_filter(opts.filter),
        rerank=opts.rerank.value,
        selected_text=opts.selected_text,
        audience=opts.audience.value if opts.audience else None,
        session_id=session,
    )


def _hits(sources: list[Source]) -> list[SearchHit]:
    """The retrieved sources, in [n] order; a selection is a source but not a hit."""
    return [to_search_hit(src.hit) for src in sources if src.hit is not None]


def _citation(source: Source) -> Citation:
    hit = source.hit
    return Citation(
        number=source.number,
        title=source.title,
        document=Document.from_row(hit.document) if hit else None,
        chunk_id=to_global_id("Chunk", hit.chunk_id) if hit else None,
    )


def _usage(usage: DomainUsage | None) -> Usage | None:
    if usage is None:
        return None
    return Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


async def answer(info: strawberry.Info[Context], question: str, options: AnswerOptions | None = None) -> Answer:
    s = info.context.services
    tenant = info.context.tenant_id
    request = _request(question, options)
    key = await s.answering.cache_key(tenant, request)
    if key is not None:
        repeated = await s.answering.repeated(tenant, key)
        if repeated is not None:
            return from_stored(repeated, notes=["a repeated question: the answer given before (answer cache)"])
    prepared = await s.answering.prepare(tenant, request)
    done: answers.Done | None = None
    async with aclosing(s.answering.events(tenant, prepared, restart_on_failure=True)) as events:
        async for event in events:
            if isinstance(event, answers.Done):
                done = event
            elif isinstance(event, answers.Failed):
                raise DomainError(event.message)
    assert done is not None
    if key is not None and done.generator == s.answering.generator.name:
        # Only an answer from the configured generator is reused: a fallback after a provider
        # failure is not what the next asker should get once the provider is back.
        await s.answering.remember(key, prepared.answer_id)
    return Answer(
        id=to_global_id("Answer", prepared.answer_id),
        session_id=to_global_id("AnswerSession", prepared.session_id),
        question=prepared.question,
        retrieval_query=prepared.retrieval_query,
        text=done.text,
        sources=_hits(prepared.sources),
        citations=[_citation(c) for c in done.citations],
        dropped_citations=done.dropped_citations,
        usage=_usage(done.usage),
        generator=done.generator,
        rerank=to_rerank_info(prepared.rerank, s.reranking) if prepared.rerank else None,
        notes=done.notes,
        took_ms=done.took_ms,
        first_token_ms=done.first_token_ms,
    )


def from_stored(answer: StoredAnswer, *, notes: list[str] | None = None) -> Answer:
    """An answer read back from the answers table (node(id:), the answer cache)."""
    r = answer.record
    usage = DomainUsage(r.prompt_tokens, r.completion_tokens) if r.prompt_tokens or r.completion_tokens else None
    return Answer(
        id=to_global_id("Answer", r.id),
        session_id=to_global_id("AnswerSession", r.session_id),
        question=r.question,
        retrieval_query=r.retrieval_query,
        text=r.text,
        sources=_hits(answer.sources),
        citations=[_citation(c) for c in answer.citations],
        dropped_citations=list(r.dropped_citations),
        usage=_usage(usage),
        generator=r.generator,
        rerank=None,
        notes=notes or [],
        took_ms=r.took_ms,
        first_token_ms=r.first_token_ms,
    )


def _refused(exc: DomainError) -> AnswerError:
    """Refused before it started: the answerId names an attempt that was not stored."""
    attempt = to_global_id("Answer", uuid.uuid4())
    return AnswerError(answer_id=attempt, code=to_graphql(exc.code), message=exc.message, field=exc.field)


@first_error_as_event(_refused)
async def answer_stream(
    info: strawberry.Info[Context], question: str, options: AnswerOptions | None = None
) -> AsyncGenerator[AnswerEvent, None]:
    """Errors the client can fix arrive as an `AnswerError` event with a code (bad input through
    first_error_as_event, provider failures from the domain), so every stream ends with exactly
    one AnswerDone or AnswerError."""
    s = info.context.services
    tenant = info.context.tenant_id
    prepared = await s.answering.prepare(tenant, _request(question, options))
    answer_id = to_global_id("Answer", prepared.answer_id)
    # aclosing: when the client goes away, the domain stream (and any provider stream) closes now.
    async with aclosing(s.answering.events(tenant, prepared)) as events:
        async for event in events:
            if isinstance(event, answers.SourcesReady):
                p = event.prepared
                yield AnswerSources(
                    answer_id=answer_id,
                    session_id=to_global_id("AnswerSession", p.session_id),
                    retrieval_query=p.retrieval_query,
                    sources=_hits(p.sources),
                    rerank=to_rerank_info(p.rerank, s.reranking) if p.rerank else None,
                )
            elif isinstance(event, answers.Delta):
                yield AnswerDelta(answer_id=answer_id, text=event.text)
            elif isinstance(event, answers.Done):
                yield AnswerDone(
                    answer_id=answer_id,
                    session_id=to_global_id("AnswerSession", event.session_id),
                    text=event.text,
                    citations=[_citation(c) for c in event.citations],
                    dropped_citations=event.dropped_citations,
                    usage=_usage(event.usage),
                    generator=event.generator,
                    notes=event.notes,
                    took_ms=event.took_ms,
                    first_token_ms=event.first_token_ms,
                )
            else:
                yield AnswerError(answer_id=answer_id, code=to_graphql(event.code), message=event.message, field=None)
