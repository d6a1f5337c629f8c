"""PDF files built by hand, so the tests need no PDF writer: the objects are the test's own, the
file around them (object headers, xref table, trailer) is written here once."""

from __future__ import annotations


def pdf_file(objects: list[bytes], *, declared_xref_size: int | None = None) -> bytes:
    """Objects 1..n (the first must be the catalog) as a PDF file; `declared_xref_size` makes the
    xref table claim more entries than the file holds, as a damaged or hostile file would."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (declared_xref_size or len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
