"""Ctrl-C (SIGINT) and SIGTERM reach the command whichever thread the kernel hands them to.

The kernel gives a process's signal to any of its threads (a loaded machine showed it: a
sync's SIGINT taken by a thread waiting for Apple's answer); Python runs the handler in the
main thread only. A main thread blocked waiting for another thread noticed nothing until that
wait ended. Here the signal is sent to one thread (``pthread_kill``): the one the main thread
waits for, blocked in its own wait, as a page reader waits for Apple."""

from __future__ import annotations

import signal
import threading

import pytest

from mdm_core import interrupts
from mdm_core.interrupts import Interrupted
from mdm_core.testing import MdmRunner


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_another_thread_received_interrupts_the_main_thread_waiting_for_it(signum: signal.Signals) -> None:
    answered = threading.Event()  # set only once the main thread has stopped waiting: the "page" never comes before
    started, ended = threading.Event(), threading.Event()

    def reader() -> None:
        started.set()
        answered.wait(20)  # the held page (bounded: a main thread never woken still ends)
        ended.set()

    thread = threading.Thread(target=reader, name="reader", daemon=True)
    with pytest.raises(Interrupted) as raised, interrupts.handled():
        thread.start()
        started.wait()
        signal.pthread_kill(thread.ident or 0, signum)  # received by the reader, not by the main thread
        thread.join()  # as the sync joins its reader
    stopped_waiting = not ended.is_set()  # (not is_alive(): Python 3.11 takes an interrupted join's thread for ended)
    answered.set()
    assert raised.value.signum == signum
    assert stopped_waiting, "the main thread was interrupted only once the thread it waited for had ended"


def test_the_handlers_are_given_back() -> None:
    """The signals' handlers and the wakeup fd are as they were once the command ends."""
    before = {s: signal.getsignal(s) for s in (*interrupts.SIGNALS, interrupts.WAKE)}
    fd_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd_before)
    with interrupts.handled():
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before
    fd_after = signal.set_wakeup_fd(fd_before)
    assert fd_after == fd_before


def test_a_ctrl_c_while_mdm_closes_ends_it_with_130_at_once(mdm: MdmRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console ``mdm`` handled SIGINT only while its command ran: one that came as it closed
    (a second Ctrl-C after a sync's first one had stopped it) escaped as a traceback, and
    Python's exit then waited for the threads still waiting for Apple (up to the request
    timeout). It now exits with 130 at once, as for the first."""
    from mdm_core import cli
    from mdm_core.host import Host

    assert mdm("db", "upgrade")[0] == 0  # the environment of the command below, and its tables
    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    real_close = Host.close

    def close(self: Host) -> None:
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # Ctrl-C as it closes
        real_close(self)

    monkeypatch.setattr(cli.os, "_exit", exit_now)
    monkeypatch.setattr(Host, "close", close)
    monkeypatch.setattr("sys.argv", ["mdm", "devices", "list"])
    with pytest.raises((SystemExit, KeyboardInterrupt)):  # (KeyboardInterrupt: the old escape)
        cli.main()
    assert exits == [130]


def test_a_second_ctrl_c_while_mdm_closes_leaves_the_first_one_s_line_last(
    mdm: MdmRunner, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first Ctrl-C stopped the command (its line says what stopped); a second one as mdm
    closed printed the generic "what was being written was rolled back" after it, the last line
    the user saw. The first one's line now stays the last; the exit is 130 at once all the same."""
    from mdm_core import cli
    from mdm_core.host import Host

    assert mdm("db", "upgrade")[0] == 0  # the environment of the command below, and its tables
    capsys.readouterr()
    exits: list[int] = []
    ran: list[bool] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    def stopped_by_a_first_ctrl_c(host: Host) -> dict[str, object]:
        ran.append(True)
        exc = Interrupted(signal.SIGINT)
        interrupts.note(exc, "the sync of school stopped: what it was writing was rolled back")
        raise exc

    real_close = Host.close

    def close(self: Host) -> None:
        if ran:  # (not a host closed before the command ran)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # the second Ctrl-C, as it closes
        real_close(self)

    monkeypatch.setattr(cli.os, "_exit", exit_now)
    monkeypatch.setattr("mdm_core.status.collect_status", stopped_by_a_first_ctrl_c)  # `mdm status` stopped by a first Ctrl-C
    monkeypatch.setattr(Host, "close", close)
    monkeypatch.setattr("sys.argv", ["mdm", "status"])
    with pytest.raises(SystemExit):
        cli.main()
    assert exits == [130]
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "mdm: interrupted (SIGINT): the sync of school stopped: what it was writing was rolled back", err
    assert interrupts.ROLLED_BACK not in err.replace("what it was writing was rolled back", ""), err
