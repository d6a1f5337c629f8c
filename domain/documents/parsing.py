"""Turn uploaded files into (title, text). Only formats we can read well are accepted."""

from __future__ import annotations

import io
import re
from pathlib import PurePath

from domain.documents.error_codes import DocumentErrorCode
from domain.errors import InvalidInput

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


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
    body = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", body)  # links and images keep their text
    body = re.sub(r"[*_`]{1,3}", "", body)
    return (heading.group(1).strip() if heading else fallback), body


def _html(text: str, fallback: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(strip=True)
    body = soup.body or soup
    return title or fallback, body.get_text("\n", strip=True)


def _pdf(data: bytes, fallback: str, path: str) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or fallback
    except (PdfReadError, ValueError, KeyError) as exc:
        raise InvalidInput(
            DocumentErrorCode.UNREADABLE_FILE, f"the PDF could not be read ({exc}); is it damaged?", field=path
        ) from exc
    return str(title), "\n\n".join(pages)


def parse_upload(filename: str, data: bytes, *, max_bytes: int, path: str) -> tuple[str, str]:
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
    if suffix == ".pdf":
        title, text = _pdf(data, stem, path)
    else:
        decoded = _decode(data, path)
        if suffix in (".md", ".markdown"):
            title, text = _markdown(decoded, stem)
        elif suffix in (".html", ".htm"):
            title, text = _html(decoded, stem)
        else:
            title, text = stem, decoded
    # PostgreSQL text can't hold NUL; extracted text (PDFs, odd encodings) sometimes carries some.
    title, text = title.replace("\x00", ""), text.replace("\x00", "")
    if not text.strip():
        raise InvalidInput(DocumentErrorCode.EMPTY_FILE, f"{filename!r} contains no text to index", field=path)
    return title, text
