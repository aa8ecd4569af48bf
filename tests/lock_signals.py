"""A Ctrl-C that arrives while a lock's try commits the row that takes it: a real SIGINT to
this process, sent inside the try's write session once its commit is done, so that ``mdm``'s
handler raises it when that session ends (as it does for a signal during the commit)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlmodel import Session


def ctrl_c_once_taken(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """SIGINT in the write session of the first try that takes a lock named ``prefix...``."""
    from mdm_core.locks import DbLock

    real, sent = DbLock._write_session, list[str]()

    @contextmanager
    def write_session(self: DbLock) -> Iterator[Session]:
        with real(self) as session:
            yield session
            if self.name.startswith(prefix) and self.generation is not None and not sent:  # committed: taken
                sent.append(self.name)
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(DbLock, "_write_session", write_session)
