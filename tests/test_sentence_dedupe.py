"""Sentences that overlapping chunks share are embedded once (the real int8 encoder, its counts)."""

from __future__ import annotations

import numpy as np

from api.settings import Settings
from domain.answers.sentence_vectors import embed_passages, split_passage
from domain.providers.onnx_embedder import OnnxEmbedder
from domain.providers.onnx_export import ensure_exported

FIRST = "Otters float on their backs. They hold hands while they sleep."
SHARED = "Kelp keeps them in place overnight."
LAST = "Sea urchins are their favourite food."


async def test_a_sentence_two_chunks_share_is_embedded_once_and_given_to_both() -> None:
    encoder = OnnxEmbedder(ensure_exported(Settings().model_cache_dir, "onnx-int8"), threads=1)
    # given: two neighbouring chunks, the second carrying the first's last sentence (chunk overlap)
    passages = [f"{FIRST} {SHARED}", f"{SHARED} {LAST}"]
    encoder.reset_stats()
    # when: their sentences are embedded for answers
    first, second = await embed_passages(encoder, passages, background=True)
    # then: four distinct sentences ran through the encoder, not five
    assert encoder.reset_stats().rows == 4
    # and each passage has its own split, each sentence its own vector, the shared one the same in both
    assert first.sentences == split_passage(passages[0]) and second.sentences == split_passage(passages[1])
    assert first.vectors.shape == (3, 384) and second.vectors.shape == (2, 384)
    np.testing.assert_array_equal(first.vectors[2], second.vectors[0])
    assert float(first.vectors[0] @ second.vectors[1]) < 0.99
    alone = await encoder.embed([FIRST.split(". ")[0] + ".", LAST])
    assert float(alone[0] @ first.vectors[0]) > 0.99 and float(alone[1] @ second.vectors[1]) > 0.99
