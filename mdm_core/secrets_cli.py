"""``mdm secrets``: the key that encrypts the secrets stored in the database.

- ``status``: where the key comes from, how many keys, and how many stored secrets each key
  state covers (readable with the first key, readable with an older one, unreadable).
- ``rotate``: re-encrypt every stored secret with a new key, in one transaction. With the
  key file, a new key is generated; the file holds new and old keys until the transaction has
  committed (whatever happens, everything stays readable), then the new key alone. With
  ``MDM_SECRET_KEY`` / ``[core] secret_key``, set it to ``NEW,OLD`` first (Fernet keys), rotate,
  then to ``NEW`` alone. A passphrase's secrets stored by release 0.1.0 are re-encrypted with
  its scrypt-derived key.
- ``new-key``: when the key file is lost, start a new one (the stored secrets stay unreadable
  until each is entered again).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from mdm_core.errors import MdmError
from mdm_core.output import print_json, say

if TYPE_CHECKING:
    from mdm_core.host import Host


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mdm secrets`` and its subcommands."""
    secrets = sub.add_parser(
        "secrets",
        help="the key that encrypts stored secrets: status, rotate, new-key",
        description="The key that encrypts the secrets stored in the database (VPP tokens).",
    )
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True, metavar="COMMAND")
    status = secrets_sub.add_parser("status", help="where the key comes from and which stored secrets it reads")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)
    rotate = secrets_sub.add_parser(
        "rotate",
        help="re-encrypt every stored secret with a new key, in one transaction",
        description="With the key file (var/secret.key): generate a new key and re-encrypt every stored secret with it, in one "
        "transaction; the old key is then dropped. With MDM_SECRET_KEY or [core] secret_key: set it to 'NEW,OLD' first, "
        "rotate, then set it to 'NEW' alone.",
    )
    rotate.set_defaults(func=cmd_rotate)
    new_key = secrets_sub.add_parser("new-key", help="start a new key file when the old one is lost (stored secrets must then be entered again)")
    new_key.set_defaults(func=cmd_new_key)


def _ciphertexts(host: Host, *, read_only: bool = False) -> list[tuple[Any, tuple[Any, ...], str]]:
    """(column, primary key, ciphertext) of every stored secret. ``read_only``: a database
    without this release's tables (a new SQLite file, an empty or mistyped one) is left as it
    is and holds none, rather than being created as a command that stores would."""
    if read_only and not _has_tables(host):
        return []
    found = []
    with host.db.session() as session:
        for column in host.secret_columns():
            pk = list(column.table.primary_key.columns)
            for row in session.execute(select(*pk, column).where(column.is_not(None), column != "")):
                found.append((column, tuple(row[:-1]), row[-1]))
    return found


def _has_tables(host: Host) -> bool:
    """Whether the database has any of this release's tables (read without creating anything):
    the one rule of the commands' refusal, :func:`mdm_core.db.migrate.uninitialised`."""
    from mdm_core.db.migrate import History, read_states, uninitialised

    db = host.unchecked_db
    return not uninitialised(db, read_states(db, [History(s) for s in host.migration_sets()]))


def status(host: Host) -> dict[str, Any]:
    """The key's source, its number of keys, and the stored secrets by state. Writes nothing:
    neither a key file nor a database is created (the first stored secret creates them)."""
    from mdm_core.secrets import KEY_FILE_NAME

    source = host.secret_key_source()
    path = host.config.var_dir / KEY_FILE_NAME
    key_file = str(path) if source == "key file" else None  # the file to back up
    rows = _ciphertexts(host, read_only=True)
    if key_file and not path.exists():  # missing (secrets stored with it) or not created yet (none): never created here
        return {
            "source": source,
            "key_file": key_file,
            "key_file_exists": False,
            "keys": 0,
            "secrets": len(rows),
            "current": 0,
            "older_key": 0,
            "unreadable": len(rows),
        }
    current, readable = key_reads(host, rows)
    return {
        "source": source,
        "key_file": key_file,
        "key_file_exists": True if key_file else None,
        "keys": host.secrets.key_count,
        "secrets": len(rows),
        "current": current,
        "older_key": readable - current,
        "unreadable": len(rows) - readable,
    }


def key_reads(host: Host, rows: list[tuple[Any, tuple[Any, ...], str]]) -> tuple[int, int]:
    """How many of these stored secrets (from :func:`_ciphertexts`) the host's key reads:
    (with its first key, with any of its keys). What ``mdm secrets status`` counts."""
    box = host.secrets
    current = sum(1 for _, _, c in rows if box.is_current(c))
    return current, sum(1 for _, _, c in rows if box.can_decrypt(c))


class WrongKey(MdmError):
    """:func:`refuse_wrong_key`'s refusal: the consent the caller takes (``--key-lost``, the
    console's confirmation, the API's ``"key_lost": true``) stores the secret all the same."""


def _reads_none(host: Host, rows: list[tuple[Any, tuple[Any, ...], str]]) -> bool:
    """Whether these stored secrets (from :func:`_ciphertexts`) are some and the host's key reads
    none of them (its missing key file raises ``KeyMissing``)."""
    return bool(rows) and not key_reads(host, rows)[1]


def key_reads_none(host: Host) -> bool:
    """Whether secrets are stored and this host's key (if any) reads none of them: a token is
    then stored again only with ``--key-lost`` (:func:`refuse_wrong_key`). Creates nothing."""
    rows = _ciphertexts(host, read_only=True)
    try:
        return _reads_none(host, rows)
    except MdmError:  # no key at all (its file missing): the new one will read none
        return True


def refuse_wrong_key(host: Host, if_lost: str) -> None:
    """Refuse (:class:`WrongKey`) to store a secret with a key that reads none of the stored ones
    (there are some): a wrong key file restored, whose secret would be unreadable once the right
    key is back. ``if_lost``: what to do when the right key is lost (the caller's override)."""
    rows = _ciphertexts(host)
    if not _reads_none(host, rows):
        return
    from mdm_core.secrets import KEY_FILE_NAME

    source = host.secret_key_source()
    key = f"the secret key file {host.config.var_dir / KEY_FILE_NAME}" if source == "key file" else f"the secret key ({source})"
    raise WrongKey(
        f"{key} reads none of the {len(rows)} stored secret(s): it is not the key they were stored with (a wrong backup?), "
        "and a token stored with it would be unreadable once that key is back; nothing was stored: restore the key they "
        f"were stored with (see `mdm secrets status`); if it is lost, {if_lost}"
    )


def cmd_status(host: Host, args: argparse.Namespace) -> int:
    """``mdm secrets status``"""
    info = status(host)
    if args.json:
        print_json(info)
        return 1 if info["unreadable"] else 0
    key = " ".join(filter(None, (info["source"], info["key_file"])))  # the key file's path: what to back up
    if info["key_file_exists"] is False:
        key += " is missing: restore it from a backup" if info["secrets"] else " does not exist yet: the first stored token creates it"
    print(
        f"key: {key} ({info['keys']} key(s)); stored secrets: {info['secrets']}: {info['current']} with the current key, "
        f"{info['older_key']} with an older key (run `mdm secrets rotate`), {info['unreadable']} unreadable"
    )
    return 1 if info["unreadable"] else 0


def rotate(host: Host) -> tuple[int, str]:
    """Re-encrypt every stored secret with the first key (a new one for the key file), in one
    transaction; returns (how many, the key's source)."""
    from cryptography.fernet import InvalidToken

    from mdm_core.secrets import KEY_FILE_NAME, KeyFileUnwritable, write_key_file

    source = host.secret_key_source()
    box = host.secrets
    path = host.config.var_dir / KEY_FILE_NAME
    for column, key, ciphertext in _ciphertexts(host):  # before the key file changes: a failed rotate leaves it as it was
        if not box.can_decrypt(ciphertext):
            raise _unreadable(host, column, key)
    new_key = None
    if source == "key file":
        box, new_key = box.with_new_key()
        write_key_file(path, box._keys, replace=True)  # new, then old: readable whatever happens from here

    def work(session: Any) -> int:
        done = 0
        for column, key, ciphertext in _ciphertexts(host):
            try:
                fresh = box.rotate(ciphertext)
            except (InvalidToken, ValueError):
                raise _unreadable(host, column, key) from None
            pk = list(column.table.primary_key.columns)
            session.execute(update(column.table).where(*(c == v for c, v in zip(pk, key, strict=True))).values({column.name: fresh}))
            done += 1
        return done

    count = host.db.run_write(work)
    if new_key is not None:
        try:
            write_key_file(path, [new_key], replace=True)
        except KeyFileUnwritable as exc:  # the secrets are the new key's; the file still holds both keys
            raise MdmError(
                f"re-encrypted {count} secret(s) with a new key in {path}, but the old key could not be dropped from it "
                f"({exc.reason}): it holds both keys, which read every secret; back it up, and run `mdm secrets rotate` "
                "again once it can be written"
            ) from None
    return count, source


def _unreadable(host: Host, column: Any, key: tuple[Any, ...]) -> MdmError:
    """The one line for a stored secret that no current key decrypts (nothing re-encrypted),
    naming its row by its ``name`` when its table has one (a VPP account's)."""
    pk = list(column.table.primary_key.columns)
    where = ", ".join(f"{c.name} {v}" for c, v in zip(pk, key, strict=True))
    if "name" in column.table.c:
        try:
            with host.db.session() as session:
                name = session.execute(select(column.table.c.name).where(*(c == v for c, v in zip(pk, key, strict=True)))).scalar()
        except Exception:  # the line is still true without the name
            name = None
        if name is not None:
            where = f"'{name}', {where}"
    else:
        name = None
    from mdm_core.secrets import enter_again

    return MdmError(
        f"the secret in {column.table.name} ({where}) cannot be decrypted with the current key(s): nothing was "
        "re-encrypted; restore the key it was stored with (see `mdm secrets status`), or enter it again "
        f"({enter_again(column, name, key_reads_none(host))})"
    )


def _other_secrets_again(host: Host) -> str:
    """What to run for the stored secrets that are not VPP tokens (a webhook's signing secret),
    when the key that reads them is lost: "; and ..." for each kind stored, or nothing."""
    from mdm_core.secrets import enter_again

    kinds = {c.info["mdm_secret_what"]: enter_again(c, None, True) for c, _, _ in _ciphertexts(host) if c.info.get("mdm_secret_again")}
    return "".join(f"; for {what}, run {command}" for what, command in sorted(kinds.items()))


def cmd_rotate(host: Host, args: argparse.Namespace) -> int:
    """``mdm secrets rotate``"""
    count, source = rotate(host)
    if source == "key file":
        say(f"re-encrypted {count} secret(s) with a new key in {host.config.var_dir / 'secret.key'}; back it up (the old key no longer reads them)")
    else:
        say(f"re-encrypted {count} secret(s) with the first key of {source}; you can now remove the older keys from it")
    return 0


def cmd_new_key(host: Host, args: argparse.Namespace) -> int:
    """``mdm secrets new-key``"""
    from cryptography.fernet import Fernet

    from mdm_core.secrets import KEY_FILE_NAME, token_again, write_key_file

    source = host.secret_key_source()
    path = host.config.var_dir / KEY_FILE_NAME
    if source != "key file":
        raise MdmError(f"the key comes from {source}: give it a new value there instead")
    if path.exists():
        info = status(host)
        unreadable = info["unreadable"]
        raise MdmError(
            f"the key file {path} exists: to replace its key, run `mdm secrets rotate` (which keeps the secrets readable)"
            if not unreadable
            else f"the key file {path} exists but does not read {unreadable} stored secret(s): restore the key they were stored with "
            f"(see `mdm secrets status`); if it is lost, enter each token again with {token_again(unreadable == info['secrets'])}, "
            f"which this key then encrypts{_other_secrets_again(host)}"
        )
    write_key_file(path, [Fernet.generate_key().decode()], replace=False)
    stored = host.stored_secrets()
    say(
        f"created a new key in {path}; back it up"
        + (
            f". The {stored} secret(s) stored with the lost key cannot be read: enter each token again with "
            f"{token_again(True)} (see `mdm vpp account list`){_other_secrets_again(host)}"  # the new key reads none of them
            if stored
            else ""
        )
    )
    return 0
