"""The demo film catalogue that ships with ragql, loaded on first start."""

from __future__ import annotations

import json
from pathlib import Path

from domain.documents.validation import DocumentInput

CATALOGUE = Path(__file__).with_name("films.jsonl")


def demo_documents() -> list[DocumentInput]:
    out = []
    with CATALOGUE.open(encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            out.append(
                DocumentInput(
                    title=item["title"],
                    text=item["text"],
                    external_id=item["externalId"],
                    metadata=item["metadata"],
                )
            )
    return out
