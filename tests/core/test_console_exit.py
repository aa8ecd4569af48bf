"""How the console ``mdm`` ends once its command has: as Python does (``atexit`` handlers run)
unless threads the interpreter's exit would wait for are still running (requests in flight
whose answers nobody reads), when it exits at once with the command's code."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

ATEXIT = """
import atexit, sys
atexit.register(lambda: print("atexit ran", flush=True))
sys.argv = ["mdm", "plugins"]
from mdm_core.cli import main
sys.exit(main())
"""


def test_a_command_that_ended_runs_the_atexit_handlers(tmp_path: Path) -> None:
    """The signal watcher (a daemon thread, alive until the process ends) made every command
    leave by ``os._exit``, skipping what plugins and tools register with ``atexit``."""
    done = subprocess.run([sys.executable, "-c", ATEXIT], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "vpp" in done.stdout  # the command's own output
    assert done.stdout.rstrip().splitlines()[-1] == "atexit ran", done.stdout


@pytest.mark.parametrize("daemon", [False, True])
def test_a_thread_left_waiting_ends_mdm_at_once_only_when_exit_would_wait_for_it(
    daemon: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A thread that is not a daemon, still waiting when the command ended (a page request a
    failed sync no longer reads), would hold the process until it ends: mdm exits at once with
    the command's code. A daemon thread alone does not hold it: mdm ends as Python does."""
    from mdm_core import cli

    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    release = threading.Event()
    waiting = threading.Thread(target=release.wait, daemon=daemon)
    waiting.start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.os, "_exit", exit_now)
    monkeypatch.setattr("sys.argv", ["mdm", "plugins"])
    try:
        if daemon:
            assert cli.main() == 0
        else:
            with pytest.raises(SystemExit):
                cli.main()
    finally:
        release.set()
        waiting.join()
    assert exits == ([] if daemon else [0])
    assert "vpp" in capsys.readouterr().out
