"""The suite-wide checks hold when the suite runs in parallel (pytest-xdist) as well as serially:
a hook no test exercised fails a whole-suite run, naming it, even when the tests ran in worker
processes; hooks exercised in different workers add up; a narrowed run does not judge; the
reliability figures are summed over the workers.

Each case runs a small suite of its own (in-process; with ``-n 2`` its workers are real
processes), with the same ``HookCoverage``
and ``RunTally`` plugins as ``tests/conftest.py``, on real hosts and real hook calls."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # each run starts two xdist worker processes

CONFTEST = """
from pathlib import Path

import pytest

pytest.register_assert_rewrite("mdm_core.testing")
from mdm_core.testing import HookCallLog, HookCoverage, RunTally

pytest_plugins = ["mdm_core.testing"]
LOG = HookCallLog()
FIGURES = RunTally("reliability figures")
DECLARED = {"mdm_device_enrolled", "mdm_device_removed"}


def pytest_configure(config):
    LOG.install()
    config.pluginmanager.register(HookCoverage(LOG, lambda: DECLARED, Path(__file__).parent), "hook-coverage")
    config.pluginmanager.register(FIGURES, "figures")


def pytest_unconfigure(config):
    LOG.uninstall()


@pytest.fixture
def figures():
    return FIGURES
"""

TESTS = """
import os
from pathlib import Path

from mdm_core import hookimpl, inventory


class Subscriber:
    @hookimpl
    def mdm_device_enrolled(self, host, event):
        pass

    @hookimpl
    def mdm_device_removed(self, host, event):
        pass


def _run(make_host, figures, remove):
    host = make_host(plugins=[Subscriber()])
    inventory.add_device(host, "S1", "iOS")
    if remove:
        inventory.remove_device(host, "S1")
    host.deliver_events()
    figures.add("tries")
    with Path(os.environ["WORKERS_FILE"]).open("a") as workers:
        workers.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")


def test_enrol(make_host, figures):
    _run(make_host, figures, remove=False)


def test_enrol_then_remove(make_host, figures):
    _run(make_host, figures, remove=REMOVE)
"""


def _suite(pytester: pytest.Pytester, remove: bool) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_devices=TESTS.replace("REMOVE", str(remove)))
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[pytest.RunResult, list[str]]:
    workers = pytester.path / "workers.txt"
    monkeypatch.setenv("WORKERS_FILE", str(workers))
    for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    result = pytester.runpytest(*args)  # in this process; with -n 2 the workers are processes of their own
    return result, sorted(workers.read_text().split()) if workers.exists() else []


@pytest.mark.parametrize("args", [("-n", "2"), ("-p", "no:xdist")], ids=["xdist-2-workers", "serial"])
def test_a_hook_no_test_exercised_fails_the_whole_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    _suite(pytester, remove=False)
    result, workers = _run(pytester, monkeypatch, *args)
    assert workers == (["gw0", "gw1"] if args[0] == "-n" else ["main", "main"])  # really ran in two workers
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAILED: hooks no test exercised (called with an implementation): mdm_device_removed"])
    result.stdout.fnmatch_lines(["reliability figures: tries=2"])


def test_hooks_exercised_in_different_workers_add_up(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """mdm_device_removed is called in one worker only: the controller still sees it."""
    _suite(pytester, remove=True)
    result, workers = _run(pytester, monkeypatch, "-n", "2")
    assert workers == ["gw0", "gw1"]
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "hooks no test exercised" not in result.stdout.str()
    result.stdout.fnmatch_lines(["reliability figures: tries=2"])


def test_a_run_narrowed_in_the_workers_does_not_judge(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under xdist only the workers collect: what they deselect must reach the controller too."""
    _suite(pytester, remove=True)
    result, workers = _run(pytester, monkeypatch, "-n", "2", "--deselect", "test_devices.py::test_enrol_then_remove")
    assert len(workers) == 1 and workers[0].startswith("gw")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "hooks no test exercised" not in result.stdout.str()
