"""The channels alerts go out through: e-mail over SMTP and webhooks (a JSON POST).

A channel sends one message or raises ``DeliveryError`` with a one-line reason that names the
channel by what is safe to show (the SMTP server, a webhook's name and host), never a password
or a webhook URL (Slack's and Teams' URLs are their credential). ``permanent`` failures (the
server refused for good: a 5xx SMTP reply, an HTTP 4xx) are not retried.
"""

from __future__ import annotations

import base64
import contextlib
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from mdm_core.errors import MdmError, one_line

from .settings import AlertsSettings
from .signing import SIGNATURE, TIMESTAMP, signature

if TYPE_CHECKING:
    from mdm_core.config import Config, SecretRef


class DeliveryError(Exception):
    """A message could not be sent; ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    """A message as channels see it (plain values)."""

    id: int | None
    created_at: datetime
    kind: str
    subject: str
    state: str
    severity: str
    account: str | None
    title: str
    text: str
    action: str
    fields: dict[str, Any]

    def body(self) -> str:
        """The plain text every channel shows: what happened, then what to do."""
        ref = f"alert #{self.id}, " if self.id is not None else ""
        return f"{self.title}\n\n{self.text}\n\nWhat to do: {self.action}\n\n-- \nmdm-host {ref}{self.created_at:%Y-%m-%d %H:%M} UTC ({self.subject})"

    def headline(self) -> str:
        """``[WARNING] title``: the first line of a chat message or an e-mail subject."""
        return f"[{self.severity.upper()}] {self.title}"


class Channel(Protocol):
    """Something that sends alerts."""

    name: str

    def describe(self) -> str:
        """What to call the channel in output: no secret."""

    def send(self, message: Outgoing) -> str | None:
        """Send or raise ``DeliveryError``; returns a note worth keeping (e.g. refused recipients)."""


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` on one line with every secret in it replaced by ``***``."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return one_line(text)


def network_reason(exc: BaseException) -> str:
    """A connection failure in a few words, without the text of the exception (it may hold a URL)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason})" if exc.reason else "TLS failed"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "connection closed by the server"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


# --------------------------------------------------------------------------- e-mail


class EmailChannel:
    """E-mail to ``[alerts] email_to`` through ``smtp_host`` (STARTTLS, implicit TLS or plain)."""

    name = "email"

    def __init__(self, s: AlertsSettings, config: Config):
        self.s = s
        self.config = config

    def describe(self) -> str:
        count = len(self.s.email_to)
        return f"email to {count} recipient{'s' if count != 1 else ''} via {self.s.smtp_host}:{self.s.port} ({self.s.smtp_security})"

    def message(self, message: Outgoing) -> EmailMessage:
        """The e-mail: ``[mdm] WARNING: title``, plain text."""
        mail = EmailMessage()
        prefix = f"{self.s.subject_prefix} " if self.s.subject_prefix else ""
        mail["Subject"] = one_line(f"{prefix}{message.severity.upper()}: {message.title}")  # a line break never reaches a header
        mail["From"] = self.s.email_from
        mail["To"] = ", ".join(self.s.email_to)
        mail["Date"] = formatdate(message.created_at.timestamp(), usegmt=True)
        mail["Message-ID"] = make_msgid("mdm-alert", domain=self.s.email_from.rpartition("@")[2] or None)
        mail["X-MDM-Alert"] = one_line(f"{message.kind} {message.state} {message.subject}")
        mail.set_content(message.body())
        return mail

    def send(self, message: Outgoing) -> str | None:
        s = self.s
        password = _resolve(s.smtp_password, self.config, "smtp_password") if s.smtp_username else None
        secrets = [password] if password else []
        where = f"SMTP server {s.smtp_host}:{s.port}"
        try:
            context = ssl.create_default_context(cafile=str(self.config.resolve_path(s.smtp_ca_file)) if s.smtp_ca_file else None)
        except OSError as exc:
            raise DeliveryError(f"[alerts] smtp_ca_file {s.smtp_ca_file} cannot be read ({exc.strerror})", permanent=True) from None
        try:
            if s.smtp_security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.port, timeout=s.smtp_timeout, context=context)
            else:
                client = smtplib.SMTP(s.smtp_host, s.port, timeout=s.smtp_timeout)
            with contextlib.closing(client):  # QUIT only after a delivery (_quit)
                client.ehlo()
                if s.smtp_security == "starttls":
                    if not client.has_extn("starttls"):
                        raise DeliveryError(
                            f'{where} does not offer STARTTLS: set [alerts] smtp_security = "ssl" (port 465) or "none" for a local relay', permanent=True
                        )
                    client.starttls(context=context)
                    client.ehlo()
                if s.smtp_username:
                    if not client.has_extn("auth"):
                        raise DeliveryError(_no_auth(where, s.smtp_security, client.has_extn("starttls")), permanent=True)
                    client.login(s.smtp_username, password or "")
                refused = client.send_message(self.message(message), from_addr=s.email_from, to_addrs=list(s.email_to))
                _quit(client)
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                scrub(f"{where} refused every recipient ({', '.join(f'{r}: {c}' for r, (c, _) in exc.recipients.items())})", secrets),
                permanent=all(c >= 500 for c in codes),
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                scrub(
                    f"{where} refused the login of {s.smtp_username} ({exc.smtp_code} {_text(exc.smtp_error)}): check smtp_username and the password", secrets
                ),
                permanent=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPResponseException as exc:
            said = f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}{_fix(exc.smtp_code, _text(exc.smtp_error), s)}"
            raise DeliveryError(scrub(said, secrets), permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(scrub(f"{where}: {exc}", secrets), permanent=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot send through {where}: {network_reason(exc)}") from None
        if refused:
            return scrub(f"refused recipients: {', '.join(f'{r} ({c})' for r, (c, _) in refused.items())}", secrets)
        return None


def _quit(client: smtplib.SMTP) -> None:
    """End the session after the message was accepted: whatever the server answers to QUIT (an
    error while it shuts down), or its closing the connection first, the alert was delivered."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _fix(code: int, text: str, s: AlertsSettings) -> str:
    """The setting to change when a relay refuses mail for want of TLS or a login (530), else ''."""
    if code != 530:
        return ""
    if "tls" in text.lower() and s.smtp_security == "none":
        return ': it takes mail only over TLS: set [alerts] smtp_security = "starttls" (or "ssl" for port 465)'
    if not s.smtp_username:
        return ": it takes mail only after a login: set [alerts] smtp_username and smtp_password"
    return ""


def _no_auth(where: str, security: str, offers_starttls: bool) -> str:
    """Why a login cannot be tried, and the fix: the relay offers no AUTH (a relay taking mail
    without a login; a server offering it only after STARTTLS)."""
    if security == "none" and offers_starttls:
        return f'{where} offers no login (AUTH) before STARTTLS: set [alerts] smtp_security = "starttls", or remove smtp_username and smtp_password'
    return f"{where} offers no login (AUTH): remove [alerts] smtp_username and smtp_password (a relay taking mail without a login), or enable AUTH on it"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- webhooks


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET without its body: treat a redirect as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookChannel:
    """A JSON POST: ``text`` (what Slack and Teams show) plus the alert's fields, signed with
    the webhook's secret (``secret_of(name)``, :mod:`.signing`) when sent."""

    def __init__(self, name: str, url_ref: SecretRef, s: AlertsSettings, config: Config, secret_of: Callable[[str], str] | None = None):
        self.name = f"webhook:{name}"
        self.label = name
        self.url_ref = url_ref
        self.s = s
        self.config = config
        self.secret_of = secret_of

    def _url(self) -> tuple[str, str]:
        url = _resolve(self.url_ref, self.config, f"webhooks.{self.label}").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"webhook {self.label}: its URL ({_where(self.url_ref)}) is not an http(s) URL", permanent=True)
        return url, parts.hostname

    def describe(self) -> str:
        try:
            _, hostname = self._url()
        except (DeliveryError, MdmError):
            hostname = "URL not available"
        return f"webhook {self.label} ({hostname})"

    @staticmethod
    def payload(message: Outgoing) -> dict[str, Any]:
        """The JSON body: ``text`` for chat tools, then structured fields for everything else
        (raw values). ``text`` has Slack's three control characters escaped (``&amp;``,
        ``&lt;``, ``&gt;``; https://api.slack.com/reference/surfaces/formatting#escaping): a
        serial number or an error holding ``<!channel>`` or ``<url|label>`` is shown as written,
        never a mention or a link."""
        text = f"{message.headline()}\n{message.text}\nWhat to do: {message.action}"
        return {
            "text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
            "title": message.title,
            "severity": message.severity,
            "kind": message.kind,
            "state": message.state,
            "subject": message.subject,
            "account": message.account,
            "action": message.action,
            "details": message.fields,
            "id": message.id,
            "created_at": message.created_at.isoformat(),
            "source": "mdm-host",
        }

    def send(self, message: Outgoing) -> str | None:
        url, hostname = self._url()
        parts = urlsplit(url)
        secrets = [url, parts.path, parts.query, parts.netloc if "@" in parts.netloc else "", unquote(parts.password or "")]
        headers = {"Content-Type": "application/json", "User-Agent": "mdm-host-alerts"}
        if "@" in parts.netloc:  # urllib would look up "user:password@host" as the host name: HTTP Basic, as curl sends it
            login = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        body = json.dumps(self.payload(message)).encode()
        where = f"webhook {self.label} ({hostname})"
        if self.secret_of is not None:
            try:
                secret = self.secret_of(self.label)
            except MdmError as exc:
                raise DeliveryError(f"{where}: {exc}") from None
            secrets.append(secret)
            headers[TIMESTAMP] = str(int(time.time()))
            headers[SIGNATURE] = signature(secret, headers[TIMESTAMP], body)
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=self.s.webhook_timeout) as response:
                response.read(4096)
                return None
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                snippet = exc.read(300).decode("utf-8", "replace")
            except Exception:
                snippet = ""
            finally:
                exc.close()
            detail = scrub(f"HTTP {status}" + (f": {snippet}" if snippet.strip() else ""), secrets)
            if 300 <= status < 400:
                raise DeliveryError(f"{where} answered {detail} (redirects are not followed: check the URL)", permanent=True) from None
            permanent = 400 <= status < 500 and status not in (408, 425, 429)
            raise DeliveryError(f"{where} answered {detail}", permanent=permanent) from None
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else None
            raise DeliveryError(f"cannot reach {where}: {network_reason(reason) if reason else 'request failed'}") from None
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"cannot reach {where}: {network_reason(exc)}") from None


# --------------------------------------------------------------------------- configured channels


def _where(ref: SecretRef) -> str:
    return f"environment variable {ref.env}" if ref.env else f"file {ref.file}"


def _resolve(ref: SecretRef | None, config: Config, key: str) -> str:
    if ref is None:
        raise DeliveryError(f"[alerts] {key} is not set", permanent=True)
    try:
        return ref.resolve(config)
    except MdmError as exc:  # names the variable or the file, never a value
        raise DeliveryError(f"[alerts] {key}: {exc}") from None


def known_secrets(s: AlertsSettings, config: Config) -> list[str]:
    """Every secret ``[alerts]`` refers to (the password, each webhook URL and its path), to keep
    any of them out of a message about another channel too."""
    found: list[str] = []
    for ref in [s.smtp_password, *s.webhooks.values()]:
        try:
            value = ref.resolve(config) if ref is not None else ""
        except MdmError:
            continue
        parts = urlsplit(value)
        found += [value, parts.path, parts.query, unquote(parts.password or "")] if parts.scheme else [value]
    return found


def configured_channels(s: AlertsSettings, config: Config, secret_of: Callable[[str], str] | None = None) -> dict[str, Channel]:
    """Every channel ``[alerts]`` configures, by name (``email``, ``webhook:NAME``); ``secret_of``:
    a webhook's signing secret by its name, for the channels that send."""
    channels: dict[str, Channel] = {}
    for name in s.channel_names:
        kind, _, label = name.partition(":")
        channels[name] = EmailChannel(s, config) if kind == "email" else WebhookChannel(label, s.webhooks[label], s, config, secret_of)
    return channels
