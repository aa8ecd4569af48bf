"""Encryption at rest for secrets kept in the database (VPP tokens).

The key comes from ``MDM_SECRET_KEY``, from ``[core] secret_key`` (a reference), or from a key
file created on first use under ``var/`` with mode 0600. The cipher is Fernet (AES-128-CBC
with HMAC-SHA256) from the ``cryptography`` package, through ``MultiFernet``: the first key
encrypts, every key decrypts, so a key can be replaced without losing what the old one
encrypted (``mdm secrets rotate``). A database copied without the key does not reveal the
secrets.

Key material is a Fernet key (32 random bytes, URL-safe base64: what the key file holds), or a
passphrase, which is stretched with scrypt (:func:`passphrase_key`). Secrets encrypted by
release 0.1.0 with a passphrase (whose key was its SHA-256) still decrypt; ``mdm secrets
rotate`` re-encrypts them with the scrypt-derived key. Several keys: one per line in the key
file, or comma-separated Fernet keys in ``MDM_SECRET_KEY``; the first one encrypts.

A missing key file is never silently replaced while the database holds secrets encrypted with
it: the host stops and says how to restore it (:class:`KeyMissing`).

Columns that hold secrets say so with ``sa_column_kwargs={"info": SECRET}``: the host counts
them (a missing key) and re-encrypts them (``mdm secrets rotate``) without knowing the plugin.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mdm_core.errors import MdmError
from mdm_core.files import SMALL_SECRET_FILE, FileTooLarge, private_folder, read_bounded

KEY_FILE_NAME = "secret.key"
SECRET: dict[str, Any] = {"mdm_secret": True}
"""``info`` of a column holding a :class:`SecretBox` ciphertext: ``Field(sa_column_kwargs={"info": SECRET})``."""


def secret_made_again(what: str, command: str) -> dict[str, Any]:
    """``info`` of a secret column whose secrets are not VPP tokens: ``what`` one of them is
    ("a webhook's signing secret") and the ``command`` that makes it again once the key is lost,
    ``{name}`` standing for the row's ``name``. Messages about an unreadable secret name it."""
    return {**SECRET, "mdm_secret_what": what, "mdm_secret_again": command}


def enter_again(column: Any, name: str | None, key_lost: bool | None) -> str:
    """The command, in backticks, that stores again the secret of ``column`` in the row named
    ``name`` once the key it was stored with is lost: the column's own (:func:`secret_made_again`)
    or, for a VPP token, :func:`token_again`."""
    command = column.info.get("mdm_secret_again")
    if command:
        return f"`{command.format(name=name or 'NAME')}`"
    return token_again(key_lost, name or "NAME")


#: scrypt parameters for passphrases (RFC 7914's interactive-login strength; about 0.1 s, 32 MiB).
#: The salt is fixed: a key is needed before anything can be stored to hold a random one.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_SALT = b"mdm-host secret key (scrypt, v1)"


class KeyMissing(MdmError):
    """The key file is gone while the database holds secrets encrypted with it."""


def is_fernet_key(text: str) -> bool:
    """``text`` is a Fernet key (32 bytes in URL-safe base64), not a passphrase."""
    try:
        return len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32 and len(text) == 44
    except (ValueError, UnicodeEncodeError):
        return False


@lru_cache(maxsize=8)
def passphrase_key(passphrase: str) -> bytes:
    """The Fernet key of a passphrase: scrypt (N=2**15, r=8, p=1), so that guessing it costs."""
    kdf = Scrypt(salt=SCRYPT_SALT, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode()))


def legacy_passphrase_key(passphrase: str) -> bytes:
    """The key release 0.1.0 derived from a passphrase (plain SHA-256): for decrypting only."""
    return base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())


def keys_from(material: str) -> list[str]:
    """The keys in ``material``: one per line, or comma-separated Fernet keys; anything else is
    one passphrase (spaces and commas included)."""
    lines = [line.strip() for line in material.strip().splitlines() if line.strip()]
    if len(lines) == 1 and "," in lines[0]:
        parts = [p.strip() for p in lines[0].split(",") if p.strip()]
        if parts and all(is_fernet_key(p) for p in parts):
            return parts
    return lines


def _fernets(keys: Iterable[str]) -> list[Fernet]:
    out: list[Fernet] = []
    for key in keys:
        if is_fernet_key(key):
            out.append(Fernet(key.encode("ascii")))
        else:  # a passphrase: its scrypt key, then 0.1.0's for what that release stored
            out += [Fernet(passphrase_key(key)), Fernet(legacy_passphrase_key(key))]
    return out


def token_again(key_lost: bool | None, name: str = "NAME") -> str:
    """The command that enters a token again once the key it was stored with is lost, in
    backticks: with ``--key-lost`` when ``key_lost`` (the key reads none of the stored
    secrets, which refuses the plain command), and when that is not known (None) saying when
    it is needed. Every message that sends the admin to re-enter a token says this one."""
    command = f"mdm vpp account set {name} --token-file FILE"
    if key_lost is None:
        return f"`{command}` (with --key-lost while the key reads none of the stored secrets)"
    return f"`{command} --key-lost`" if key_lost else f"`{command}`"


class SecretBox:
    """Encrypt and decrypt short secrets with the host's key (and read those of older keys)."""

    def __init__(self, key_material: str):
        self._load(key_material)
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None

    def _load(self, key_material: str) -> None:
        keys = keys_from(key_material)
        if not keys:
            raise MdmError("the secret key is empty: set MDM_SECRET_KEY, [core] secret_key, or restore var/secret.key")
        self._keys = keys
        self._all = _fernets(keys)
        self._fernet = MultiFernet(self._all)
        self._primary = self._all[0]

    def _reloaded(self) -> bool:
        """Read the key file again if it changed (``mdm secrets rotate`` in another process):
        a running host picks up a new key without a restart."""
        if self._path is None:
            return False
        try:
            st = self._path.stat()
        except OSError:
            return False
        if (st.st_mtime_ns, st.st_size) == self._stamp:
            return False
        fresh = SecretBox.from_key_file(self._path, create=False)
        self._load("\n".join(fresh._keys))
        self._stamp = fresh._stamp
        return True

    @classmethod
    def from_key_file(cls, path: Path, *, create: bool = True) -> SecretBox:
        """Read the key file, creating it (mode 0600, in a folder only its owner can enter) if
        it does not exist and ``create``; :class:`KeyMissing` otherwise."""
        if not path.exists():
            if not create:
                raise KeyMissing(f"the secret key file {path} is missing")
            write_key_file(path, [Fernet.generate_key().decode()], replace=False)
        try:
            raw = read_bounded(path, SMALL_SECRET_FILE)
        except FileTooLarge as exc:
            raise MdmError(f"key file {path} is larger than {exc.size}: it is not a key file; restore it from a backup") from None
        except OSError as exc:
            raise MdmError(f"key file {path} cannot be read ({exc.strerror or exc}): fix its permissions or set MDM_SECRET_KEY") from None
        try:
            material = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise MdmError(f"key file {path} is not a key (not ASCII text): restore it from a backup or set MDM_SECRET_KEY") from None
        if not material:
            raise MdmError(f"key file {path} is empty: restore it from a backup or set MDM_SECRET_KEY")
        box = cls(material)
        st = path.stat()
        box._path, box._stamp = path, (st.st_mtime_ns, st.st_size)
        return box

    @property
    def key_count(self) -> int:
        """How many keys (given: passphrases count once) this box holds."""
        return len(self._keys)

    def encrypt(self, secret: str) -> str:
        """The secret, encrypted and authenticated with the first key, as ASCII text."""
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The secret back; a wrong key is a one-line error saying what to do."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            if self._reloaded():
                return self.decrypt(ciphertext)
            raise MdmError(
                "a stored secret cannot be decrypted with this key: set MDM_SECRET_KEY (or [core] secret_key, or the key file "
                "under var/) to the key used when it was stored (see `mdm secrets status`); if that key is lost, enter each "
                f"token again with {token_again(None)}"
            ) from None

    def can_decrypt(self, ciphertext: str) -> bool:
        """True when one of the keys decrypts ``ciphertext``."""
        try:
            self._fernet.decrypt(ciphertext.encode("ascii"))
            return True
        except (InvalidToken, ValueError):
            return self._reloaded() and self.can_decrypt(ciphertext)

    def is_current(self, ciphertext: str) -> bool:
        """True when the first key (the one that encrypts) decrypts ``ciphertext``."""
        try:
            self._primary.decrypt(ciphertext.encode("ascii"))
            return True
        except (InvalidToken, ValueError):
            return False

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` encrypted again with the first key (``InvalidToken`` if no key reads it)."""
        return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")

    def derive(self, purpose: str) -> str:
        """A secret for one purpose (signing web sessions, say), derived from the first key:
        every process of the host derives the same value; the key never leaves this object."""
        key = self._keys[0].encode() if is_fernet_key(self._keys[0]) else passphrase_key(self._keys[0])
        return hmac.new(key, purpose.encode(), hashlib.sha256).hexdigest()

    def with_new_key(self) -> tuple[SecretBox, str]:
        """A box whose first key is a fresh one, the current keys kept for reading; and that key."""
        new = Fernet.generate_key().decode()
        return SecretBox("\n".join([new, *self._keys])), new

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"


class KeyFileUnwritable(MdmError):
    """The key file cannot be written (``reason``: the system's words, e.g. a full disk)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(
            f"the secret key file {path} cannot be written ({reason}): free space on its disk, or let the user running "
            f"mdm write in {path.parent} ([core] var_dir), then try again; or set MDM_SECRET_KEY"
        )


def write_key_file(path: Path, keys: list[str], *, replace: bool) -> None:
    """Write ``keys`` (one per line) to ``path``, mode 0600, atomically: a private temporary
    file, then linked (a new file: of two processes creating it at once, one key wins) or
    renamed into place (``replace``). The folder is created for its owner only. A file that
    cannot be written (a full disk, a folder not the host's user's) is one line naming it."""
    try:
        _write_key_file(path, keys, replace=replace)
    except OSError as exc:
        raise KeyFileUnwritable(path, exc.strerror or str(exc)) from None


def _write_key_file(path: Path, keys: list[str], *, replace: bool) -> None:
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("\n".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def secret_columns(tables: Iterable[Any]) -> list[Any]:
    """The columns marked ``SECRET`` in these model classes or tables."""
    found = []
    for table in tables:
        table = getattr(table, "__table__", table)
        found += [c for c in table.columns if c.info.get("mdm_secret")]
    return found
