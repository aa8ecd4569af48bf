"""The PostgreSQL test database is dropped at the end of a session even while an autovacuum
worker is in it (``WITH (FORCE)`` cannot end one for a role without superuser): a CI run once
failed its last test's teardown on that."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from tests.conftest import _drop_database


class ServerError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class Server:
    """Answers each DROP statement from a script: an error's SQLSTATE, or None (done)."""

    def __init__(self, answers: list[str | None]):
        self.answers: list[str | None] = answers
        self.statements: list[str] = []

    def execute(self, statement: Any) -> None:
        self.statements.append(str(statement))
        answer = self.answers.pop(0)
        if answer is not None:
            raise DBAPIError(str(statement), {}, ServerError(answer))


def test_an_autovacuum_worker_in_the_database_does_not_fail_its_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.conftest.time.sleep", lambda _s: None)
    server = Server(["42501", "55006", "42501", None])  # FORCE refused, plain DROP while closing, then done
    _drop_database(server, "mdm_t_x")
    assert server.statements == [
        'DROP DATABASE IF EXISTS "mdm_t_x" WITH (FORCE)',
        'DROP DATABASE IF EXISTS "mdm_t_x"',
        'DROP DATABASE IF EXISTS "mdm_t_x" WITH (FORCE)',
        'DROP DATABASE IF EXISTS "mdm_t_x"',
    ]


def test_another_error_is_raised_at_once() -> None:
    server = Server(["42P01"])
    with pytest.raises(DBAPIError):
        _drop_database(server, "mdm_t_x")
    assert len(server.statements) == 1
