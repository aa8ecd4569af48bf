"""Each channel against a real receiver: SMTP (plain, STARTTLS, implicit TLS, with a login)
and webhooks over HTTP; failures are one line, permanent or not, and never show a secret."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugins.alerts.channels import DeliveryError, Outgoing, configured_channels
from plugins.alerts.settings import settings

from .conftest import SMTP_PASSWORD, SMTP_USER, WEBHOOK_SECRET, free_port

MESSAGE = Outgoing(
    id=7,
    created_at=datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
    kind="token",
    subject="token:school",
    state="expiring_14",
    severity="warning",
    account="school",
    title="VPP token of account 'school' expires in 13 days",
    text="When it expires, this account stops syncing.",
    action="mdm vpp account set school --token-file NEW.vpptoken",
    fields={"tokenState": "expiring_14"},
)
ENV = {"SMTP_PASSWORD": SMTP_PASSWORD}


def channel(host, name="email"):
    return configured_channels(settings(host), host.config)[name]


def test_email_through_a_plain_local_relay(alerts_host, smtp_server):
    server = smtp_server("none")
    host = alerts_host(server.config(), account=False)
    assert channel(host).describe() == f"email to 2 recipients via 127.0.0.1:{server.port} (none)"
    assert channel(host).send(MESSAGE) is None
    [mail] = server.mailbox.messages
    assert mail["Subject"] == "[mdm] WARNING: VPP token of account 'school' expires in 13 days"
    assert mail["From"] == "mdm@school.example" and mail["To"] == "it@school.example, ops@school.example"
    assert server.mailbox.envelopes == [{"from": "mdm@school.example", "to": ["it@school.example", "ops@school.example"], "starttls": False}]
    body = mail.get_content()
    assert "When it expires, this account stops syncing." in body
    assert "What to do: mdm vpp account set school --token-file NEW.vpptoken" in body
    assert "alert #7" in body and mail["Message-ID"].endswith("@school.example>")


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_a_login(alerts_host, smtp_server, certificate, security):
    server = smtp_server(security, login=True)
    host = alerts_host(
        server.config(ca_file=certificate[0], smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }'), environ=ENV, account=False
    )
    assert channel(host).send(MESSAGE) is None
    assert server.mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert server.mailbox.envelopes[0]["starttls"] is (security == "starttls")  # "ssl": the server speaks nothing but TLS
    assert len(server.mailbox.messages) == 1


def test_an_untrusted_certificate_is_refused_and_retried(alerts_host, smtp_server):
    server = smtp_server("starttls", login=True)
    host = alerts_host(server.config(smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }'), environ=ENV, account=False)
    with pytest.raises(DeliveryError) as caught:
        channel(host).send(MESSAGE)
    assert str(caught.value).startswith(f"cannot send through SMTP server 127.0.0.1:{server.port}: TLS certificate not trusted")
    assert not caught.value.permanent and server.mailbox.logins == [] and server.mailbox.messages == []


def test_a_wrong_password_is_permanent_and_never_shown(alerts_host, smtp_server, certificate):
    server = smtp_server("starttls", login=True)
    wrong = "wrong-Pa55-secret"
    host = alerts_host(
        server.config(ca_file=certificate[0], smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }'),
        environ={"SMTP_PASSWORD": wrong},
        account=False,
    )
    with pytest.raises(DeliveryError) as caught:
        channel(host).send(MESSAGE)
    assert caught.value.permanent
    assert f"refused the login of {SMTP_USER} (535" in str(caught.value)
    assert wrong not in str(caught.value) and server.mailbox.messages == []


def test_a_missing_password_variable_names_the_variable(alerts_host, smtp_server, certificate):
    server = smtp_server("starttls", login=True)
    host = alerts_host(server.config(ca_file=certificate[0], smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "NO_SUCH_VAR" }'), account=False)
    with pytest.raises(DeliveryError, match=r"^\[alerts\] smtp_password: environment variable NO_SUCH_VAR is not set"):
        channel(host).send(MESSAGE)


def test_a_server_that_is_down(alerts_host, closed_port):
    port = closed_port
    host = alerts_host(f'email_to = ["it@school.example"]\nemail_from = "mdm@school.example"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n', account=False)
    with pytest.raises(DeliveryError) as caught:
        channel(host).send(MESSAGE)
    assert str(caught.value) == f"cannot send through SMTP server 127.0.0.1:{port}: connection refused" and not caught.value.permanent


def test_webhook_posts_text_and_structured_fields(alerts_host, webhook_server):
    hook = webhook_server()
    host = alerts_host('webhooks = { slack = { env = "SLACK_URL" } }\n', environ={"SLACK_URL": hook.url}, account=False)
    webhook = channel(host, "webhook:slack")
    assert webhook.describe() == "webhook slack (127.0.0.1)"
    assert webhook.send(MESSAGE) is None
    [request] = hook.requests
    assert request["path"] == f"/services/{WEBHOOK_SECRET}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["json"]
    assert body["text"] == (
        "[WARNING] VPP token of account 'school' expires in 13 days\nWhen it expires, this account stops syncing.\n"
        "What to do: mdm vpp account set school --token-file NEW.vpptoken"
    )
    assert {k: body[k] for k in ("severity", "kind", "state", "subject", "account", "id", "source")} == {
        "severity": "warning",
        "kind": "token",
        "state": "expiring_14",
        "subject": "token:school",
        "account": "school",
        "id": 7,
        "source": "mdm-host",
    }
    assert body["details"] == {"tokenState": "expiring_14"} and body["created_at"] == "2026-03-01T08:30:00+00:00"


def test_webhook_text_escapes_what_slack_would_parse(alerts_host, webhook_server):
    """Slack reads ``&``, ``<`` and ``>`` in ``text`` as markup (``<!channel>`` pings everyone,
    ``<url|label>`` is a link): a serial number or an error text holding them is shown as
    written; the structured fields keep the raw values."""
    from dataclasses import replace

    hook = webhook_server()
    host = alerts_host('webhooks = { slack = { env = "SLACK_URL" } }\n', environ={"SLACK_URL": hook.url}, account=False)
    message = replace(
        MESSAGE, title="Install failed for device <!channel>", text="Apple said: R&D <https://evil.example|click>", action="see `mdm apps installs` > failed"
    )
    assert channel(host, "webhook:slack").send(message) is None
    body = hook.requests[0]["json"]
    assert body["text"] == (
        "[WARNING] Install failed for device &lt;!channel&gt;\nApple said: R&amp;D &lt;https://evil.example|click&gt;\n"
        "What to do: see `mdm apps installs` &gt; failed"
    )
    assert (body["title"], body["action"]) == (message.title, message.action)


@pytest.mark.parametrize("status, permanent", [(500, False), (503, False), (429, False), (404, True), (403, True), (302, True)])
def test_webhook_failures_are_one_line_without_the_url(alerts_host, webhook_server, status, permanent):
    hook = webhook_server()
    hook.default = status
    hook.body = f"no such hook: POST {hook.url} (/services/{WEBHOOK_SECRET})".encode()  # a server echoing the URL
    host = alerts_host('webhooks = { teams = { file = "var/teams.url" } }\n', account=False)
    (host.config.var_dir / "teams.url").write_text(hook.url + "\n")
    with pytest.raises(DeliveryError) as caught:
        channel(host, "webhook:teams").send(MESSAGE)
    text = str(caught.value)
    assert text.startswith(f"webhook teams (127.0.0.1) answered HTTP {status}: no such hook: POST *** (***)")
    assert caught.value.permanent is permanent
    assert WEBHOOK_SECRET not in text and "SECRET" not in text and "\n" not in text


def test_webhook_unreachable_and_bad_urls(alerts_host, project_dir, closed_port):
    down = f"http://127.0.0.1:{closed_port}/services/{WEBHOOK_SECRET}"
    host = alerts_host(
        'webhooks = { down = { env = "DOWN" }, odd = { env = "ODD" } }\n', environ={"DOWN": down, "ODD": f"file:///etc/{WEBHOOK_SECRET}"}, account=False
    )
    with pytest.raises(DeliveryError) as caught:
        channel(host, "webhook:down").send(MESSAGE)
    assert str(caught.value) == "cannot reach webhook down (127.0.0.1): connection refused" and not caught.value.permanent
    with pytest.raises(DeliveryError) as caught:
        channel(host, "webhook:odd").send(MESSAGE)
    assert str(caught.value) == "webhook odd: its URL (environment variable ODD) is not an http(s) URL" and caught.value.permanent
    assert channel(host, "webhook:odd").describe() == "webhook odd (URL not available)"


def test_a_login_to_a_relay_without_auth_names_the_fix(alerts_host, smtp_server, certificate):
    """A relay that takes mail without a login offers no AUTH: the error said the library's
    "SMTP AUTH extension not supported by server.", not what to change."""
    server = smtp_server("none")
    host = alerts_host(server.config(smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }'), environ=ENV, account=False)
    with pytest.raises(DeliveryError) as caught:
        channel(host).send(MESSAGE)
    assert str(caught.value) == (
        f"SMTP server 127.0.0.1:{server.port} offers no login (AUTH): remove [alerts] smtp_username and smtp_password "
        "(a relay taking mail without a login), or enable AUTH on it"
    )
    assert caught.value.permanent and server.mailbox.messages == []
    # a server offering AUTH only after STARTTLS, asked in plain text: the fix is STARTTLS
    tls = smtp_server("starttls", login=True)
    plain = tls.config(smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }')
    plain = plain.replace('smtp_security = "starttls"', 'smtp_security = "none"')
    with pytest.raises(DeliveryError) as caught:
        channel(alerts_host(plain, environ=ENV, account=False)).send(MESSAGE)
    assert str(caught.value) == (
        f'SMTP server 127.0.0.1:{tls.port} offers no login (AUTH) before STARTTLS: set [alerts] smtp_security = "starttls", '
        "or remove smtp_username and smtp_password"
    )
    assert tls.mailbox.logins == [] and SMTP_PASSWORD not in str(caught.value)


def test_a_webhook_url_with_a_login_sends_it_as_basic_auth(alerts_host, webhook_server):
    """A receiver behind HTTP Basic (``https://user:password@host/...``, as curl takes it): urllib
    looked up ``user:password@host`` as the host name, so every alert failed 'host name not
    found' (retried, then failed) though the host was up. The login goes as HTTP Basic, the
    request to the host alone; the password is never shown."""
    import base64

    hook = webhook_server()
    url = hook.url.replace("http://", "http://hook-user:hook%40Pa55@")
    host = alerts_host('webhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": url}, account=False)
    webhook = channel(host, "webhook:ops")
    assert webhook.describe() == "webhook ops (127.0.0.1)"
    assert webhook.send(MESSAGE) is None
    [request] = hook.requests
    assert request["path"] == f"/services/{WEBHOOK_SECRET}"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"hook-user:hook@Pa55").decode()
    hook.default, hook.body = 500, b"bad login hook-user:hook@Pa55"  # a server echoing the login
    with pytest.raises(DeliveryError) as caught:
        webhook.send(MESSAGE)
    assert str(caught.value) == "webhook ops (127.0.0.1) answered HTTP 500: bad login hook-user:***"


def test_a_message_accepted_is_sent_whatever_the_server_answers_to_quit(alerts_host):
    """A relay that accepted the message (250) and then answered QUIT with an error (a 4xx while
    it shuts down) or closed the connection: smtplib raised that answer from the end of the
    session, so a delivered alert was retried (sent twice) or, with a 5xx, marked failed. The
    session's end no longer counts once the message was accepted."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    class RudeAtQuit(SMTP):
        quit_answer = ""

        async def smtp_QUIT(self, arg):
            await self.push(self.quit_answer)
            self.transport.close()

    class Server(Controller):
        def factory(self):
            return RudeAtQuit(self.handler)

    for answer in ("451 4.3.0 shutting down", "554 5.0.0 go away"):
        RudeAtQuit.quit_answer = answer
        port = free_port()
        controller = Server(Handler(), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            host = alerts_host(
                f'email_to = ["it@school.example"]\nemail_from = "mdm@school.example"\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "none"\n',
                account=False,
            )
            assert channel(host).send(MESSAGE) is None
        finally:
            controller.stop()
    assert len(received) == 2


def test_a_relay_wanting_tls_or_a_login_names_the_setting(alerts_host, smtp_server, certificate):
    """A relay requiring STARTTLS, asked with smtp_security = "none", refused the mail with '530
    Must issue a STARTTLS command first', and one requiring a login, asked without
    smtp_username, with '530 Authentication required': the error gave the server's words, not
    the setting to change."""
    tls = smtp_server("starttls")
    plain = tls.config().replace('smtp_security = "starttls"', 'smtp_security = "none"')
    with pytest.raises(DeliveryError) as caught:
        channel(alerts_host(plain, account=False)).send(MESSAGE)
    assert str(caught.value) == (
        f"SMTP server 127.0.0.1:{tls.port} answered 530 Must issue a STARTTLS command first: "
        'it takes mail only over TLS: set [alerts] smtp_security = "starttls" (or "ssl" for port 465)'
    )
    assert caught.value.permanent
    login = smtp_server("starttls", login=True)
    with pytest.raises(DeliveryError) as caught:
        channel(alerts_host(login.config(ca_file=certificate[0]), account=False)).send(MESSAGE)
    assert str(caught.value).endswith(": it takes mail only after a login: set [alerts] smtp_username and smtp_password"), str(caught.value)
    assert login.mailbox.messages == []
