"""A test whose child process hangs fails alone (:mod:`tests.children`, the suite's autouse
``_no_child_left``): the child is killed and waited for when that test ends. Before, a CI run
saw a hung ``mdm vpp sync`` fail its test, then the next test on the worker too (its ``Popen``,
collected there while the process still ran, warned ``ResourceWarning``: an error here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests import conftest as suite

globals().update({name: value for name, value in vars(suite).items() if name == "_no_child_left"})  # the suite's own fixture
"""

SUITE = """
import gc
import subprocess
import sys


def test_a_child_hangs():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    print(f"CHILD {child.pid}")
    child.communicate(timeout=0.01)  # raises TimeoutExpired: the child is left running


def test_the_next_one():
    gc.collect()  # the hung child's Popen, if it is garbage now
"""


@pytest.mark.slow  # a pytest run of its own
def test_a_hung_child_fails_its_own_test_only(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_children=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-rA")
    found = re.search(r"CHILD (\d+)", result.stdout.str())
    assert found, result.stdout.str()
    result.assert_outcomes(failed=1, passed=1)
    assert "test_a_child_hangs" in "\n".join(line for line in result.outlines if line.startswith("FAILED"))
    assert not Path(f"/proc/{found.group(1)}").exists(), "the hung child outlived its test"
