"""``mdm alerts test`` with a database file that does not exist (a mistyped path in
``MDM_DATABASE_URL`` or ``[core] database_url``): it created an empty database there and sent
the test as if all were well, the admin's real database untouched. It now says which file is
missing and the command that creates it, exit 2, and writes nothing, sends nothing."""

from __future__ import annotations

from typing import Any


def test_a_missing_database_file_is_named_and_nothing_is_written(mdm: Any, webhook_server: Any, monkeypatch: Any) -> None:
    hook = webhook_server()
    monkeypatch.setenv("SLACK_URL", hook.url)
    mdm.conf.write_text('[alerts]\nwebhooks = { slack = { env = "SLACK_URL" } }\n')
    typo = mdm.project_dir / "var" / "mdm.sqlit3"
    before = sorted(p.name for p in mdm.project_dir.rglob("*"))
    mdm.initialise = False  # the database the configuration names is not made yet either

    with monkeypatch.context() as typed:
        typed.setenv("MDM_DATABASE_URL", f"sqlite:///{typo}")
        code, out, err = mdm("alerts", "test")

    assert (code, out) == (2, "")
    assert err == (f"mdm: error: database file {typo} does not exist (from MDM_DATABASE_URL): create it with `mdm db upgrade`, or correct the path\n")
    assert not typo.exists() and sorted(p.name for p in mdm.project_dir.rglob("*")) == before  # nothing written
    assert hook.requests == []  # nothing sent

    assert mdm("db", "upgrade")[0] == 0  # the database the configuration names, created as the line says
    code, out, err = mdm("alerts", "test")
    assert code == 0 and out == "webhook slack (127.0.0.1): sent\n", err
    assert len(hook.requests) == 1
