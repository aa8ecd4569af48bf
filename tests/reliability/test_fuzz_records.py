"""Fuzz of the record parsers: on any JSON, ``page_assets``, ``page_assignments``, ``page_users``
and ``version_of`` return rows or raise ``MalformedResponseError`` (a ``VppError``), never
anything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.vpp.apple.errors import MalformedResponseError, VppError
from plugins.vpp.apple.protocol import page_assets, page_assignments, page_users, version_of

from .conftest import count_figure

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = [
    "adamId",
    "pricingParam",
    "productType",
    "assignedCount",
    "availableCount",
    "retiredCount",
    "totalCount",
    "deviceAssignable",
    "revocable",
    "supportedPlatforms",
    "serialNumber",
    "clientUserId",
    "email",
    "status",
    "idHash",
    "inviteCode",
    "versionId",
]
#: Records that look almost right: Apple's field names with arbitrary values.
near_records = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)) | json_values
pages = st.fixed_dictionaries(
    {},
    optional={
        "assets": st.lists(near_records, max_size=4) | json_values,
        "assignments": st.lists(near_records, max_size=4) | json_values,
        "users": st.lists(near_records, max_size=4) | json_values,
        "versionId": json_values,
    },
) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)

PARSERS = (page_assets, page_assignments, page_users, version_of)


def _check(page: Any) -> None:
    for parse in PARSERS:
        try:
            result = parse(page)
        except MalformedResponseError as exc:
            assert isinstance(exc, VppError) and "\n" not in str(exc)
        else:
            if parse is version_of:
                assert result is None or isinstance(result, str)
            else:
                assert isinstance(result, list)


@pytest.mark.slow  # 250 examples
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages)
def test_record_parsers_raise_only_malformed_response(page: dict[str, Any]) -> None:
    count_figure("fuzz_examples")
    _check(page)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=4))
def test_record_parsers_on_objects_with_any_values(value: dict[str, Any]) -> None:
    count_figure("fuzz_examples")
    _check(value)


def test_record_parsers_on_a_page_that_is_not_an_object() -> None:
    for page in (None, [], ["assets"], "assets", 3, True):
        for parse in PARSERS:
            with pytest.raises(MalformedResponseError):
                parse(page)  # type: ignore[arg-type]  # not a mapping, on purpose
