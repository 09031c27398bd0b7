"""Shared by the benchmark scripts: each owns one marked section of a docs page
(docs/benchmarks.md unless told otherwise)."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, text: str, doc_path: Path = DOC) -> None:
    """Replace the section `name` of `doc_path` (appending it if new)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    doc = doc_path.read_text() if doc_path.exists() else "# Benchmarks\n"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    doc_path.write_text(doc)
    print(f"wrote section {name!r} of {doc_path}")
