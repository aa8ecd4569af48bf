"""The repository stands alone: code and documents cite the project's own documents (never a
path outside the repository), and every section they cite exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p for folder in ("mdm_core", "plugins", "tests", "bench", "docs", "conf") for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")
] + [ROOT / "README.md"]


def test_nothing_cites_a_path_outside_the_repository() -> None:
    outside = re.compile(r"/work/|/home/\w|/Users/\w")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if p != Path(__file__) and outside.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_cited_sections_of_the_docs_exist() -> None:
    """``docs/apple-api.md, "Section"`` (or ``("A", "B")``) names headings of that document."""
    headings = {
        doc.name: {line.lstrip("#").strip() for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("#")}
        for doc in (ROOT / "docs").glob("*.md")
    }
    cited = re.compile(r"docs/([\w-]+\.md),?\s*\(?((?:\"[^\"]+\"(?:,\s*|\s+and\s+)?)+)", re.S)
    missing = []
    for path in (p for p in SOURCES if p != Path(__file__)):
        for doc, names in cited.findall(" ".join(path.read_text(encoding="utf-8").split())):
            for name in re.findall(r"\"([^\"]+)\"", names):
                if name not in headings.get(doc, set()):
                    missing.append(f"{path.relative_to(ROOT)}: {doc} has no section {name!r}")
    assert missing == []


def test_the_readme_documents_every_event_and_hook(make_host) -> None:
    """Every hook the installed plugins declare (events included) is named in the README."""
    host = make_host()  # the installed plugins, as `mdm` loads them
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    declared = sorted(n for n in dir(host.pm.hook) if n.startswith("mdm_") and getattr(host.pm.hook, n).spec is not None)
    events = [n for n in declared if list(getattr(host.pm.hook, n).spec.argnames) == ["host", "event"]]
    assert {"mdm_mobile_apps_app_published", "mdm_device_enrolled", "mdm_vpp_assets_added"} <= set(events)
    missing = [n for n in declared if f"`{n}`" not in readme and not re.search(rf"`{n}\(", readme)]
    assert missing == []


def test_the_readme_plugin_pyproject_is_complete() -> None:
    import tomllib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[build-system]" in b)
    project = tomllib.loads(block)
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["name"] and project["project"]["version"] and "mdm-host" in project["project"]["dependencies"][0]
    assert project["project"]["entry-points"]["mdm.plugins"] == {"widgets": "mdm_widgets.plugin"}


def test_the_apple_reference_names_its_public_sources() -> None:
    """What the code relies on from Apple comes with where Apple says it (issue 12)."""
    text = (ROOT / "docs" / "apple-api.md").read_text(encoding="utf-8")
    assert "https://developer.apple.com/documentation/devicemanagement/" in text
    assert "https://github.com/apple/device-management" in text
    for schema in ("application.install.yaml", "media.install.yaml", "application.remove.yaml"):
        assert schema in text
