"""Real receivers for the alerts tests: an SMTP server (aiosmtpd, optionally with STARTTLS or
implicit TLS and a login) and an HTTP server taking webhooks, each on a free loopback port,
plus a self-signed certificate for TLS and a host with the alerts plugin configured for them."""

from __future__ import annotations

import errno
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner
from tests.tls import self_signed_certificate

SMTP_USER = "mdm-alerts"
SMTP_PASSWORD = "smtp-Pa55-do-not-show"
WEBHOOK_SECRET = "T0SECRET/B0SECRET/xoxSECRETPATH"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate file, key file)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "localhost", stem=("cert.pem", "key.pem"), days=3650, ca=True)


@dataclass
class Mailbox:
    """What the SMTP server received: ``messages`` (parsed) with their envelopes and logins."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "starttls": session.ssl is not None})
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a free loopback port: ``security`` "none", "starttls" (required) or "ssl"."""

    def __init__(self, certificate: tuple[Path, Path], security: str = "none", login: bool = False):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.mailbox = Mailbox()
        self.port = free_port()
        self.security = security
        kwargs: dict[str, Any] = {}
        if security != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*map(str, certificate))
            kwargs["ssl_context" if security == "ssl" else "tls_context"] = context
            if security == "starttls":
                kwargs["require_starttls"] = True
        if login:

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
                user, password = auth_data.login.decode(), auth_data.password.decode()
                self.mailbox.logins.append((user, password))
                return AuthResult(success=user == SMTP_USER and password == SMTP_PASSWORD, handled=False)

            # aiosmtpd counts only STARTTLS as TLS: with implicit TLS it must not require it (nor AUTH, or it warns)
            kwargs.update(authenticator=authenticate, auth_required=security == "starttls", auth_require_tls=security == "starttls")
        self._controller = lambda port: Controller(self.mailbox, hostname="127.0.0.1", port=port, **kwargs)
        self.controller = self._controller(self.port)
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # the test server's own chatter is not ours to check

    def __enter__(self) -> SmtpServer:
        for _ in range(5):  # aiosmtpd needs a port number: another test (or xdist worker) may take it first
            try:
                self.controller.start()
                return self
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                self.controller.loop.close()
                self.port = free_port()
                self.controller = self._controller(self.port)
        raise RuntimeError("no free port for the test SMTP server")

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    def config(self, ca_file: Path | None = None, **extra: Any) -> str:
        """The ``[alerts]`` lines that send to this server."""
        lines = [
            'email_to = ["it@school.example", "ops@school.example"]',
            'email_from = "mdm@school.example"',
            'smtp_host = "127.0.0.1"',
            f"smtp_port = {self.port}",
            f'smtp_security = "{self.security}"',
            "smtp_timeout = 5",
        ]
        if ca_file is not None:
            lines.append(f'smtp_ca_file = "{ca_file}"')
        for key, value in extra.items():
            lines.append(f"{key} = {value}")
        return "\n".join(lines) + "\n"


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_server(security="starttls", login=True)`` starts one (stopped after the test)."""
    started: list[SmtpServer] = []

    def start(security: str = "none", login: bool = False) -> SmtpServer:
        server = SmtpServer(certificate, security, login).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


class WebhookServer:
    """An HTTP server on a free loopback port recording each POST; ``statuses`` are answered in
    turn (then ``default``); ``hang`` makes it accept and never answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.default = 200
        self.body = b"ok"
        self.release = threading.Event()
        self.hang = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(raw or b"null"), "raw": raw})
                if outer.hang:
                    outer.release.wait(30)
                status = outer.statuses.pop(0) if outer.statuses else outer.default
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)  # shutdown() waits up to one interval
        self.thread.start()

    @property
    def url(self) -> str:
        """The webhook's URL; its path stands for the secret part of a Slack or Teams URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/{WEBHOOK_SECRET}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_server() -> Iterator[Callable[[], WebhookServer]]:
    """``webhook_server()`` starts one (stopped after the test)."""
    started: list[WebhookServer] = []

    def start() -> WebhookServer:
        server = WebhookServer()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


FAST_VPP = """
[vpp]
max_attempts = 1
max_total_wait = 1.0
request_timeout = 5.0
"""


@pytest.fixture
def alerts_host(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> Callable[..., Host]:
    """``alerts_host(alerts_config, environ=..., sim=...)``: the installed plugins (alerts included),
    account ``school`` on the simulator (or ``sim``), ``[alerts]`` as given."""
    from plugins.vpp.testing import add_simulated_account

    def make(alerts: str = "", environ: dict[str, str] | None = None, account: bool = True, sim: Any = None) -> Host:
        host = make_host(config=FAST_VPP + "\n[alerts]\n" + alerts, environ=environ)
        if account:
            add_simulated_account(host, sim or simulator, project_dir)
        return host

    return make


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    """Run ``mdm ARGS`` on the test's configuration and database."""
    return MdmRunner(project_dir, monkeypatch, capsys)


def sync(host: Host) -> dict[str, Any]:
    """Sync account ``school`` (whatever the outcome)."""
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="test", wait=0)
    return report


def alerts(host: Host) -> list[dict[str, Any]]:
    """Every alert, oldest first."""
    from plugins.alerts.cli import list_alerts

    return list(reversed(list_alerts(host, limit=1000)))


def titles(host: Host) -> list[str]:
    return [a["title"] for a in alerts(host)]
