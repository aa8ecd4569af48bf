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
