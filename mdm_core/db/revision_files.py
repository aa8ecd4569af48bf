"""What is wrong with a history's migration files when Alembic cannot read them, in one line.

Alembic reads a folder by running every file in it, and a file written by hand without
``down_revision`` (or naming a revision the folder lacks, or a number instead of text) stopped
every command with Alembic's own ``AttributeError: module '0002_widget_color_py' has no
attribute 'down_revision'`` or ``KeyError: '0009'``. :func:`explain` reads the files without
running them and names the file, what it lacks and the line to write.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

_MISSING = object()
_NOT_LITERAL = object()
#: a top-level ``revision = ...`` or ``down_revision: ... = ...`` line, as `mdm db revision`
#: and Alembic's template write them (an annotation and a trailing comment allowed)
_PLAIN = re.compile(r"^(revision|down_revision)[ \t]*(?::[^=\n]*)?=[ \t]*(.+?)[ \t]*(?:#[^\n]*)?$", re.MULTILINE)


def _assigned(tree: ast.Module, name: str) -> Any:
    """The literal value a module assigns to ``name`` at its top level (``_MISSING`` if none,
    ``_NOT_LITERAL`` for an expression: Alembic's to judge)."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            try:
                return ast.literal_eval(value)
            except ValueError:
                return _NOT_LITERAL
    return _MISSING


def _files(directory: Path) -> list[Path]:
    """The files Alembic reads as revisions (``__init__.py`` and editor files left out)."""
    return sorted(p for p in directory.glob("*.py") if p.name != "__init__.py" and not p.name.startswith((".", "#")))


def explain(history: str, directory: Path) -> str | None:
    """One line naming the first migration file of ``directory`` that Alembic cannot use, what
    is wrong and what to write; ``None`` when the files look right (the error is elsewhere)."""
    read: list[tuple[Path, Any, Any]] = []
    for path in _files(directory):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except SyntaxError as exc:
            return f"migration {path} of {history} is not valid Python: {exc.msg} (line {exc.lineno})"
        except (OSError, UnicodeDecodeError) as exc:
            return f"migration {path} of {history} cannot be read: {exc}"
        read.append((path, _assigned(tree, "revision"), _assigned(tree, "down_revision")))
    known = {revision for _, revision, _ in read if isinstance(revision, str)}
    before: Any = None
    for path, revision, down in read:
        number = path.name.split("_", 1)[0]
        if revision is _MISSING or (revision is not _NOT_LITERAL and not isinstance(revision, str)):
            return f'migration {path} of {history} has no revision id as text: write revision = "{number}" (as `mdm db revision` does)'
        follows = f'"{before}"' if before is not None else "None"
        if down is _MISSING:
            return f"migration {path} of {history} has no down_revision: write down_revision = {follows} (the revision it follows; None only for the first)"
        if isinstance(down, str) and down not in known:
            return f'migration {path} of {history} follows down_revision "{down}", which no migration in {directory} is: write down_revision = {follows}'
        before = revision
    return None


def plain_head(directory: Path) -> str | None:
    """The head of ``directory``'s revisions, read from each file's plain ``revision`` and
    ``down_revision`` lines without running the files (Alembic runs every one, after importing
    itself: 80 ms and 10 MB at every command). ``None`` when a file says them otherwise (twice,
    not as one literal line, not as text) or the revisions are not one line from a first one
    to a head: Alembic's to read, and :class:`~mdm_core.db.migrate.History` to explain."""
    follows: dict[str, str | None] = {}
    for path in _files(directory):
        try:
            found = _PLAIN.findall(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        values = dict(found)
        if len(found) != 2 or len(values) != 2:
            return None
        try:
            revision, down = ast.literal_eval(values["revision"]), ast.literal_eval(values["down_revision"])
        except (ValueError, SyntaxError):
            return None
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)) or revision in follows:
            return None
        follows[revision] = down
    heads = set(follows) - set(follows.values())
    if len(heads) != 1:
        return None
    (head,) = heads
    at: str | None = head
    for _ in follows:  # from the head back to the first revision, through every file
        if at is None or at not in follows:
            return None
        at = follows[at]
    return head if at is None else None
