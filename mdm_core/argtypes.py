"""Command-line number types: every number is checked where it enters, with a one-line
argparse error naming the option and the accepted range (``nan``, ``inf`` and negative waits
included).

``parser.add_argument("--wait", type=seconds(), ...)``, ``type=count(minimum=1)``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import overload

from mdm_core.scheduler import MAX_INTERVAL


@overload
def check_wait(value: float, what: str = ...) -> float: ...
@overload
def check_wait(value: None, what: str = ...) -> None: ...
def check_wait(value: float | None, what: str = "wait") -> float | None:
    """A wait given through a hook or a setting: ``None``, or finite seconds from 0 to a year."""
    from mdm_core.errors import UsageError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= MAX_INTERVAL:
        raise UsageError(f"{what} must be a finite number of seconds from 0 to {MAX_INTERVAL}, got {value!r}")
    return float(value)


def seconds(minimum: float = 0.0, maximum: float = MAX_INTERVAL) -> Callable[[str], float]:
    """A finite number of seconds in [minimum, maximum] (a wait, a timeout)."""
    return number("seconds", minimum, maximum)


def number(unit: str, minimum: float, maximum: float) -> Callable[[str], float]:
    """A finite number of ``unit`` (seconds, days) in [minimum, maximum]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of {unit}") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"'{text}' must be a finite number of {unit} from {_plain(minimum)} to {_plain(maximum)}")
        return value

    return parse


def _plain(value: float) -> str:
    """31536000, not 3.1536e+07; 0.5 stays 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def count(minimum: int | None = 0, maximum: int | None = None, unit: str = "") -> Callable[[str], int]:
    """A whole number in [minimum, maximum] (a limit, a size, an interval in seconds); ``minimum``
    None: any whole number, its range checked by the caller (with the configuration, say).
    ``unit`` names what it counts in the error (``'1h' is not a whole number of seconds``)."""
    of = f" of {unit}" if unit else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number{of}") from None
        if minimum is None:
            return value
        if value < minimum or (maximum is not None and value > maximum):
            span = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise argparse.ArgumentTypeError(f"'{text}' must be a whole number {span}")
        return value

    return parse
