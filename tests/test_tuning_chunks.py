"""The chunk-size sweep's offline pieces: the corpus chunked as ingestion chunks it, and the
z-score fusion whose statistics come from each leg's head only."""

from __future__ import annotations

import pytest

from bench.chunkings import chunk_corpus
from bench.tuning_chunks import zscore_filled, zscore_top
from domain.retrieval.fusion import fuse


def words(text: str) -> int:
    return len(text.split())


SENTENCE = "One two three four five six seven eight nine ten."


def test_chunk_corpus_gives_each_chunk_its_document_and_title() -> None:
    corpus = [
        {"_id": "d1", "title": "Alpha", "text": " ".join(SENTENCE for _ in range(3))},
        {"_id": "d2", "title": "", "text": "short one."},
    ]
    # 20 tokens less the title's 2 leave 18: one 10-word sentence per chunk, none carried over.
    ids, texts = chunk_corpus(corpus, words, 20, 0)
    assert ids == ["d1", "d1", "d1", "d2"]
    assert all(t.startswith("Alpha\n") for t in texts[:3])
    assert texts[3] == "d2\nshort one."  # a missing title falls back to the id, as the eval ingests


def test_zscore_top_over_every_document_is_the_served_zscore() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1, "e": 0.3}
    keyword = {"b": 12.0, "d": 6.0, "c": 1.0}
    served = fuse(dense, keyword, method="ZSCORE", alpha=0.4)
    assert zscore_top(dense, keyword, 0.4, 100) == pytest.approx(served)


def test_zscore_top_takes_the_scale_from_the_head_only() -> None:
    # The tail (e, f) is far below the head: over all four documents the head's gap looks small.
    dense = {"a": 1.0, "b": 0.9, "e": 0.0, "f": 0.0}
    head = zscore_top(dense, {}, 1.0, 2)
    assert head["a"] - head["b"] == pytest.approx(2.0)  # the head alone: mean 0.95, std 0.05
    full = zscore_top(dense, {}, 1.0, 4)
    assert full["a"] - full["b"] < 0.5


def test_zscore_filled_lifts_a_keyword_only_document_by_its_real_dense_score() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    keyword = {"d": 10.0, "e": 9.9, "c": 1.0}
    # Without its dense score, d sits at the dense floor; with a real 0.8 it overtakes e (0.0).
    floored = zscore_filled(dense, keyword, {}, 0.5)
    filled = zscore_filled(dense, keyword, {"d": 0.8, "e": 0.0}, 0.5)
    assert floored == pytest.approx(fuse(dense, keyword, method="ZSCORE", alpha=0.5))
    assert filled["d"] > floored["d"]
    assert filled["e"] < floored["e"]  # below the leg's floor: its real score is lower still
