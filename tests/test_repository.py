"""What the repository tracks stands alone: no symbolic link (a link to a path of one machine
broke every fresh clone's `.ci/run` once: a committed `.venv` link), nothing of the ignored
environment or data folders."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEVER_TRACKED = (".venv", "var", "build")  # made by .ci/run, mdm and the build on each machine


def tracked() -> list[tuple[str, str]]:
    """(git mode, path) of every file the repository tracks."""
    listing = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    entries = []
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        entries.append((meta.split()[0], path))
    return entries


def test_the_repository_tracks_no_link_and_no_machine_folder() -> None:
    entries = tracked()
    assert len(entries) > 100  # the listing is the repository's
    links = [path for mode, path in entries if mode == "120000"]
    assert not links, f"symbolic links are tracked (they point into one machine): {links}"
    local = [path for _, path in entries if path.split("/")[0] in NEVER_TRACKED]
    assert not local, f"files of a machine's own folders are tracked: {local[:5]}"
