"""The repository stands alone: code and documents cite the project's own documents (never a
path outside the repository), and every section they cite exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

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


#: commands the documents show failing on purpose (an error message's example)
SHOWN_FAILING = {"mdm apps install APP --device A --devices B"}


def _documented_commands() -> list[tuple[str, str]]:
    """Every ``mdm ...`` the README and docs/ show: inline code and the lines of code blocks."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
        prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
        spans = [" ".join(code.split()) for _, code in re.findall(r"(`+)(.+?)\1", prose, re.S)]
        lines = [re.sub(r"^(\$ |\* \* \* \* \* +cd \S+ && )", "", line.strip()) for block in blocks for line in block.splitlines()]
        for command in spans + [line.split(" #")[0] for line in lines]:
            command = command.removeprefix(".venv/bin/")
            if command.startswith("mdm ") and command.strip() not in SHOWN_FAILING:
                found.append((doc.name, command.strip()))
    return found


def _unknown_words(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """The commands and options of ``command`` that ``parser`` does not have (placeholders such as
    NAME, values and the text after a ``,``/``;``/``:``, an error message's, are not read)."""
    always = {"--help", "--config", "--verbose", "--quiet", "--version"}
    unknown = []
    for word in command.split()[1:]:
        subcommands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        options = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", word)
        unknown += [o for o in options if o not in always and o not in parser._option_string_actions]
        name = word.strip("[](),;:.`'\"")
        if not options and subcommands and re.fullmatch(r"[a-z][a-z0-9_-]*(\\?\|[a-z][a-z0-9_-]*)*", name):
            names = re.split(r"\\?\|", name)
            unknown += [f"command {n!r}" for n in names if n not in subcommands]
            if len(names) > 1 or names[0] not in subcommands:
                break  # several commands at once (`mdm vpp assets|users`): nothing more to follow
            parser = subcommands[name]
        if word[-1] in ",;:":
            break  # the end of the command: what follows is prose or a message
    return unknown


def test_every_documented_command_and_option_exists(make_host) -> None:
    """An admin following the README or docs/ runs commands that exist, with options they take
    (the Retention table sent people to `mdm vpp accounts`, which is `mdm vpp account list`)."""
    from mdm_core.cli import build_parser

    host = make_host(config='[plugins]\nenabled = ["plugins.examples.device_notes", "plugins.examples.license_audit"]\n')
    parser = build_parser(host)
    commands = _documented_commands()
    assert len(commands) > 200 and ("README.md", "mdm vpp account list [--json]") in commands
    wrong = [f"{doc}: `{command}`: {', '.join(unknown)}" for doc, command in commands if (unknown := _unknown_words(parser, command))]
    assert wrong == []


@pytest.mark.slow  # the whole demo (a second or two)
def test_the_readme_demo_syncs_are_what_the_demo_prints(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's sample of `mdm demo`'s two syncs is the demo's current report, but for the
    times (it showed 5 pages for the incremental sync, which reads 6)."""
    from mdm_core.cli import main

    def reports(text: str) -> list[str]:
        return [re.sub(r" in [\d.]+s,", " in Ts,", line) for line in text.splitlines() if re.match(r"demo: \w+ sync ok in ", line)]

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"From the demo \(.*?```console\n(.*?)```", readme, re.S)
    assert sample is not None and len(reports(sample.group(1))) == 2
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    capsys.readouterr()
    assert main(["--config", str(conf), "demo"]) == 0
    assert reports(capsys.readouterr().out) == reports(sample.group(1))
