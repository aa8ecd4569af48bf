"""Webhooks are signed: a receiver tells this host's alerts from forged ones (X-MDM-Signature,
HMAC-SHA256 with a secret of each webhook's own, which `mdm alerts webhook-secret NAME` prints)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any, cast

import pytest

from mdm_core.testing import MdmRunner
from tests.conftest import database_param

from .conftest import WEBHOOK_SECRET


def readme_check() -> Callable[[str, Any, bytes], bool]:
    """The receiver's check the README gives under **Signed webhooks**, run as written there."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    code = readme[readme.index("**Signed webhooks.**") :].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # the README's own snippet, as a receiver would copy it
    return cast("Callable[[str, Any, bytes], bool]", scope["from_mdm_host"])


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The README's check of a POST as received (header names are case-insensitive there)."""
    received = Message()
    for key, value in headers.items():
        received[key] = value
    return readme_check()(secret, received, body)


def test_the_readmes_receiver_check_refuses_forged_stale_and_malformed_headers() -> None:
    """A receiver copying the README's check: a forged signature holding a non-ASCII character
    (a header any client can send) made it raise TypeError (a 500 there, hmac.compare_digest of
    text) instead of answering False; an old timestamp (a replay) and a changed body are refused."""
    from plugins.alerts.signing import SIGNATURE, TIMESTAMP, signature

    check, body, now = readme_check(), b'{"text": "alert"}', str(int(time.time()))
    signed = {TIMESTAMP: now, SIGNATURE: signature("s3cret", now, body)}
    assert verify("s3cret", signed, body) and not verify("other", signed, body) and not verify("s3cret", signed, body + b" ")
    old = str(int(time.time()) - 600)
    assert not verify("s3cret", {TIMESTAMP: old, SIGNATURE: signature("s3cret", old, body)}, body)  # a replay
    assert not check("s3cret", {"X-MDM-Timestamp": now, "X-MDM-Signature": "sha256=\u00e9"}, body)
    assert not check("s3cret", {"X-MDM-Timestamp": "\u00b2", "X-MDM-Signature": signed[SIGNATURE]}, body)  # a digit int() refuses
    assert not check("s3cret", {}, body)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_each_webhook_post_is_signed_with_its_own_secret_which_the_command_prints(
    mdm: Any,
    webhook_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    project_dir: Path,
    request: pytest.FixtureRequest,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Webhook POSTs carried no signature: anyone who learnt a receiver's URL could post alerts
    it would believe. Each now carries X-MDM-Timestamp and X-MDM-Signature, made with that
    webhook's own secret; `mdm alerts webhook-secret NAME` prints it (the same each time), --new
    replaces it; the secret is in no log line nor other output."""
    monkeypatch.setenv("MDM_DATABASE_URL", database_param(request, project_dir, kind))
    slack, teams = webhook_server(), webhook_server()
    monkeypatch.setenv("SLACK_URL", slack.url)
    monkeypatch.setenv("TEAMS_URL", teams.url)
    mdm.conf.write_text('[alerts]\nwebhooks = { slack = { env = "SLACK_URL" }, teams = { env = "TEAMS_URL" } }\n')
    assert mdm("db", "upgrade")[0] == 0  # the secrets are the database's: `alerts test` needs it
    caplog.set_level(logging.DEBUG)
    code, out, err = mdm("alerts", "test")
    assert code == 0, out + err
    code, secret, err = mdm("alerts", "webhook-secret", "slack")
    secret = secret.strip()
    assert code == 0 and len(secret) >= 43 and err == "", err
    assert mdm("alerts", "webhook-secret", "slack")[1].strip() == secret
    other = mdm("alerts", "webhook-secret", "teams")[1].strip()
    [posted], [elsewhere] = slack.requests, teams.requests
    assert verify(secret, posted["headers"], posted["raw"]) and not verify(other, posted["headers"], posted["raw"])
    assert verify(other, elsewhere["headers"], elsewhere["raw"])
    assert not verify(secret, posted["headers"], posted["raw"].replace(b"Test alert", b"Fake alert"))  # a changed body fails
    assert secret not in caplog.text and other not in caplog.text
    code, new, _ = mdm("alerts", "webhook-secret", "slack", "--new")
    new = new.strip()
    assert code == 0 and new != secret
    assert mdm("alerts", "test")[0] == 0
    assert verify(new, slack.requests[1]["headers"], slack.requests[1]["raw"]) and not verify(secret, slack.requests[1]["headers"], slack.requests[1]["raw"])
    code, out, err = mdm("secrets", "status")
    assert code == 0 and "stored secrets: 2: 2 with the current key," in out and out.endswith("0 unreadable\n"), out  # encrypted with the host's key
    assert WEBHOOK_SECRET not in out + err


def test_a_webhook_name_not_configured_is_one_line_naming_them(mdm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_URL", "https://hooks.example/x")
    mdm.conf.write_text('[alerts]\nwebhooks = { slack = { env = "SLACK_URL" } }\n')
    code, out, err = mdm("alerts", "webhook-secret", "slak")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "no webhook named 'slak' under [alerts.webhooks] (its webhooks are slack): give one of their names" in err


def test_a_signing_secret_the_key_cannot_read_fails_the_post_saying_what_to_do(alerts_host: Any, webhook_server: Any) -> None:
    """Its secret stored with another key: the POST is not sent unsigned; its error says how to fix it."""
    from cryptography.fernet import Fernet

    from plugins.alerts.channels import DeliveryError, configured_channels
    from plugins.alerts.delivery import signer
    from plugins.alerts.models import WebhookSecret
    from plugins.alerts.settings import settings

    from .test_channels import MESSAGE

    hook = webhook_server()
    host = alerts_host('webhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, account=False)
    lost = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    host.db.run_write(lambda s: s.add(WebhookSecret(name="ops", secret_ciphertext=lost)))
    channel = configured_channels(settings(host), host.config, signer(host))["webhook:ops"]
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE)
    assert str(caught.value) == (
        "webhook ops (127.0.0.1): the signing secret of webhook ops cannot be decrypted with this host's key (see `mdm secrets status`): "
        "restore the key, or run `mdm alerts webhook-secret ops --new` and give its receiver the new secret"
    )
    assert hook.requests == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_alerts_0003_adds_the_webhook_secrets_to_a_database_at_0002_keeping_its_alerts(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str
) -> None:
    from tests.test_apple_migrations import _database_at, _upgrade_then_query

    url = None if kind == "sqlite" else database_param(request, project_dir, kind)
    alert = (
        "INSERT INTO alerts_message (id, created_at, kind, subject, state, severity, title, text, action, fields) "
        "VALUES (4, '2026-01-02 03:04:05+00:00', 'token', 'token:school', 'expired', 'critical', 't', 'x', 'a', '{}')"
    )
    mdm = _database_at(project_dir, monkeypatch, capsys, {"alerts": "0002"}, [alert], url)
    alerts, secrets = _upgrade_then_query(
        mdm, "alerts: applied 0003 (alerts webhook secrets", "SELECT id, subject FROM alerts_message", "SELECT name FROM alerts_webhook_secret", url=url
    )
    assert (alerts, secrets) == ([(4, "token:school")], [])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_secret_of_a_webhook_removed_from_the_configuration_can_be_forgotten(
    mdm: Any, monkeypatch: pytest.MonkeyPatch, project_dir: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """A webhook removed from [alerts.webhooks] kept its secret; once the key was lost, `mdm
    secrets status` said 1 unreadable (exit 1) for good, `mdm secrets rotate` was refused, and
    `--new` refused the name (not configured): nothing could clear it. `--forget` drops it."""
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MDM_DATABASE_URL", database_param(request, project_dir, kind))
    monkeypatch.setenv("OLD_URL", "https://hooks.example/old")
    mdm.conf.write_text('[alerts]\nwebhooks = { old = { env = "OLD_URL" } }\n')
    assert mdm("alerts", "webhook-secret", "old")[0] == 0
    mdm.conf.write_text("[alerts]\n")  # the webhook removed
    monkeypatch.setenv("MDM_SECRET_KEY", Fernet.generate_key().decode())  # the key lost
    code, out, err = mdm("secrets", "status")
    assert code == 1 and out.endswith("1 unreadable\n"), out + err
    assert mdm("alerts", "webhook-secret", "old", "--new")[0] == 2  # not configured any more
    code, out, err = mdm("alerts", "webhook-secret", "old", "--forget")
    assert (code, out, err) == (0, "forgot the signing secret of webhook old\n", ""), out + err
    code, out, err = mdm("secrets", "status")
    assert code == 0 and out.endswith("0 unreadable\n"), out + err
    code, out, err = mdm("alerts", "webhook-secret", "old", "--forget")
    assert (code, out) == (1, "") and err == "mdm: error: webhook old has no stored signing secret: nothing to forget\n", err


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_unreadable_signing_secret_names_the_webhook_command_not_a_vpp_token(
    mdm: Any, monkeypatch: pytest.MonkeyPatch, project_dir: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """With the key lost, `mdm secrets rotate` and `new-key` sent the admin to enter a VPP token
    again for a webhook's signing secret (`mdm vpp account set NAME --token-file FILE`), which
    cannot fix it. They name `mdm alerts webhook-secret NAME --new`, and running it as said
    lets the rotation through."""
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MDM_DATABASE_URL", database_param(request, project_dir, kind))
    monkeypatch.setenv("HOOK_URL", "https://hooks.example/a")
    mdm.conf.write_text('[alerts]\nwebhooks = { ops = { env = "HOOK_URL" } }\n')
    assert mdm("alerts", "webhook-secret", "ops")[0] == 0
    monkeypatch.setenv("MDM_SECRET_KEY", Fernet.generate_key().decode())  # the key lost
    code, out, err = mdm("secrets", "rotate")
    assert code == 1 and "\n" not in err.rstrip("\n"), err
    assert "alerts_webhook_secret ('ops', name ops)" in err and "(`mdm alerts webhook-secret ops --new`)" in err, err
    assert "vpp account set" not in err, err
    assert mdm("alerts", "webhook-secret", "ops", "--new")[0] == 0  # as the line says
    code, out, err = mdm("secrets", "rotate")
    assert code == 0 and out.startswith("re-encrypted 1 secret(s)"), out + err


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_new_key_names_the_webhook_command_for_signing_secrets_it_cannot_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], project_dir: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """`mdm secrets new-key` after a lost key file names, beside the tokens' command, the one
    that makes each webhook's signing secret again."""
    mdm = MdmRunner(project_dir, monkeypatch, capsys, unset=["MDM_SECRET_KEY"])  # the key is the key file under var/
    monkeypatch.setenv("MDM_DATABASE_URL", database_param(request, project_dir, kind))
    monkeypatch.setenv("HOOK_URL", "https://hooks.example/a")
    mdm.conf.write_text('[alerts]\nwebhooks = { ops = { env = "HOOK_URL" } }\n')
    assert mdm("alerts", "webhook-secret", "ops")[0] == 0
    (project_dir / "var" / "secret.key").unlink()  # the key file lost
    code, out, err = mdm("secrets", "new-key")
    assert code == 0 and "; for a webhook's signing secret, run `mdm alerts webhook-secret NAME --new`" in out, out + err
