"""Turn uploaded files into (title, text). Only formats we can read well are accepted.

Every parse is linear in the file's size and has a budget (`ParseBudget`): a deadline, checked
between PDF pages and before each step, a page limit and a limit on the extracted text. The
service runs it off the event loop (`parse_upload_off_loop`), so one slow file never stalls the
server. Any failure of a parser on a file is that file's error (UNREADABLE_FILE), never the batch's.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import PurePath

from domain.documents.error_codes import DocumentErrorCode
from domain.errors import InvalidInput

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
log = logging.getLogger("ragql.documents")

# Links and images keep their text. The brackets' contents exclude brackets and are bounded, so a
# run of `[` fails at once at each position: linear, where `\[([^\]]*)\]` was quadratic.
_LINK = re.compile(r"!?\[([^\[\]\n]{0,1000})\]\([^()\s]{0,2048}\)")


@dataclass(frozen=True)
class ParseBudget:
    seconds: float = 10.0
    max_pages: int = 2000
    max_chars: int = 2_000_000


class _Clock:
    def __init__(self, budget: ParseBudget, path: str) -> None:
        self.budget, self.path = budget, path
        self.deadline = time.monotonic() + budget.seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise InvalidInput(
                DocumentErrorCode.UNREADABLE_FILE,
                f"reading the file took over {self.budget.seconds:g} s (RAGQL_PARSE_TIMEOUT_S); split or simplify it",
                field=self.path,
            )


def _decode(data: bytes, path: str) -> str:
    for encoding in ("utf-8", "utf-16"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(DocumentErrorCode.UNREADABLE_FILE, "the file is not UTF-8 text; re-save it as UTF-8", field=path)


def _markdown(text: str, fallback: str) -> tuple[str, str]:
    heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    body = re.sub(r"^#{1,6}\s+", "", text, flags=re.MULTILINE)
    body = _LINK.sub(r"\1", body)
    body = re.sub(r"[*_`]{1,3}", "", body)
    return (heading.group(1).strip() if heading else fallback), body


def _html(text: str, fallback: str) -> tuple[str, str]:
    # Lexbor (selectolax): a linear-time HTML5 parser. Python 3.11's html.parser, under bs4, is
    # quadratic on inputs like `<a ` repeated.
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    if not title and (h1 := tree.css_first("h1")):
        title = h1.text(strip=True)
    root = tree.body or tree.root
    body = root.text(separator="\n", strip=True) if root is not None else ""
    return title or fallback, body


def _pdf(data: bytes, fallback: str, clock: _Clock) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if len(reader.pages) > clock.budget.max_pages:
        raise InvalidInput(
            DocumentErrorCode.FILE_TOO_LARGE,
            f"the PDF has {len(reader.pages)} pages; the limit is {clock.budget.max_pages}: split it",
            field=clock.path,
        )
    pages: list[str] = []
    size = 0
    for page in reader.pages:
        clock.check()
        extracted = page.extract_text() or ""
        size += len(extracted)
        if size > clock.budget.max_chars:
            raise InvalidInput(
                DocumentErrorCode.DOCUMENT_TOO_LARGE,
                f"the PDF holds over {clock.budget.max_chars} characters of text; split it",
                field=clock.path,
            )
        pages.append(extracted)
    title = (reader.metadata.title if reader.metadata else None) or fallback
    return str(title), "\n\n".join(pages)


def _parse(suffix: str, data: bytes, stem: str, clock: _Clock) -> tuple[str, str]:
    if suffix == ".pdf":
        return _pdf(data, stem, clock)
    decoded = _decode(data, clock.path)
    clock.check()
    if suffix in (".md", ".markdown"):
        return _markdown(decoded, stem)
    if suffix in (".html", ".htm"):
        return _html(decoded, stem)
    return stem, decoded


def parse_upload(
    filename: str, data: bytes, *, max_bytes: int, path: str, budget: ParseBudget | None = None
) -> tuple[str, str]:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUPPORTED:
        raise InvalidInput(
            DocumentErrorCode.UNSUPPORTED_FILE_TYPE,
            f"{filename!r} has type {suffix or '(none)'}; upload one of {', '.join(SUPPORTED)}",
            field=path,
        )
    if len(data) > max_bytes:
        raise InvalidInput(
            DocumentErrorCode.FILE_TOO_LARGE,
            f"{filename!r} is {len(data)} bytes; the limit is {max_bytes} (RAGQL_MAX_UPLOAD_BYTES)",
            field=path,
        )
    stem = PurePath(filename).stem
    clock = _Clock(budget or ParseBudget(), path)
    try:
        title, text = _parse(suffix, data, stem, clock)
    except InvalidInput:
        raise
    except Exception as exc:
        log.info("unreadable upload %s: %s", path, type(exc).__name__)
        raise InvalidInput(
            DocumentErrorCode.UNREADABLE_FILE,
            f"{filename!r} could not be read ({type(exc).__name__}); is it damaged?",
            field=path,
        ) from exc
    clock.check()
    # PostgreSQL text can't hold NUL; extracted text (PDFs, odd encodings) sometimes carries some.
    title, text = title.replace("\x00", ""), text.replace("\x00", "")
    if not text.strip():
        raise InvalidInput(DocumentErrorCode.EMPTY_FILE, f"{filename!r} contains no text to index", field=path)
    return title, text


async def parse_upload_off_loop(
    filename: str, data: bytes, *, max_bytes: int, path: str, budget: ParseBudget | None = None
) -> tuple[str, str]:
    """`parse_upload` in a worker thread: the event loop keeps serving while a file is read."""
    return await asyncio.to_thread(parse_upload, filename, data, max_bytes=max_bytes, path=path, budget=budget)
