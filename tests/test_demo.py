"""The README's main job: `mdm demo` works on a fresh project folder, and again."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdm_core.cli import main


def test_demo_runs_twice_on_the_default_sqlite_database(project_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    monkeypatch.delenv("MDM_DATABASE_URL", raising=False)
    monkeypatch.setenv("MDM_SECRET_KEY", "demo-test-key")
    for run in (1, 2):
        assert main(["--config", str(conf), "demo"]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert "demo: full sync ok" in out and "demo: incremental sync ok" in out
        assert "licenses +0 -1" in out  # the license removed in Apple's portal left the mirror
        assert "queued: InstallApplication queued" in out if run == 1 else "queued: InstallApplication already queued" in out
        assert '"iTunesStoreID": ' in out and '"PurchaseMethod": 1' in out
        if run == 2:
            assert "replacing the 'demo' account left by an earlier run" in out
    assert (project_dir / "var" / "mdm.sqlite3").is_file()  # the default database, under var/
