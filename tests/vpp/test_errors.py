"""Tests for plugins.vpp.apple.errors: the errorNumber / HTTP status mapping."""

from __future__ import annotations

import pytest

from plugins.vpp.apple import errors as E

#: Apple's error numbers with the HTTP status Apple sends them with, and our typed error.
APPLE_ERROR_CASES = [
    (9621, 401, E.TokenExpiredError),
    (9625, 401, E.TokenRevokedError),
    (9601, 401, E.TokenInvalidError),
    (9622, 401, E.TokenInvalidError),
    (9722, 401, E.TokenInvalidError),
    (9646, 429, E.RateLimitedError),
    (9603, 500, E.ServerError),
    (9721, 400, E.InvalidVersionIdError),
    (9650, 400, E.BadPageIndexError),
    (9999, 400, E.RequestRejectedError),
]


@pytest.mark.parametrize(
    "number,status,cls",
    [
        *APPLE_ERROR_CASES,
        (9602, 400, E.RequestRejectedError),
        (None, 429, E.RateLimitedError),
        (None, 500, E.ServerError),
        (None, 503, E.ServerError),
        (None, 401, E.TokenInvalidError),
        (None, 403, E.TokenInvalidError),
        (None, 404, E.RequestRejectedError),
        (9999, 503, E.ServerError),
        (9999, 401, E.TokenInvalidError),
    ],
)
def test_error_for(number, status, cls) -> None:
    err = E.error_for(number, status, "Apple says\nsomething", {"serialNumbers": ["S1"]})
    assert type(err) is cls
    assert err.error_number == number
    assert err.http_status == status
    assert err.error_info == {"serialNumbers": ["S1"]}
    assert "\n" not in str(err)
    assert "Apple says something" in str(err)


@pytest.mark.parametrize("number", [9621, 9625, 9601, 9622, 9722, 9646, 9603, 9721, 9650])
def test_body_code_wins_over_http_200(number) -> None:
    assert type(E.error_for(number, 200, None)) is type(E.error_for(number, 400, None))


def test_token_states() -> None:
    expired, revoked = E.error_for(9621, 401, None), E.error_for(9625, 401, None)
    assert isinstance(expired, E.TokenError) and expired.token_state == "expired"
    assert isinstance(revoked, E.TokenError) and revoked.token_state == "revoked"
    for number in (9601, 9622, 9722):
        err = E.error_for(number, 200, None)
        assert isinstance(err, E.TokenError) and err.token_state == "invalid"
    assert "Apple School Manager" in str(E.error_for(9621, 401, None))


def test_retryable() -> None:
    for err in (E.error_for(9646, 429, None), E.error_for(None, 502, None), E.error_for(9603, 200, None), E.TransportError("x")):
        assert E.is_retryable(err)
    for final in (
        E.error_for(9621, 401, None),
        E.error_for(9721, 400, None),
        E.error_for(9650, 400, None),
        E.error_for(9602, 400, None),
        E.MdmConflictError("x"),
        E.MalformedResponseError("x"),
        E.TransportError("x", retryable=False),
        ValueError("x"),
    ):
        assert not E.is_retryable(final)
    assert set(E.RETRYABLE) == {E.RateLimitedError, E.ServerError, E.TransportError}


def test_all_subclass_vpp_error() -> None:
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert issubclass(obj, E.VppError)


def test_str_is_one_line_with_details() -> None:
    err = E.VppError("line one\r\nline two\u2028three", error_number=9602, http_status=400)
    err.url = "https://vpp.test/mdm/v2/assets?secret=1"
    text = str(err)
    assert text == "line one line two three [errorNumber 9602, HTTP 400, /mdm/v2/assets]"
    assert "secret" not in text
    assert repr(err).startswith("VppError(")


def test_mdm_conflict_attributes() -> None:
    err = E.MdmConflictError("taken", other_id="x", other_name="Other", other_metadata="m", http_status=200)
    assert (err.other_id, err.other_name, err.other_metadata, err.http_status) == ("x", "Other", "m", 200)
