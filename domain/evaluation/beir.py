"""A BEIR-format folder: `corpus.jsonl` ({"_id", "title", "text"} per line), `queries.jsonl`
({"_id", "text"}) and `qrels/<split>.tsv` (query-id, corpus-id, score, with a header row).

Served code (`ragql eval`) and the checkout's benches (`python -m bench eval|tune`) both read it
here. A malformed folder is a coded error naming the file and, for a bad line, its number."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.errors import InvalidInput
from domain.evaluation.error_codes import EvaluationErrorCode

# Relative to the working directory, as `make eval` runs from the checkout: shared/ sits beside it.
DEFAULT_DATASET = Path("../shared/data/beir/scifact")


@dataclass(frozen=True)
class BeirDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirSet:
    corpus: list[BeirDocument]
    queries: dict[str, str]  # every query of the folder, whatever the split
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: graded relevance}, this split only

    def judged_queries(self) -> list[str]:
        """The split's queries that have text, in a fixed order."""
        return sorted(q for q in self.qrels if q in self.queries)


def _require(path: Path) -> Path:
    if not path.is_file():
        raise InvalidInput(
            EvaluationErrorCode.DATASET_FILE_MISSING,
            f"{path} is missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv",
            field=path.name,
        )
    return path


def _objects(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    with _require(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(
                    EvaluationErrorCode.DATASET_INVALID_LINE, f"{where} is not JSON ({exc.msg})", field=where
                ) from exc
            if not isinstance(obj, dict) or any(key not in obj for key in required):
                raise InvalidInput(
                    EvaluationErrorCode.DATASET_INVALID_LINE,
                    f"{where} is not a JSON object with {', '.join(required)}",
                    field=where,
                )
            yield obj


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with _require(path).open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(reader, start=1):
            if not row or (number == 1 and row[:2] == ["query-id", "corpus-id"]):
                continue
            where = f"qrels/{path.name} line {number}"
            try:
                query_id, corpus_id, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise InvalidInput(
                    EvaluationErrorCode.DATASET_INVALID_LINE,
                    f"{where} is not query-id<TAB>corpus-id<TAB>integer score",
                    field=where,
                ) from exc
            out[query_id][corpus_id] = score
    return dict(out)


def load_beir(folder: Path, split: str = "test") -> BeirSet:
    if not folder.is_dir():
        raise InvalidInput(
            EvaluationErrorCode.DATASET_NOT_FOUND,
            f"{folder} is not a folder; pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)",
            field="path",
        )
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        _require(path)  # every file named up front, before minutes of reading the corpus
    corpus = [
        BeirDocument(str(o["_id"]), str(o.get("title") or ""), str(o.get("text") or ""))
        for o in _objects(corpus_path, ("_id",))
    ]
    queries = {str(o["_id"]): str(o["text"]) for o in _objects(queries_path, ("_id", "text"))}
    beir = BeirSet(corpus, queries, _qrels(qrels_path))
    if not corpus or not beir.judged_queries():
        raise InvalidInput(
            EvaluationErrorCode.DATASET_EMPTY,
            f"{folder} has {len(corpus)} documents and {len(beir.judged_queries())} judged {split} queries; "
            "it needs at least one of each",
            field="path",
        )
    return beir
