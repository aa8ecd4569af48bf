"""``FormsOnce``: a form sent twice at once does its work once; the second request waits for
the first and answers with its outcome; a failed first leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mdm_core.web.once import FormsOnce


def test_a_second_request_under_way_waits_for_the_first_and_gets_its_result() -> None:
    forms, started, release, calls = FormsOnce(), threading.Event(), threading.Event(), []
    answers: list[Any] = []

    def work() -> str:
        calls.append(1)
        started.set()
        release.wait(10)
        return "token-1"

    first = threading.Thread(target=lambda: answers.append(forms.run("alice:f1", work)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: answers.append(forms.run("alice:f1", work)))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(answers, key=lambda a: not a[1]) == [("token-1", True), ("token-1", False)] and calls == [1]
    assert forms.run("bob:f1", lambda: "token-2") == ("token-2", True)  # another admin's form: its own


def test_a_failed_first_request_leaves_nothing_and_old_outcomes_are_forgotten() -> None:
    now = [0.0]
    forms = FormsOnce(keep=30, clock=lambda: now[0])

    def fails() -> str:
        raise ValueError("refused")

    with pytest.raises(ValueError):
        forms.run("alice:f1", fails)
    assert len(forms) == 0  # nothing kept of a refused form (a console refusing forms all day grows no memory)
    assert forms.run("alice:f1", lambda: "made") == ("made", True)
    assert forms.run("alice:f1", lambda: "again") == ("made", False)
    now[0] = 31
    forms.run("alice:other", lambda: None)  # prunes what is older than keep
    assert forms.run("alice:f1", lambda: "again") == ("again", True)
