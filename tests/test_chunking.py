"""Table-driven tests of token-aware chunking (a word counter stands in for the tokenizer)."""

from __future__ import annotations

import pytest

from domain.documents.chunking import chunk_document, split_sentences


def words(text: str) -> int:
    return len(text.split())


def sentence(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n - 1)) + " end."


@pytest.mark.parametrize(
    ("sentences", "max_tokens", "overlap", "expected_chunks"),
    [
        ([5, 5], 40, 0, 1),  # fits in one chunk
        ([10, 10, 10], 25, 0, 2),  # the title costs 3 tokens: budget 22 holds two sentences
        ([10] * 6, 35, 0, 2),  # budget 32: three sentences per chunk
        ([10] * 6, 35, 10, 3),  # overlap carries the last sentence forward: [0 1 2] [2 3 4] [4 5]
    ],
)
def test_chunk_counts(sentences: list[int], max_tokens: int, overlap: int, expected_chunks: int) -> None:
    text = " ".join(sentence(n, f"S{i}w") for i, n in enumerate(sentences))
    chunks = chunk_document("My Title", text, max_tokens=max_tokens, overlap_tokens=overlap, count=words)
    assert len(chunks) == expected_chunks
    for c in chunks:
        assert c.token_count <= max_tokens
        assert c.search_text.startswith("My Title\n")
        assert c.search_text.endswith(c.text)
    assert [c.ordinal for c in chunks] == list(range(expected_chunks))


def test_overlap_repeats_trailing_sentence() -> None:
    text = " ".join(sentence(10, f"S{i}w") for i in range(4))
    chunks = chunk_document("T", text, max_tokens=32, overlap_tokens=10, count=words)
    first_last_sentence = split_sentences(chunks[0].text)[-1]
    assert chunks[1].text.startswith(first_last_sentence)


def test_every_sentence_is_kept() -> None:
    parts = [sentence(7, f"S{i}w") for i in range(9)]
    chunks = chunk_document("T", " ".join(parts), max_tokens=20, overlap_tokens=0, count=words)
    joined = " ".join(c.text for c in chunks)
    for p in parts:
        assert p in joined


def test_long_sentence_is_split_on_words() -> None:
    text = " ".join(f"w{i}" for i in range(100)) + "."
    chunks = chunk_document("T", text, max_tokens=30, overlap_tokens=0, count=words)
    assert len(chunks) >= 4
    assert all(c.token_count <= 30 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? four", ["One.", "Two!", "Three? four"]),
        ("Dr. smith arrived. He left.", ["Dr. smith arrived.", "He left."]),
        ("Para one\n\nPara two", ["Para one", "Para two"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
