"""Property tests: parse_response raises only VppError subclasses, for any input."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.vpp.apple.client import check_mdm_info, parse_response
from plugins.vpp.apple.errors import VppError
from plugins.vpp.apple.transport import parse_retry_after

from ..conftest import count_figure

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
error_numbers = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from([0, 9621, 9625, 9601, 9622, 9722, 9646, 9603, 9721, 9650, 9602, 9999]),
    st.text(max_size=6),
    st.floats(),
    st.booleans(),
    json_values,
)
error_objects = st.fixed_dictionaries(
    {},
    optional={"errorNumber": error_numbers, "errorMessage": json_values, "errorInfo": json_values, "mdmInfo": json_values, "eventId": json_values},
)
statuses = st.integers(min_value=100, max_value=599)
headers = st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X"]), st.text(max_size=40), max_size=3)


def check(status: int, hdrs: dict, body: bytes) -> None:
    count_figure("fuzz_examples")
    try:
        result = parse_response(status, hdrs, body, url="https://vpp.test/mdm/v2/assets")
    except VppError as err:
        text = str(err)
        assert len(text.splitlines()) <= 1
        repr(err)
        parse_retry_after(err.retry_after)
    else:
        assert isinstance(result, dict)
        assert status < 400
        with contextlib.suppress(VppError):
            check_mdm_info(result, "mine")


@FUZZ
@given(statuses, headers, st.binary(max_size=200))
def test_arbitrary_bytes(status: int, hdrs: dict, body: bytes) -> None:
    check(status, hdrs, body)


@FUZZ
@given(statuses, headers, json_values)
def test_arbitrary_json(status: int, hdrs: dict, value: object) -> None:
    check(status, hdrs, json.dumps(value).encode())


@FUZZ
@given(statuses, headers, error_objects)
def test_error_shaped_objects(status: int, hdrs: dict, value: dict) -> None:
    check(status, hdrs, json.dumps(value).encode())


@FUZZ
@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    count_figure("fuzz_examples")
    result = parse_retry_after(value)
    assert result is None or result >= 0
