"""Encryption at rest for secrets kept in the database (VPP tokens).

The key comes from ``MDM_SECRET_KEY``, from ``[core] secret_key`` (a reference), or from a key
file created on first use under ``var/`` with mode 0600. The cipher is Fernet (AES-128-CBC
with HMAC-SHA256) from the ``cryptography`` package; a database copied without the key does
not reveal the secrets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mdm_core.errors import MdmError

KEY_FILE_NAME = "secret.key"


def _fernet_key(material: str) -> bytes:
    """A Fernet key from ``material``: used as is when it is one, else derived with SHA-256."""
    raw = material.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


class SecretBox:
    """Encrypt and decrypt short secrets with the host's key."""

    def __init__(self, key_material: str):
        key = _fernet_key(key_material)
        self._fernet = Fernet(key)
        self._derive_from = key

    def derive(self, purpose: str) -> str:
        """A secret for one purpose (signing web sessions, say), derived from the host's key.

        Every process of the host derives the same value, so signed cookies made by one are
        accepted by the others; the key itself never leaves this object.
        """
        import hmac

        return hmac.new(self._derive_from, purpose.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def from_key_file(cls, path: Path) -> "SecretBox":
        """Read the key file, creating it (mode 0600) if it does not exist."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # written to a private temporary file, then linked into place: a reader never sees a
            # half-written key, and of two processes creating it at once, one key wins
            key = Fernet.generate_key().decode()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(key)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        try:
            material = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise MdmError(f"key file {path} cannot be read ({exc}): fix its permissions or set MDM_SECRET_KEY") from None
        if not material:
            raise MdmError(f"key file {path} is empty: restore it from a backup or set MDM_SECRET_KEY")
        return cls(material)

    def encrypt(self, secret: str) -> str:
        """The secret, encrypted and authenticated, as ASCII text."""
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The secret back; a wrong key is a one-line error saying what to do."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise MdmError(
                "a stored secret cannot be decrypted with this key: set MDM_SECRET_KEY (or the key file under var/) "
                "to the key used when it was stored, or add the token again"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
