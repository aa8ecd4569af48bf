"""A plugin author's migration file that Alembic cannot use is one line naming the file, what it
lacks and the line to write (it was Alembic's ``AttributeError: module '0002_widget_color_py'
has no attribute 'down_revision'``, or ``KeyError: '0009'``, on every command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdm_core.db.migrate import History, MigrationSet
from mdm_core.errors import PluginError

FIRST = '"""widgets table"""\n\nrevision = "0001"\ndown_revision = None\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n'
SECOND = '"""widget color"""\n\n{ids}\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n'


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        ('revision = "0002"', 'has no down_revision: write down_revision = "0001" (the revision it follows; None only for the first)'),
        ('revision = "0002"\ndown_revision = "0009"', 'follows down_revision "0009", which no migration in {folder} is: write down_revision = "0001"'),
        ('revision = 2\ndown_revision = "0001"', 'has no revision id as text: write revision = "0002" (as `mdm db revision` does)'),
        ('down_revision = "0001"', 'has no revision id as text: write revision = "0002" (as `mdm db revision` does)'),
    ],
    ids=["no down_revision", "unknown down_revision", "number", "no revision"],
)
def test_a_migration_written_by_hand_without_its_ids_is_one_line(tmp_path: Path, ids: str, why: str) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_widgets_table.py").write_text(FIRST)
    second = folder / "0002_widget_color.py"
    second.write_text(SECOND.format(ids=ids))
    with pytest.raises(PluginError) as info:
        History(MigrationSet("widgets", folder))
    assert str(info.value) == f"migration {second} of widgets " + why.format(folder=folder)


def test_a_migration_that_is_not_python_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_widgets_table.py").write_text(FIRST.replace("def upgrade() -> None:", "def upgrade( -> None:"))
    with pytest.raises(PluginError) as info:
        History(MigrationSet("widgets", folder))
    assert str(info.value).startswith(f"migration {folder / '0001_widgets_table.py'} of widgets is not valid Python: ")


def _project_histories() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    return sorted({p.parent for folder in ("mdm_core", "plugins") for p in (root / folder).glob("**/migrations/*.py")})


@pytest.mark.parametrize("folder", _project_histories(), ids=lambda p: str(p.parent.name))
def test_the_plain_head_of_every_history_of_the_project_is_alembics(folder: Path) -> None:
    """The schema check every command makes reads the heads from the files' revision lines
    (``plain_head``) instead of importing Alembic and running every file: both must agree."""
    from mdm_core.db.revision_files import plain_head

    assert plain_head(folder) == History(MigrationSet("history", folder)).head


@pytest.mark.parametrize(
    ("second", "head"),
    [
        ('revision: str = "0002"  # the next\ndown_revision: str | None = "0001"', "0002"),
        ('revision = "0002"\ndown_revision = (\n    "0001"\n)', None),  # not one line
        ('revision = "0002"\ndown_revision = ("0001", "0003")', None),  # a merge
        ('revision = "0002"', None),
        ('revision = "0002"\ndown_revision = "0001"\nrevision = "0003"', None),
        ('revision = "000" + "2"\ndown_revision = "0001"', None),
        ('revision = "0002"\ndown_revision = None', None),  # two first revisions
        ('revision = "0002"\ndown_revision = "0009"', None),  # follows a revision the folder lacks
        ('revision = "0001"\ndown_revision = None', None),  # the same id twice
    ],
    ids=["annotated", "several lines", "merge", "no down_revision", "twice", "expression", "two firsts", "unknown", "same id"],
)
def test_the_plain_head_leaves_to_alembic_what_is_not_one_plain_line_of_revisions(tmp_path: Path, second: str, head: str | None) -> None:
    """``None`` sends the check to Alembic, which reads (or refuses in one line) what the plain
    reading cannot vouch for."""
    from mdm_core.db.revision_files import plain_head

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_widgets_table.py").write_text(FIRST)
    (folder / "0002_widget_color.py").write_text(SECOND.format(ids=second))
    assert plain_head(folder) == head


def test_the_plain_head_refuses_a_cycle(tmp_path: Path) -> None:
    """One first revision, one head, and two more following each other: not one line."""
    from mdm_core.db.revision_files import plain_head

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_a.py").write_text(FIRST)
    (folder / "0002_b.py").write_text(SECOND.format(ids='revision = "0002"\ndown_revision = "0001"'))
    (folder / "0003_c.py").write_text(SECOND.format(ids='revision = "0003"\ndown_revision = "0004"'))
    (folder / "0004_d.py").write_text(SECOND.format(ids='revision = "0004"\ndown_revision = "0003"'))
    assert plain_head(folder) is None
