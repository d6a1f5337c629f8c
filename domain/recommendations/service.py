"""Recommendations: gather candidates from every source, blend their scores, drop what the user
has seen, diversify with MMR, optionally re-rank, and say why each item is there.

Blending, per candidate (each source's score scaled to 0..1 over the candidates):
    profile × w_content + context × w_context + model × w_model + co-engagement × w_co
    + popular × w_popular(history)
The model's score is the trained item factors (`factors.py`) against the user's vector, folded in
from their events at this request, so it counts a like made a second ago. Popularity carries a
user with no history and fades as their likes accumulate. A dislike acts through the profile,
which it pushes away from the disliked document's neighbourhood, and through the fold-in, where
it is a negative observation. The weights
were chosen on the simulation's tuning seed (`python -m bench eval-recs --seed 1 --sweep`), not on the
reported one; see README, "Recommendation quality"."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from domain.error_codes import CommonErrorCode
from domain.errors import InvalidInput
from domain.feedback import profiles
from domain.feedback.profiles import LearningConfig, Vector, unit
from domain.paging import check_first
from domain.persistence.database import Database
from domain.persistence.tables import Document
from domain.providers.embedding import Embedder
from domain.recommendations import candidates, factors, reasons, sql
from domain.recommendations.error_codes import RecommendationErrorCode
from domain.recommendations.mmr import mmr
from domain.recommendations.sql import Executor
from domain.rerank.service import Reranking, RerankOutcome
from domain.rerank.service import Strategy as RerankStrategy
from domain.retrieval.filters import MetadataFilter, compile_filter

Strategy = Literal["BLENDED", "CONTENT", "COLLABORATIVE", "POPULAR"]
Source = Literal["PROFILE", "CONTEXT", "MODEL", "CO_ENGAGEMENT", "POPULAR"]
SOURCE_ORDER: tuple[Source, ...] = ("PROFILE", "CONTEXT", "MODEL", "CO_ENGAGEMENT", "POPULAR")
MAX_USER_ID_CHARS = 200


@dataclass(frozen=True)
class BlendWeights:
    content: float = 0.5  # similarity to the user's profile
    context: float = 2.5  # similarity to `context`: an explicit request outweighs history, the model
    # included (not tuned: the simulation has no context)
    model: float = 2.0  # the trained model's score for the user's folded-in vector
    co_engagement: float = 0.5
    popular: float = 0.3  # for a user with no likes; halved once they have `popular_half_at` likes
    popular_half_at: float = 3.0
    liked_similarity_reason: float = 0.35  # "similar to X, which you liked" only above this cosine
    liked_factor_reason: float = 0.3  # "because you liked X" only above this cosine in factor space


@dataclass(frozen=True)
class RecommendRequest:
    user_id: str
    context: str | None = None
    first: int = 10
    exclude_seen: bool = True
    diversity: float = 0.3
    filter: MetadataFilter | None = None
    rerank: RerankStrategy = "NONE"
    strategy: Strategy = "BLENDED"


@dataclass
class Recommended:
    document: Document
    score: float
    reasons: list[str]
    sources: list[Source]


@dataclass
class RecommendResult:
    items: list[Recommended]
    strategy: str
    sources: list[Source]
    query_id: uuid.UUID
    took_ms: float
    rerank: RerankOutcome | None = None


@dataclass
class _Signals:
    """Everything gathered for one request, before scoring."""

    ids: list[uuid.UUID]
    docs: dict[uuid.UUID, Document]
    vecs: dict[uuid.UUID, Vector]
    matrix: npt.NDArray[np.float64]  # the candidates' vectors, in `ids` order
    profile_sim: npt.NDArray[np.float64] | None
    context_sim: npt.NDArray[np.float64] | None
    co: dict[uuid.UUID, candidates.CoEngaged]
    model_score: npt.NDArray[np.float64] | None  # the model's score per candidate, None without a model
    item_factors: dict[uuid.UUID, npt.NDArray[np.float32]]  # candidates' and liked documents' factors
    popular: candidates.Popular | None
    liked: list[uuid.UUID]
    positives: int
    used: set[Source] = field(default_factory=set)


class Recommender:
    def __init__(
        self,
        *,
        db: Database,
        embedder: Embedder,
        reranking: Reranking,
        learning: LearningConfig,
        weights: BlendWeights | None = None,
        max_context_chars: int = 1000,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.reranking = reranking
        self.learning = learning
        self.weights = weights or BlendWeights()
        self.max_context_chars = max_context_chars

    def validate(self, req: RecommendRequest) -> RecommendRequest:
        user = req.user_id.strip()
        if not user or len(user) > MAX_USER_ID_CHARS:
            raise InvalidInput(
                CommonErrorCode.INVALID_USER_ID,
                f"userId must be 1 to {MAX_USER_ID_CHARS} characters of your app's user id",
                field="userId",
            )
        check_first(req.first)
        if not 0.0 <= req.diversity <= 1.0:
            raise InvalidInput(
                RecommendationErrorCode.INVALID_DIVERSITY,
                f"diversity must be between 0 (pure relevance) and 1 (most diverse), got {req.diversity}",
                field="options.diversity",
            )
        context = (req.context or "").strip() or None
        if context is not None and len(context) > self.max_context_chars:
            raise InvalidInput(
                RecommendationErrorCode.CONTEXT_TOO_LONG,
                f"context is {len(context)} characters; keep it under {self.max_context_chars}",
                field="context",
            )
        return replace(req, user_id=user, context=context)

    async def recommend(self, tenant_id: str, request: RecommendRequest) -> RecommendResult:
        started = time.perf_counter()
        req = self.validate(request)
        compiled = compile_filter(req.filter, alias="d", path="options.filter")
        wants_content = req.strategy in ("BLENDED", "CONTENT")
        context_vec = (
            unit(await self.embedder.embed_query(req.context)) if req.context is not None and wants_content else None
        )
        reranks = req.rerank != "NONE"
        keep = max(req.first, self.reranking.config.max_candidates) if reranks else req.first
        query_id = uuid.uuid4()
        # A bare tenant transaction (`Database.connection`): the same role, tenant scope and
        # row-level security as a session, without SQLAlchemy's begin, pre-ping and commit (1.0
        # of a request's 10-13 ms here: 1.49 against 0.48 ms for one statement's transaction).
        async with self.db.connection(tenant_id) as conn:
            signals = await self._gather(conn, tenant_id, req, context_vec, compiled, pool=max(50, 3 * keep))
            items = await self._rank(conn, tenant_id, signals, req, keep)
            if not reranks:
                items = items[: req.first]
                took_ms = (time.perf_counter() - started) * 1000
                await _log(conn, query_id, tenant_id, req, items, took_ms)
        outcome: RerankOutcome | None = None
        if reranks:
            outcome = await self._rerank(req, items, signals)
            items = [items[i] for i in outcome.order][: req.first]
            took_ms = (time.perf_counter() - started) * 1000
            async with self.db.connection(tenant_id) as conn:
                await _log(conn, query_id, tenant_id, req, items, took_ms)
        used = [s for s in SOURCE_ORDER if any(s in item.sources for item in items)]
        label = "+".join(s.lower().replace("_", "-") for s in used) or "nothing to recommend yet"
        return RecommendResult(items, f"{req.strategy.lower()}: {label}", used, query_id, took_ms, outcome)

    async def _gather(
        self,
        conn: Executor,
        tenant_id: str,
        req: RecommendRequest,
        context_vec: Vector | None,
        compiled: candidates.CompiledFilter,
        pool: int,
    ) -> _Signals:
        state = await candidates.user_state(conn, tenant_id, req.user_id)
        history, profile = state.history, state.profile
        exclude = history.seen if req.exclude_seen else []
        used: set[Source] = set()
        query_vec = profile_vec = None
        if req.strategy in ("BLENDED", "CONTENT"):
            query_vec, profile_vec, used = _query_vector(profile, context_vec)
        content_ids: list[uuid.UUID] = []
        if query_vec is not None:
            content_ids = await candidates.nearest(conn, tenant_id, query_vec, compiled, exclude, pool)
        co: dict[uuid.UUID, candidates.CoEngaged] = {}
        trained = None
        user_vec = None
        model_ids: list[uuid.UUID] = []
        if req.strategy in ("BLENDED", "COLLABORATIVE"):
            trained = await factors.loaded(conn, tenant_id, state.model_version, database=self.db.key)
            if trained is not None:
                # The fold-in: this user's vector from their events up to this one, so a like
                # made a second ago already moves the list, whenever the model was trained.
                user_vec = factors.user_vector(trained, history.signals)
                if user_vec is not None and not compiled.sql:
                    model_ids = factors.top_scored(trained, user_vec, exclude, pool)
                elif user_vec is not None:
                    model_ids = await factors.nearest_filtered(conn, trained, user_vec, compiled, exclude, pool)
            co = await candidates.co_engaged(
                conn,
                tenant_id,
                history.liked,
                compiled,
                exclude,
                pool,
                model_version=trained.version if trained else None,
                damping=trained.damping if trained else 0.8,
            )
            if co:
                used.add("CO_ENGAGEMENT")
        popular = None
        if req.strategy in ("BLENDED", "POPULAR"):
            popular = await candidates.popular(conn, tenant_id, compiled, exclude, pool, self.learning)
            if popular.scores:
                used.add("POPULAR")
        ids = list(dict.fromkeys([*model_ids, *content_ids, *co, *(popular.scores if popular else {})]))
        vecs = await candidates.vectors(conn, tenant_id, [*ids, *history.liked])
        ids = [i for i in ids if i in vecs]
        model_score = None
        item_f: dict[uuid.UUID, npt.NDArray[np.float32]] = {}
        if trained is not None and user_vec is not None:
            item_f = trained.factors_of([*ids, *history.liked])
            raw = np.array([float(item_f[i] @ user_vec) if i in item_f else np.nan for i in ids])
            # An item with no factors yet (no events at training time) ranks as the model's
            # weakest candidate: content, context and popularity can still carry it.
            floor = float(np.nanmin(raw)) if np.isfinite(raw).any() else 0.0
            model_score = np.where(np.isfinite(raw), raw, floor)
            used.add("MODEL")

        # One row per candidate, unit length: similarities and MMR both read it.
        matrix = np.stack([vecs[i] for i in ids]).astype(np.float64) if ids else np.zeros((0, 0))

        def similarity(to: Vector | None) -> npt.NDArray[np.float64] | None:
            return None if to is None or not ids else matrix @ to.astype(np.float64)

        return _Signals(
            ids=ids,
            docs={},
            vecs=vecs,
            matrix=matrix,
            profile_sim=similarity(profile_vec),
            context_sim=similarity(context_vec if "CONTEXT" in used else None),
            co=co,
            model_score=model_score,
            item_factors=item_f,
            popular=popular,
            liked=[i for i in history.liked if i in vecs],
            positives=profile.positives if profile else 0,
            used=used,
        )

    async def _rank(
        self, conn: Executor, tenant_id: str, s: _Signals, req: RecommendRequest, keep: int
    ) -> list[Recommended]:
        if not s.ids:
            return []
        w = self.weights
        n = len(s.ids)
        zeros = np.zeros(n)
        co = _scaled(np.array([s.co[i].score if i in s.co else 0.0 for i in s.ids]), floor_zero=True)
        pop_scores = s.popular.scores if s.popular else {}
        pop = _scaled(np.array([pop_scores.get(i, 0.0) for i in s.ids]), floor_zero=True)
        w_pop = w.popular * w.popular_half_at / (w.popular_half_at + s.positives)
        if req.strategy != "BLENDED":
            w_pop = 1.0  # a single-source strategy is that source's order, unweighted
        parts: dict[str, npt.NDArray[np.float64]] = {
            "profile": w.content * _scaled(s.profile_sim) if s.profile_sim is not None else zeros,
            "context": w.context * _scaled(s.context_sim) if s.context_sim is not None else zeros,
            "model": w.model * _scaled(s.model_score) if s.model_score is not None else zeros,
            "co": w.co_engagement * co,
            "pop": w_pop * pop,
        }
        total = parts["profile"] + parts["context"] + parts["model"] + parts["co"] + parts["pop"]
        order = mmr(total, s.matrix, keep, req.diversity)
        # Rows only for what is shown and what reasons name (the liked documents), not every candidate.
        wanted = [*(s.ids[i] for i in order), *s.liked]
        s.docs = await sql.documents_by_id(conn, tenant_id, wanted)
        order = [i for i in order if s.ids[i] in s.docs]  # deleted meanwhile
        similar = self._similar_liked(s, order)
        because = self._because(s, order)
        return [
            self._item(
                s, req, idx, float(total[idx]), {k: float(v[idx]) for k, v in parts.items()}, similar[n], because[n]
            )
            for n, idx in enumerate(order)
        ]

    def _item(
        self,
        s: _Signals,
        req: RecommendRequest,
        idx: int,
        score: float,
        parts: dict[str, float],
        similar: uuid.UUID | None,
        because: uuid.UUID | None,
    ) -> Recommended:
        doc_id = s.ids[idx]
        doc = s.docs[doc_id]
        why: list[tuple[float, str, Source]] = []
        if parts["context"] > 0 and req.context:
            why.append((parts["context"], reasons.matches_context(doc, req.context), "CONTEXT"))
        if parts["profile"] > 0 and similar is not None:
            why.append((parts["profile"], reasons.similar_to_liked(s.docs[similar].title), "PROFILE"))
        if parts["model"] > 0 and because is not None:
            why.append((parts["model"], reasons.because_you_liked(s.docs[because].title), "MODEL"))
        if parts["co"] > 0 and doc_id in s.co and s.co[doc_id].because in s.docs:
            why.append((parts["co"], reasons.liked_together(s.docs[s.co[doc_id].because].title), "CO_ENGAGEMENT"))
        if parts["pop"] > 0 and s.popular is not None:
            why.append((parts["pop"], reasons.popular(doc, s.popular.by_feedback), "POPULAR"))
        why.sort(key=lambda t: -t[0])
        contributed = {
            "PROFILE": parts["profile"],
            "CONTEXT": parts["context"],
            "MODEL": parts["model"],
            "CO_ENGAGEMENT": parts["co"],
        }
        sources = {src for _, _, src in why} | {src for src, part in contributed.items() if part > 0}
        texts = [text for _, text, _ in why][:3] or ["recommended for you"]
        return Recommended(document=doc, score=score, reasons=texts, sources=[x for x in SOURCE_ORDER if x in sources])

    def _similar_liked(self, s: _Signals, order: list[int]) -> list[uuid.UUID | None]:
        """Per shown item, the liked document closest to it in content (cosine), if close enough
        and still there: one matrix product for the whole list."""
        if not s.liked or not order:
            return [None] * len(order)
        liked = np.stack([s.vecs[i] for i in s.liked]).astype(np.float64)
        sims = s.matrix[order] @ liked.T
        best = np.argmax(sims, axis=1)
        out: list[uuid.UUID | None] = []
        for n, b in enumerate(best):
            found = s.liked[int(b)]
            ok = sims[n, b] >= self.weights.liked_similarity_reason and found in s.docs
            out.append(found if ok else None)
        return out

    def _because(self, s: _Signals, order: list[int]) -> list[uuid.UUID | None]:
        """Per shown item, the liked document most similar to it in the model's factor space
        (cosine), if similar enough: one matrix product for the whole list."""
        liked = [i for i in s.liked if i in s.item_factors and i in s.docs]
        shown = [s.ids[i] for i in order]
        if not liked or not shown:
            return [None] * len(order)
        theirs = np.stack([s.item_factors[i] for i in liked]).astype(np.float64)
        theirs /= np.where((norm := np.linalg.norm(theirs, axis=1, keepdims=True)) > 0, norm, 1.0)
        out: list[uuid.UUID | None] = []
        for doc_id in shown:
            mine = s.item_factors.get(doc_id)
            if mine is None:
                out.append(None)
                continue
            length = float(np.linalg.norm(mine))
            cosine = theirs @ (mine.astype(np.float64) / (length if length > 0 else 1.0))
            best = int(np.argmax(cosine))
            out.append(liked[best] if cosine[best] >= self.weights.liked_factor_reason else None)
        return out

    async def _rerank(self, req: RecommendRequest, items: list[Recommended], s: _Signals) -> RerankOutcome:
        liked = [s.docs[i].title for i in s.liked[:10] if i in s.docs]
        profile = []
        if liked:
            profile.append("The user liked: " + "; ".join(liked) + ".")
        if req.context:
            profile.append(f"The user asked for: {req.context}")
        texts = [f"{it.document.title}\n{it.document.text[:600]}" for it in items]
        query = req.context or "Which of these would this user most enjoy next?"
        return await self.reranking.rerank(req.rerank, query, texts, context=" ".join(profile) or None)


def _query_vector(
    profile: profiles.Profile | None, context_vec: Vector | None
) -> tuple[Vector | None, Vector | None, set[Source]]:
    """The candidates' query (the profile's direction, the context's, or their even blend), and
    the profile's direction alone."""
    used: set[Source] = set()
    parts: list[Vector] = []
    pref = None
    if profile is not None and profile.positives > 0 and profile.preference is not None:
        pref = unit(profile.preference)
        if float(np.linalg.norm(pref)) > 0:
            parts.append(pref)
            used.add("PROFILE")
        else:
            pref = None
    if context_vec is not None:
        parts.append(context_vec)
        used.add("CONTEXT")
    if not parts:
        return None, None, used
    return unit(np.sum(parts, axis=0)), pref, used


def _scaled(values: npt.NDArray[np.float64], *, floor_zero: bool = False) -> npt.NDArray[np.float64]:
    """0..1 over the candidates. With `floor_zero`, 0 stays 0 (absent from that source)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    low = 0.0 if floor_zero else float(values.min())
    high = float(values.max())
    if high - low <= 0:
        return np.zeros_like(values) if floor_zero and high <= 0 else np.ones_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


async def _log(
    conn: Executor,
    query_id: uuid.UUID,
    tenant_id: str,
    req: RecommendRequest,
    items: list[Recommended],
    took_ms: float,
) -> None:
    """The query-log row that ties later clicks to this list (one INSERT on the request's
    connection; building it as an ORM object and flushing it was 5% of a request's CPU)."""
    options = {
        "strategy": req.strategy,
        "first": req.first,
        "diversity": req.diversity,
        "excludeSeen": req.exclude_seen,
        "filtered": req.filter is not None,
        "rerank": req.rerank,
    }
    await sql.fetch(
        conn,
        """
        INSERT INTO query_log (id, tenant_id, query, mode, options, result_count, document_ids, took_ms)
        VALUES (:id, :t, :q, 'RECOMMEND', CAST(:options AS jsonb), :n, CAST(:docs AS text[]), :took)
        """,
        {
            "id": query_id,
            "t": tenant_id,
            "q": req.context or "",
            "options": json.dumps(options),
            "n": len(items),
            "docs": [str(i.document.id) for i in items],
            "took": took_ms,
        },
    )
