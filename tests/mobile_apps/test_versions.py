"""Comparing App Store versions: only a higher one is an update (:mod:`plugins.mobile_apps.versions`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.mobile_apps.versions import compare_versions, is_newer

numbers = st.lists(st.integers(min_value=0, max_value=10**30), min_size=1, max_size=6)
texts = st.one_of(st.text(max_size=20), st.text(alphabet="0123456789.abv -", max_size=20))
#: No deadline and no "too slow" health check: on a loaded machine (CI's two cores under
#: ``-n 2``) generating the examples can take seconds; the examples checked stay the same.
UNDER_LOAD = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _dotted(parts: list[int]) -> str:
    return ".".join(str(p) for p in parts)


def _trimmed(parts: list[int]) -> list[int]:
    while parts and parts[-1] == 0:
        parts = parts[:-1]
    return parts


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.9", "1.10", -1),  # numbers, not text
        ("1.2", "1.2.0", 0),  # trailing .0 changes nothing
        ("1.2.0.0", "1.2", 0),
        ("2024.11.5", "2024.9.30", 1),
        ("1.10.3", "1.10.3", 0),
        ("01.2", "1.2", 0),
        (" v1.2 ", "1.2", 0),
        ("2.0b1", "2.0", -1),  # letters after a number: before the bare number
        ("2.0b9", "2.0b10", -1),
        ("1.x", "1.0", -1),
        ("1..2", "1.0.2", 0),
        ("1" * 5000, "2", 1),  # a huge number neither raises nor misorders
        ("beta", "beta", 0),
        ("beta", "gamma", None),  # not comparable
        ("", "1.0", None),
        ("latest", "1.0", None),
    ],
)
def test_compare_versions(a: str, b: str, order: int | None) -> None:
    assert compare_versions(a, b) == order
    assert compare_versions(b, a) == (None if order is None else -order)


@pytest.mark.parametrize(
    ("version", "known", "newer"),
    [("1.10", "1.9", True), ("1.2.0", "1.2", False), ("1.1", "1.2", False), ("1.2", "1.2", False), ("gamma", "beta", True), ("latest", "1.2", True)],
)
def test_only_a_higher_or_an_incomparable_version_is_newer(version: str, known: str, newer: bool) -> None:
    assert is_newer(version, known) is newer


@UNDER_LOAD
@given(numbers, numbers)
def test_consistent_with_numeric_tuples(a: list[int], b: list[int]) -> None:
    left, right = _trimmed(a), _trimmed(b)
    width = max(len(left), len(right))
    left, right = left + [0] * (width - len(left)), right + [0] * (width - len(right))
    assert compare_versions(_dotted(a), _dotted(b)) == (left > right) - (left < right)


@UNDER_LOAD
@given(texts, texts)
def test_antisymmetric_and_never_raises(a: str, b: str) -> None:
    order = compare_versions(a, b)
    assert order in (-1, 0, 1, None)
    assert compare_versions(b, a) == (None if order is None else -order)
    assert compare_versions(a, a) == 0
    assert not (is_newer(a, b) and is_newer(b, a)) or order is None


@UNDER_LOAD
@given(texts, texts, texts)
def test_transitive(a: str, b: str, c: str) -> None:
    if compare_versions(a, b) in (-1, 0) and compare_versions(b, c) in (-1, 0):
        assert compare_versions(a, c) in (-1, 0)
