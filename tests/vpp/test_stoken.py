"""Tests for plugins.vpp.apple.stoken: parsing, secrecy and TokenFileError messages."""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from plugins.vpp.apple.stoken import SToken, TokenFileError, load_token_file

INNER = "INNER-SECRET-7f3a9c"
FIX_HINT = "Apple School Manager or Apple Business Manager"


def b64(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.b64encode(text.encode()).decode()


def token_payload(**overrides: object) -> dict:
    payload: dict[str, object] = {"token": INNER, "expDate": "2030-11-08T22:33:22+0000", "orgName": "Example School"}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not _DROP}


_DROP = object()
RAW = b64(token_payload())


def test_parse_valid_token() -> None:
    tok = SToken.parse(f"  {RAW}\n")
    assert tok.org_name == "Example School"
    assert tok.expires_at == datetime(2030, 11, 8, 22, 33, 22, tzinfo=UTC)
    assert tok.bearer() == RAW
    assert tok.fingerprint == hashlib.sha256(RAW.encode()).hexdigest()[:16]


@pytest.mark.parametrize("exp", ["2030-11-08T22:33:22+00:00", "2030-11-08T22:33:22Z", "2030-11-09T00:33:22+0200", "2030-11-08T22:33:22"])
def test_exp_date_formats(exp: str) -> None:
    tok = SToken.parse(b64(token_payload(expDate=exp)))
    assert tok.expires_at == datetime(2030, 11, 8, 22, 33, 22, tzinfo=UTC)
    assert tok.expires_at.tzinfo is not None


def test_unpadded_base64_is_accepted() -> None:
    raw = RAW.rstrip("=")
    assert SToken.parse(raw).org_name == "Example School"


def test_repr_and_str_hide_secret() -> None:
    tok = SToken.parse(RAW)
    for text in (repr(tok), str(tok), f"{tok}", f"{tok!r}"):
        assert RAW not in text
        assert INNER not in text
        assert "Example School" in text
        assert "2030-11-08" in text


def test_expiry_helpers() -> None:
    tok = SToken.parse(RAW)
    before = tok.expires_at - timedelta(days=10, hours=1)
    assert not tok.is_expired(before)
    assert tok.days_left(before) == 11  # 10 days 1 hour left: rounded up, as the account list says
    assert tok.is_expired(tok.expires_at)
    assert tok.days_left(tok.expires_at + timedelta(days=2)) == -2
    naive = datetime(2030, 11, 8, 22, 33, 21)
    assert not tok.is_expired(naive)
    assert not tok.is_expired()  # 2030 is in the future


def test_equality_and_hash() -> None:
    assert SToken.parse(RAW) == SToken.parse(RAW + "\n")
    assert hash(SToken.parse(RAW)) == hash(SToken.parse(RAW))
    assert SToken.parse(RAW) != SToken.parse(b64(token_payload(token="other")))


def test_missing_org_name_is_tolerated() -> None:
    assert SToken.parse(b64(token_payload(orgName=_DROP))).org_name == ""


def test_load_token_file(tmp_path) -> None:
    path = tmp_path / "loc.vpptoken"
    path.write_text(RAW + "\r\n")
    tok = load_token_file(path)
    assert tok.bearer() == RAW
    assert tok.org_name == "Example School"


BAD_CONTENTS = [
    ("", "is empty"),
    ("   \n\t", "is empty"),
    ("not base64 at all!!", "is not base64"),
    ("abc def", "is not base64"),
    (b64("this is not json"), "does not decode to JSON"),
    (base64.b64encode(b"\xff\xfe\x00garbage").decode(), "does not decode to JSON"),
    (b64([1, 2, 3]), "does not decode to a JSON object"),
    (b64('"just a string"'), "does not decode to a JSON object"),
    (b64(token_payload(token=_DROP)), "has no 'token' field"),
    (b64(token_payload(token="")), "has no 'token' field"),
    (b64(token_payload(token=12345)), "has a 'token' field that is not a string"),
    (b64(token_payload(expDate=_DROP)), "has no 'expDate' field"),
    (b64(token_payload(expDate="")), "has no 'expDate' field"),
    (b64(token_payload(expDate="next tuesday")), "has an 'expDate' that is not an ISO-8601 date"),
    (b64(token_payload(expDate="2030-13-45T00:00:00Z")), "has an 'expDate' that is not an ISO-8601 date"),
    (b64(token_payload(expDate=1900000000)), "has an 'expDate' field that is not a string"),
    (b64(token_payload(orgName=["x"])), "has an 'orgName' field that is not a string"),
]


@pytest.mark.parametrize("content,problem", BAD_CONTENTS)
def test_bad_token_file_messages(tmp_path, content: str, problem: str) -> None:
    path = tmp_path / "x.vpptoken"
    path.write_text(content)
    with pytest.raises(TokenFileError) as info:
        load_token_file(path)
    message = str(info.value)
    assert message.startswith(f"token file {path} {problem}")
    assert FIX_HINT in message and "Settings > Apps and Books" in message
    assert "\n" not in message
    assert INNER not in message
    assert content.strip() == "" or content.strip() not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("content,problem", BAD_CONTENTS)
def test_bad_raw_string_messages(content: str, problem: str) -> None:
    with pytest.raises(TokenFileError, match=f"^sToken {problem}"):
        SToken.parse(content)


def test_binary_file(tmp_path) -> None:
    path = tmp_path / "bin.vpptoken"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(TokenFileError, match="is not base64"):
        load_token_file(path)


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.vpptoken"
    with pytest.raises(TokenFileError) as info:
        load_token_file(path)
    assert str(info.value) == (
        f"token file {path} does not exist: check the path, or download the token again from "
        "Apple School Manager or Apple Business Manager (Settings > Apps and Books)"
    )


def test_directory(tmp_path) -> None:
    with pytest.raises(TokenFileError, match="is a directory"):
        load_token_file(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "locked.vpptoken"
    path.write_text(RAW)
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(TokenFileError, match="cannot be read \\(permission denied\\): fix the file permissions"):
        load_token_file(path)


def test_non_string_input() -> None:
    with pytest.raises(TokenFileError, match="must be a string"):
        SToken.parse(12345)  # type: ignore[arg-type]


def test_a_token_file_is_read_with_a_size_bound(tmp_path):
    """Issue 17 point 16: `--token-file /dev/zero` grew to 23.5 GB before the kernel killed it."""
    from plugins.vpp.apple.stoken import TokenFileError, load_token_file

    big = tmp_path / "disk.img"
    with open(big, "wb") as handle:
        handle.truncate(2**30)
    for path in (big, "/dev/zero"):
        with pytest.raises(TokenFileError, match="is larger than 64 KB.*not a .vpptoken file"):
            load_token_file(path)
