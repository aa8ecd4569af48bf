"""``ask_first``: the dry-run and confirmation steps that ``mdm events discard`` and ``mdm vpp
account remove`` share (each had its own copy): ``--dry-run`` says what it would do, a terminal
is asked, a refusal says nothing was done, no terminal without ``--yes`` is a usage error."""

from __future__ import annotations

import io

import pytest

from mdm_core.errors import UsageError
from mdm_core.output import ask_first


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_dry_run_says_what_it_would_do_and_asks_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert ask_first("remove account a", yes=False, dry_run=True, declined="nothing removed") == 0
    assert capsys.readouterr().out == "would remove account a\n"


@pytest.mark.parametrize(("answer", "code", "said"), [("n\n", 1, "nothing removed\n"), ("\n", 1, "nothing removed\n"), ("yes\n", None, "")])
def test_a_terminal_is_asked_and_a_refusal_does_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, answer: str, code: int | None, said: str
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert ask_first("remove account a", yes=False, dry_run=False, declined="nothing removed") == code
    assert capsys.readouterr().out == "This will remove account a. Proceed? [y/N] " + said


def test_without_a_terminal_it_needs_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    with pytest.raises(UsageError, match="this would remove account a: add --yes"):
        ask_first("remove account a", yes=False, dry_run=False, declined="nothing removed")
    assert ask_first("remove account a", yes=True, dry_run=False, declined="nothing removed") is None
