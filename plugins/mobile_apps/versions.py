"""Comparing App Store versions ("1.2", "1.10.3", "2024.11.5"), so that only a higher one is an update."""

from __future__ import annotations

import re

_CHUNK = re.compile(r"\d+|\D+")

Part = tuple[tuple[int, str], int, tuple[tuple[int, int, str], ...]]
_ZERO: Part = ((0, ""), 1, ())


def _number(digits: str) -> tuple[int, str]:
    """A run of digits as a sortable key, without converting it (a huge one never raises)."""
    digits = digits.lstrip("0")
    return len(digits), digits


def _part(text: str) -> Part:
    """One dot-separated part: its leading number (none sorts below 0), then its suffix; a part
    with a suffix ("2b1") sorts below the bare number ("2"), suffixes in natural order ("b9" < "b10")."""
    digits = text[: len(text) - len(text.lstrip("0123456789"))]
    suffix = text[len(digits) :]
    number = _number(digits) if digits else (-1, "")
    chunks = tuple((0, *_number(c)) if c.isdigit() else (1, 0, c.casefold()) for c in _CHUNK.findall(suffix))
    return number, 0 if suffix else 1, chunks


def _parts(version: str) -> list[Part] | None:
    """The parts of a version that starts with a number (after blanks and a "v"), or None."""
    text = version.strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    if not text[:1].isdigit():
        return None
    return [_part(p.strip()) if p.strip() else _ZERO for p in text.split(".")]


def compare_versions(a: str, b: str) -> int | None:
    """-1, 0 or 1 as version ``a`` is lower than, equal to or higher than ``b``; None when they
    cannot be compared.

    Dot-separated parts compare as numbers ("1.9" < "1.10"); missing parts count as 0, so
    trailing ".0" parts change nothing ("1.2" == "1.2.0"), nor do empty parts ("1..2" == "1.0.2"). A part with letters after its number
    sorts below the bare number ("2.0b1" < "2.0"), letters and numbers within it in natural order.
    A version that does not start with a number (after blanks and an optional "v") cannot be
    compared with anything but the same text: None. Never raises.
    """
    if a.strip() == b.strip():
        return 0
    left, right = _parts(a), _parts(b)
    if left is None or right is None:
        return None
    width = max(len(left), len(right))
    left += [_ZERO] * (width - len(left))
    right += [_ZERO] * (width - len(right))
    return (left > right) - (left < right)


def is_newer(version: str, known: str) -> bool:
    """Whether ``version`` is an update of ``known``: strictly higher. Versions that cannot be
    compared (:func:`compare_versions` None: say, two different non-numeric strings) count as
    newer, as any different version did before versions were compared."""
    order = compare_versions(version, known)
    return order is None or order > 0
