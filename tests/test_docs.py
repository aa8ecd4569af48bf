"""The repository stands alone: code and documents cite the project's own documents (never a
path outside the repository), and every section they cite exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("mdm_core", "plugins", "tests", "bench", "docs", "conf") for p in (ROOT / folder).rglob("*")
           if p.suffix in (".py", ".md", ".toml")] + [ROOT / "README.md"]


def test_nothing_cites_a_path_outside_the_repository() -> None:
    outside = re.compile(r"/work/|/home/\w|/Users/\w")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if p != Path(__file__) and outside.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_cited_sections_of_the_docs_exist() -> None:
    """``docs/apple-api.md, "Section"`` (or ``("A", "B")``) names headings of that document."""
    headings = {doc.name: {line.lstrip("#").strip() for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("#")}
                for doc in (ROOT / "docs").glob("*.md")}
    cited = re.compile(r"docs/([\w-]+\.md),?\s*\(?((?:\"[^\"]+\"(?:,\s*|\s+and\s+)?)+)", re.S)
    missing = []
    for path in (p for p in SOURCES if p != Path(__file__)):
        for doc, names in cited.findall(" ".join(path.read_text(encoding="utf-8").split())):
            for name in re.findall(r"\"([^\"]+)\"", names):
                if name not in headings.get(doc, set()):
                    missing.append(f"{path.relative_to(ROOT)}: {doc} has no section {name!r}")
    assert missing == []
