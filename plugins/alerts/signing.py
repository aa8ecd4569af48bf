"""Signed webhooks: each POST carries ``X-MDM-Signature``, an HMAC-SHA256 made with a secret of
that webhook's own, so that its receiver can tell this host's alerts from forged ones.

The signed text is ``X-MDM-Timestamp`` (Unix seconds), a dot, then the body as sent:
``X-MDM-Signature: sha256=<hex>``. A receiver recomputes it with the secret that ``mdm alerts
webhook-secret NAME`` prints, compares in constant time, and refuses a timestamp more than a few
minutes old (a replay). The secret is made at the webhook's first use (or by that command), kept
encrypted with the host's key (``mdm secrets``), never logged; ``--new`` replaces it, ``--forget``
drops it (a webhook no longer configured).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextlib import suppress
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mdm_core.db.typed import rowcount, table_of
from mdm_core.errors import MdmError, UsageError

from .models import WebhookSecret
from .settings import settings

if TYPE_CHECKING:
    from mdm_core.host import Host

SIGNATURE, TIMESTAMP = "X-MDM-Signature", "X-MDM-Timestamp"
SECRET_BYTES = 32


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-MDM-Signature`` value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_secret(host: Host, name: str, *, new: bool = False) -> str:
    """Webhook ``name``'s signing secret, made at its first use (two processes making it at once
    agree on the first one written); ``new``: replace it (the receiver needs the new one)."""

    def made() -> WebhookSecret:
        return WebhookSecret(name=name, secret_ciphertext=host.secrets.encrypt(secrets.token_urlsafe(SECRET_BYTES)))

    if new:

        def replace(session: Session) -> None:
            row = session.get(WebhookSecret, name)
            if row is not None:
                row.secret_ciphertext = made().secret_ciphertext
            session.add(row or made())

        with suppress(IntegrityError):  # another process made it first: that one is the secret
            host.db.run_write(replace)

    def read(session: Session) -> str | None:
        row = session.get(WebhookSecret, name)
        return None if row is None else row.secret_ciphertext

    ciphertext = host.db.read_or_add(read, made)
    assert ciphertext is not None
    return _readable(host, name, ciphertext)


def forget_webhook_secret(host: Host, name: str) -> None:
    """Drop webhook ``name``'s stored secret (one of a webhook removed from ``[alerts.webhooks]``,
    left unreadable by a lost key); a webhook still configured makes a new one at its next POST."""
    table = table_of(WebhookSecret)
    if not host.db.run_write(lambda session: rowcount(session.execute(delete(table).where(table.c.name == name)))):
        raise MdmError(f"webhook {name} has no stored signing secret: nothing to forget")


def _readable(host: Host, name: str, ciphertext: str) -> str:
    try:
        return host.secrets.decrypt(ciphertext)
    except MdmError:
        raise MdmError(
            f"the signing secret of webhook {name} cannot be decrypted with this host's key (see `mdm secrets status`): "
            f"restore the key, or run `mdm alerts webhook-secret {name} --new` and give its receiver the new secret"
        ) from None


def configured_webhook(host: Host, name: str) -> str:
    """``name`` if ``[alerts.webhooks]`` has it, else a one-line usage error naming them."""
    names = sorted(settings(host).webhooks)
    if name not in names:
        known = f"its webhooks are {', '.join(names)}" if names else "it has none"
        raise UsageError(f"no webhook named {name!r} under [alerts.webhooks] ({known}): give one of their names")
    return name
