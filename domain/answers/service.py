"""Grounded answers: retrieve (or take the user's selection), optionally re-rank, generate with
citations, and store the answer. `events` is one stream for both the subscription and the plain
query: sources first, then text deltas, then done (or failed)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from domain import telemetry
from domain.answers import store, stored
from domain.answers.citations import CitationFilter
from domain.answers.error_codes import AnswerErrorCode
from domain.answers.extractive import ExtractiveGenerator
from domain.answers.generators import Generator, LLMGenerator
from domain.answers.prompt import Audience, Turn, condense_messages
from domain.answers.sources import Source
from domain.answers.stored import AnswerCache, StoredAnswer
from domain.answers.writer import AnswerWriter
from domain.caching.store import CacheStore
from domain.errors import InvalidInput
from domain.persistence.database import Database
from domain.persistence.tables import Answer
from domain.providers.embedding import Embedder
from domain.providers.llm import ChatModel, ProviderFailure, Usage
from domain.rerank.service import Reranking, RerankOutcome, Strategy
from domain.retrieval import search as retrieval
from domain.retrieval.filters import MetadataFilter
from domain.retrieval.searching import Searching

log = logging.getLogger("ragql.answers")


@dataclass(frozen=True)
class AnswerLimits:
    max_question_chars: int = 1000
    max_sources: int = 20
    max_selected_chars: int = 20_000
    history_turns: int = 3
    condense_timeout_s: float = 5.0


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    sources: int = 5
    filter: MetadataFilter | None = None
    rerank: Strategy = "NONE"
    selected_text: str | None = None
    audience: Audience | None = None
    session_id: uuid.UUID | None = None


@dataclass
class Prepared:
    answer_id: uuid.UUID
    session_id: uuid.UUID
    turn: int
    request: AnswerRequest
    question: str
    retrieval_query: str | None
    sources: list[Source]
    history: list[Turn]
    rerank: RerankOutcome | None
    started: float
    usage: Usage | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourcesReady:
    prepared: Prepared


@dataclass(frozen=True)
class Delta:
    answer_id: uuid.UUID
    text: str


@dataclass(frozen=True)
class Done:
    answer_id: uuid.UUID
    session_id: uuid.UUID
    text: str
    citations: list[Source]
    dropped_citations: list[str]
    usage: Usage | None
    took_ms: float
    first_token_ms: float | None
    generator: str
    notes: list[str]


@dataclass(frozen=True)
class Failed:
    answer_id: uuid.UUID
    code: str
    message: str


Event = SourcesReady | Delta | Done | Failed


def _add(a: Usage | None, b: Usage | None) -> Usage | None:
    if a is None or b is None:
        return a or b
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens)


class Answering:
    def __init__(
        self,
        *,
        db: Database,
        embedder: Embedder,
        keyword_backend: str,
        reranking: Reranking,
        extractive: ExtractiveGenerator,
        llm: LLMGenerator | None = None,
        limits: AnswerLimits | None = None,
        embeddings: CacheStore | None = None,
        answer_cache: AnswerCache | None = None,
    ) -> None:
        self.answer_cache = answer_cache
        self.db = db
        self.embedder = embedder
        self.keyword_backend = keyword_backend
        self.reranking = reranking
        self.extractive = extractive
        self.llm = llm
        self.limits = limits or AnswerLimits()
        self.writer = AnswerWriter(db)
        self.searching = Searching(db, embedder, keyword_backend, reranking, embeddings=embeddings)

    async def cache_key(self, tenant_id: str, request: AnswerRequest) -> str | None:
        """Where a repeated question's answer is kept; None when this request is not cacheable."""
        if self.answer_cache is None or request.session_id is not None or request.selected_text is not None:
            return None
        question = self.validate(request)
        return await self.answer_cache.key(
            tenant_id,
            question,
            request.sources,
            repr(request.filter),
            request.rerank,
            request.audience,
            self.generator.name,
        )

    async def repeated(self, tenant_id: str, key: str) -> StoredAnswer | None:
        """The answer given before, stored again as this asker's own answer: a new id (their
        feedback attaches to it) and a new session (a follow-up continues their conversation, never
        the first asker's). Retrieval and generation are what is saved."""
        assert self.answer_cache is not None
        started = time.perf_counter()
        answer_id = await self.answer_cache.get(key)
        before = await stored.load(self.db, tenant_id, answer_id) if answer_id else None
        if before is None:
            return None
        new_id = uuid.uuid4()
        copy = Answer(
            **{
                **before.record.model_dump(exclude={"id", "session_id", "turn", "created_at", "took_ms"}),
                "id": new_id,
                "session_id": new_id,
                "turn": 0,
                "took_ms": (time.perf_counter() - started) * 1000,
            }
        )
        await self._save(copy)
        return stored.StoredAnswer(copy, before.sources)

    async def remember(self, key: str, answer_id: uuid.UUID) -> None:
        assert self.answer_cache is not None
        await self.answer_cache.put(key, answer_id)

    @property
    def generator(self) -> Generator:
        return self.llm or self.extractive

    @property
    def condenser(self) -> ChatModel | None:
        return self.llm.chat if self.llm else None

    def validate(self, request: AnswerRequest) -> str:
        question = request.question.strip()
        limits = self.limits
        if not question:
            raise InvalidInput(AnswerErrorCode.EMPTY_QUESTION, "the question is empty; ask something", field="question")
        if len(question) > limits.max_question_chars:
            raise InvalidInput(
                AnswerErrorCode.QUESTION_TOO_LONG,
                f"the question is {len(question)} characters; shorten it to at most {limits.max_question_chars}",
                field="question",
            )
        if not 1 <= request.sources <= limits.max_sources:
            raise InvalidInput(
                AnswerErrorCode.INVALID_SOURCES,
                f"sources must be between 1 and {limits.max_sources}, got {request.sources}",
                field="options.sources",
            )
        if request.selected_text is not None:
            if not request.selected_text.strip():
                raise InvalidInput(
                    AnswerErrorCode.EMPTY_SELECTED_TEXT,
                    "selectedText is empty; pass the passage the user selected, or omit it to search",
                    field="options.selectedText",
                )
            if len(request.selected_text) > limits.max_selected_chars:
                raise InvalidInput(
                    AnswerErrorCode.SELECTED_TEXT_TOO_LONG,
                    f"selectedText is {len(request.selected_text)} characters; the limit is "
                    f"{limits.max_selected_chars}",
                    field="options.selectedText",
                )
        return question

    async def prepare(self, tenant_id: str, request: AnswerRequest) -> Prepared:
        """Validate, read the session, and gather the sources. Raises InvalidInput before any work."""
        started = time.perf_counter()
        question = self.validate(request)
        answer_id = uuid.uuid4()
        history: list[Turn] = []
        turn = 0
        session_id = answer_id  # a new session is named after its first answer
        if request.session_id is not None:
            history, turn = await store.session_history(
                self.db, tenant_id, request.session_id, turns=self.limits.history_turns
            )
            session_id = request.session_id
        prepared = Prepared(
            answer_id=answer_id,
            session_id=session_id,
            turn=turn,
            request=request,
            question=question,
            retrieval_query=None,
            sources=[],
            history=history,
            rerank=None,
            started=started,
        )
        if request.selected_text is not None:
            # "Answer from this passage": the selection is the only source, nothing is retrieved.
            prepared.sources = [Source(1, "Selected text", request.selected_text.strip())]
            return prepared
        prepared.retrieval_query = await self._condense(question, history, prepared)
        result = await self.searching.retrieve(
            tenant_id,
            prepared.retrieval_query,
            request.sources,
            retrieval.SearchOptions(filter=request.filter, rerank=request.rerank),
        )
        prepared.rerank = result.rerank
        if result.rerank is not None:
            prepared.usage = _add(prepared.usage, result.rerank.usage)
        prepared.sources = [
            Source(i + 1, h.document.title, h.chunk_text or h.document.title, h) for i, h in enumerate(result.hits)
        ]
        return prepared

    async def _condense(self, question: str, history: list[Turn], prepared: Prepared) -> str:
        """A follow-up like "and who directed it?" needs the earlier turns to retrieve anything."""
        if not history:
            return question
        chat = self.condenser
        if chat is not None:
            try:
                async with asyncio.timeout(self.limits.condense_timeout_s):
                    text, usage = await chat.complete(condense_messages(question, history), max_tokens=80)
                prepared.usage = _add(prepared.usage, usage)
                condensed = " ".join(text.split())[: self.limits.max_question_chars]
                if condensed:
                    return condensed
            except (ProviderFailure, TimeoutError) as exc:
                prepared.notes.append(f"could not condense the follow-up with the LLM ({exc}); used the last turn")
        return f"{history[-1].question} {question}"[-self.limits.max_question_chars :]

    async def events(
        self, tenant_id: str, prepared: Prepared, *, restart_on_failure: bool = False
    ) -> AsyncGenerator[Event, None]:
        """Sources, deltas, then Done or Failed. A provider failure before any text (or at any point,
        with `restart_on_failure`, for callers that have not shown text yet) falls back to the
        extractive generator. The answer is stored however the stream ends, even when cancelled."""
        # The extractive generator's sentence vectors are read while the sources go out to the
        # client, so that read's round trips overlap the AnswerSources message instead of following it.
        preloading = self._preload(tenant_id, prepared.sources) if self.generator is self.extractive else None
        try:
            yield SourcesReady(prepared)
        except BaseException:  # closed before any text: nothing to read, and (as before) nothing stored
            if preloading is not None:
                preloading.cancel()
                await asyncio.gather(preloading, return_exceptions=True)
            raise
        citations = CitationFilter({s.number for s in prepared.sources})
        parts: list[str] = []
        usage = prepared.usage
        first_token_ms: float | None = None
        generator: Generator = self.generator
        status, error_code = "cancelled", None
        audience = prepared.request.audience
        if audience and not generator.uses_audience:
            prepared.notes.append(f"the {generator.name} generator ignores audience={audience}")
        generating = time.perf_counter()
        try:
            while True:
                try:
                    if preloading is not None:
                        started_early, preloading = preloading, None
                        await started_early
                    elif generator is self.extractive:
                        await self.extractive.preload(tenant_id, prepared.sources)
                    stream = generator.stream(
                        prepared.question, prepared.sources, audience=audience, history=prepared.history
                    )
                    async with aclosing(stream) as items:
                        async for item in items:
                            if isinstance(item, Usage):
                                usage = _add(usage, item)
                                continue
                            text = citations.feed(item)
                            if text:
                                if first_token_ms is None:
                                    first_token_ms = (time.perf_counter() - prepared.started) * 1000
                                parts.append(text)
                                yield Delta(prepared.answer_id, text)
                    break
                except ProviderFailure as exc:
                    log.warning("generation failed answer_id=%s: %s", prepared.answer_id, exc)
                    if generator is self.extractive or (parts and not restart_on_failure):
                        status, error_code = "error", AnswerErrorCode.PROVIDER_ERROR
                        yield Failed(
                            prepared.answer_id,
                            AnswerErrorCode.PROVIDER_ERROR,
                            f"the answer stopped part-way: {exc.provider} {exc.kind}. Ask again to retry.",
                        )
                        return
                    prepared.notes.append(
                        f"{generator.name} failed ({exc.kind}); answered with the extractive generator"
                    )
                    generator = self.extractive
                    citations = CitationFilter(citations.valid)
                    parts = []
            tail = citations.flush()
            if tail:
                parts.append(tail)
                yield Delta(prepared.answer_id, tail)
            status = "done"
            yield Done(
                answer_id=prepared.answer_id,
                session_id=prepared.session_id,
                text="".join(parts),
                citations=[prepared.sources[n - 1] for n in citations.used],
                dropped_citations=list(citations.dropped),
                usage=usage,
                took_ms=(time.perf_counter() - prepared.started) * 1000,
                first_token_ms=first_token_ms,
                generator=generator.name,
                notes=list(prepared.notes),
            )
        finally:
            telemetry.observe("generate", time.perf_counter() - generating)
            record = self._record(
                tenant_id,
                prepared,
                "".join(parts),
                citations,
                generator,
                usage,
                status=status,
                error_code=error_code,
                first_token_ms=first_token_ms,
            )
            # Shielded: a cancelled subscription still gets its (partial) answer stored.
            await asyncio.shield(self._save(record))

    def _preload(self, tenant_id: str, sources: list[Source]) -> asyncio.Task[None]:
        return asyncio.create_task(self.extractive.preload(tenant_id, sources))

    def _record(
        self,
        tenant_id: str,
        prepared: Prepared,
        text: str,
        citations: CitationFilter,
        generator: Generator,
        usage: Usage | None,
        *,
        status: str,
        error_code: str | None,
        first_token_ms: float | None,
    ) -> Answer:
        request = prepared.request
        options: dict[str, Any] = {
            "sources": request.sources,
            "audience": request.audience,
            "selectedText": request.selected_text is not None,
            "filtered": request.filter is not None,
            "notes": prepared.notes,
        }
        return Answer(
            id=prepared.answer_id,
            tenant_id=tenant_id,
            session_id=prepared.session_id,
            turn=prepared.turn,
            question=prepared.question,
            retrieval_query=prepared.retrieval_query,
            options=options,
            sources=[s.record() for s in prepared.sources],
            text=text,
            citations=list(citations.used),
            dropped_citations=list(citations.dropped),
            generator=generator.name,
            rerank=prepared.rerank.applied if prepared.rerank else "NONE",
            status=status,
            error_code=error_code,
            first_token_ms=first_token_ms,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            took_ms=(time.perf_counter() - prepared.started) * 1000,
        )

    async def _save(self, record: Answer) -> None:
        try:
            await self.writer.save(record)
        except Exception:
            log.exception("could not store answer %s", record.id)
