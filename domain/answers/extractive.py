"""The default generator, with no model to call: it answers with the sentences of the sources that
best support the question, each followed by its [n] citation. It is a real (if terse) answer, and
when nothing in the sources is close enough it says so instead of pretending."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from domain.answers.prompt import Audience, Turn
from domain.answers.sentence_vectors import PassageVectors, SentenceVectorStore, embed_passages
from domain.answers.sources import Source
from domain.providers.embedding import Embedder, Vectors
from domain.providers.llm import Usage

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by did do does for from had has have how i in is it its of on or that the this "
    "to was were what when where which who whom why will with you your about into than then there these "
    "they those tell me can could would should".split()
)
_PRONOUN_START = re.compile(r"^(He|She|They|It|His|Her|Their|Its)\b")
_FIRST_DELTA_WORDS = 6
NO_SOURCES = "I found no documents to answer this from."
NOT_ANSWERED = "The documents do not seem to answer this directly. The closest passage says:"


@dataclass(frozen=True)
class Candidate:
    source: int
    position: int
    text: str
    score: float


@dataclass(frozen=True)
class _Passage:
    """A source split into sentences, with what scoring needs of each: computed once per chunk."""

    sentences: list[str]
    vectors: Vectors
    words: list[set[str]]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


class ExtractiveGenerator:
    name = "extractive"
    uses_audience = False

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_sentences: int = 3,
        max_words: int = 110,
        min_similarity: float = 0.25,
        cache_size: int = 4096,
        store: SentenceVectorStore | None = None,
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._max_sentences = max_sentences
        self._max_words = max_words
        self._min_similarity = min_similarity
        # Chunks are insert-only, so a passage's sentence vectors never go stale: cache them.
        self._cache: OrderedDict[str, _Passage] = OrderedDict()
        self._cache_size = cache_size

    def _cached(self, key: str) -> _Passage | None:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
        return cached

    def _remember(self, key: str, passage: PassageVectors) -> _Passage:
        cached = _Passage(passage.sentences, passage.vectors, [content_words(s) for s in passage.sentences])
        self._cache[key] = cached
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cached

    async def preload(self, tenant_id: str, sources: Sequence[Source]) -> None:
        """Have every source's sentence vectors at hand: from this process's cache, else from
        `chunk_sentences`, else embedded now (all missing sources in one call) and stored there
        for every replica. Selected text is embedded each time it is not cached, never stored."""
        missing = [s for s in sources if self._cached(s.key) is None]
        if self._store is not None and missing:
            ids = [s.hit.chunk_id for s in missing if s.hit is not None]
            for chunk_id, passage in (await self._store.load(tenant_id, ids)).items():
                self._remember(str(chunk_id), passage)
            missing = [s for s in missing if self._cached(s.key) is None]
        if not missing:
            return
        fresh = await embed_passages(self._embedder, [s.text for s in missing])
        for source, passage in zip(missing, fresh, strict=True):
            self._remember(source.key, passage)
        if self._store is not None:
            stored = {s.hit.chunk_id: p for s, p in zip(missing, fresh, strict=True) if s.hit is not None}
            await self._store.save(tenant_id, stored)

    async def _sentences(self, source: Source) -> _Passage:
        cached = self._cached(source.key)
        if cached is not None:
            return cached
        (passage,) = await embed_passages(self._embedder, [source.text])
        return self._remember(source.key, passage)

    async def select(self, question: str, sources: Sequence[Source]) -> tuple[list[Candidate], bool]:
        """The sentences to say, best first, and whether they clear the bar of answering."""
        if not sources:
            return [], False
        q_vec = await self._embedder.embed_query(question)
        q_words = content_words(question)
        candidates: list[tuple[Candidate, Vectors]] = []
        for source in sources:
            passage = await self._sentences(source)
            similarity = passage.vectors @ q_vec
            for i, sentence in enumerate(passage.sentences):
                overlap = len(q_words & passage.words[i]) / len(q_words) if q_words else 0.0
                # Meaning first; shared words break ties; earlier (better-ranked) sources are preferred.
                score = float(similarity[i]) + 0.25 * overlap + 0.02 / source.number
                candidates.append((Candidate(source.number, i, sentence, score), passage.vectors[i]))
        candidates.sort(key=lambda c: -c[0].score)
        best = candidates[0][0].score
        answered = best >= self._min_similarity
        chosen: list[tuple[Candidate, Vectors]] = []
        words = 0
        for candidate, vector in candidates:
            if len(chosen) >= (self._max_sentences if answered else 1):
                break
            if chosen and candidate.score < 0.75 * best:
                break
            if any(float(vector @ v) > 0.9 for _, v in chosen):
                continue  # says what a chosen sentence already says
            n_words = len(candidate.text.split())
            if chosen and words + n_words > self._max_words:
                continue
            chosen.append((candidate, vector))
            words += n_words
        return [c for c, _ in chosen], answered

    async def stream(
        self, question: str, sources: Sequence[Source], *, audience: Audience | None, history: Sequence[Turn]
    ) -> AsyncGenerator[str | Usage, None]:
        chosen, answered = await self.select(question, sources)
        if not chosen:
            parts = [NO_SOURCES]
        else:
            parts = [] if answered else [NOT_ANSWERED]
            titles = {s.number: s.title for s in sources}
            parts += [f"{_anchor(c.text, titles[c.source])} [{c.source}]" for c in chosen]
        for piece in pieces(" ".join(parts)):
            yield piece
            await asyncio.sleep(0)


def pieces(text: str) -> list[str]:
    """The text as deltas that start small and grow: 6 words, then each half again as long as the
    one before (6, 9, 13, 20, 30, ...). Clients render the opening words at once, as from a model.
    Not word by word, nor 6 at a time: each delta is a GraphQL result and a websocket message
    (a write to the socket), and under load those were a sixth of the server's CPU (py-spy, issue
    18); growing pieces send 6 deltas for a 110-word answer instead of 19. Joined, they are the text."""
    words = text.split(" ")
    out: list[str] = []
    at, size = 0, _FIRST_DELTA_WORDS
    while at < len(words):
        piece = " ".join(words[at : at + size])
        out.append(piece if at == 0 else " " + piece)
        at, size = at + size, size * 3 // 2
    return out


def _anchor(sentence: str, title: str) -> str:
    """A sentence lifted out of its passage may open with "He" or "It"; name what it is about."""
    if _PRONOUN_START.match(sentence) and title and title != "Selected text":
        return f"In {title}, {sentence[0].lower()}{sentence[1:]}"
    return sentence
