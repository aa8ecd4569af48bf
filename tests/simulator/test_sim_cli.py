"""The serve command line: argparse wiring, token file, signal handling."""

from __future__ import annotations

import argparse
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from plugins.vpp.simulator.cli import add_serve_arguments, serve

REPO = Path(__file__).resolve().parents[2]


def test_defaults():
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args([])
    assert (args.host, args.port, args.page_size, args.async_delay) == ("127.0.0.1", 0, 437, 0.2)
    assert args.token_file == "var/simulator.vpptoken" and args.assignments is None


def test_serve_in_thread(tmp_path, capsys):
    token_file = tmp_path / "sim.vpptoken"
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(
        ["--seed", "4", "--devices", "5", "--users", "5", "--page-size", "3", "--token-file", str(token_file)]
    )
    ready, stop = threading.Event(), threading.Event()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(serve(args, ready=ready, stop=stop)))
    worker.start()
    try:
        assert ready.wait(5)
        line = capsys.readouterr().out.strip()
        url = re.search(r"http://127\.0\.0\.1:\d+/mdm/v2", line).group(0)
        token = token_file.read_text()
        assert str(token_file) in line and token not in line
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        page = requests.get(url + "/users", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        assert page["size"] == 3
    finally:
        stop.set()
        worker.join(5)
    assert result == [0]


@pytest.mark.slow  # a simulator process
def test_module_entry_point_stops_on_sigterm(tmp_path):
    token_file = tmp_path / "m.vpptoken"
    process = subprocess.Popen(
        [sys.executable, "-m", "plugins.vpp.simulator", "--port", "0", "--token-file", str(token_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "/mdm/v2" in line and str(token_file) in line
        assert token_file.read_text() not in line
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
