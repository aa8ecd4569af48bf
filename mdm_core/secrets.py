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
        self._fernet = Fernet(_fernet_key(key_material))

    @classmethod
    def from_key_file(cls, path: Path) -> "SecretBox":
        """Read the key file, creating it (mode 0600) if it does not exist."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_text(encoding="ascii"))
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            key = Fernet.generate_key().decode()
            handle.write(key)
        return cls(key)

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
