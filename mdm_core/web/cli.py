"""``mdm admins`` and ``mdm api-tokens``: who may use the console and the REST API."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

from mdm_core.errors import UsageError
from mdm_core.files import SMALL_SECRET_FILE, FileTooLarge, read_bounded
from mdm_core.output import format_time, print_json, print_rows

from .models import ROLES

if TYPE_CHECKING:
    from mdm_core.host import Host


def register(subparsers: Any) -> None:
    """Add the subcommands."""
    admins = subparsers.add_parser(
        "admins", help="people who sign in to the web console", description="Admins sign in to the console with a name and password (hashed with Argon2)."
    )
    sub = admins.add_subparsers(dest="admins_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="add an admin, or change the password (and --role) of one (their sessions end)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, help="admin changes things; viewer only reads (default: admin for a new admin; an existing one keeps theirs)")
    add.add_argument(
        "--password-file", metavar="FILE", help="read the password from FILE (its trailing newline is ignored); prompts twice on a terminal otherwise"
    )
    add.set_defaults(func=cmd_admins_add)
    lst = sub.add_parser("list", help="list admins")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_admins_list)
    rm = sub.add_parser("remove", help="remove an admin (their sessions end at once)")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_admins_remove)

    tokens = subparsers.add_parser(
        "api-tokens", help="bearer tokens for the REST API", description="Tokens for `Authorization: Bearer TOKEN` on /api/v1; only a hash is stored."
    )
    sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="viewer", help="viewer only reads (default); admin may sync, install and change settings")
    create.add_argument("--json", action="store_true", help="print JSON (the token under the key 'token')")
    create.set_defaults(func=cmd_tokens_create)
    lst = sub.add_parser("list", help="list tokens, the revoked ones too (never the tokens themselves)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_tokens_list)
    rv = sub.add_parser("revoke", help="revoke a token at once (it stays listed, as revoked, with who revoked it)")
    rv.add_argument("name")
    rv.set_defaults(func=cmd_tokens_revoke)


def read_password(path: str | None) -> str:
    """From a file (trailing newline ignored), else typed twice on a terminal."""
    if path:
        try:
            text = read_bounded(path, SMALL_SECRET_FILE).decode("utf-8")
        except FileTooLarge as exc:
            raise UsageError(f"password file {path} is larger than {exc.size}: it is not a password file; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"password file {path} cannot be read ({getattr(exc, 'strerror', None) or exc}): check the path") from None
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to type the password on: give --password-file FILE")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise UsageError("the two passwords differ: run the command again")
    return first


def cmd_admins_add(host: Host, args: argparse.Namespace) -> int:
    """``mdm admins add``"""
    from .access import add_admin

    row = add_admin(host, args.name, read_password(args.password_file), args.role)
    if row["added"]:
        print(f"added admin {row['name']} ({row['role']}): can sign in to the console")
    else:
        was = f", was {row['previous_role']}" if row["previous_role"] != row["role"] else ""
        print(f"changed the password of admin {row['name']} ({row['role']}{was}): their open sessions ended")
    return 0


def cmd_admins_list(host: Host, args: argparse.Namespace) -> int:
    """``mdm admins list``"""
    from .access import list_admins

    return print_rows(list_admins(host), args.json, ["name", "role", "created_at", "last_login_at"], empty="no admin: add one with `mdm admins add NAME`")


def cmd_admins_remove(host: Host, args: argparse.Namespace) -> int:
    """``mdm admins remove``"""
    from .access import remove_admin

    remove_admin(host, args.name)
    print(f"removed admin {args.name}")
    return 0


def cmd_tokens_create(host: Host, args: argparse.Namespace) -> int:
    """``mdm api-tokens create``"""
    from .access import create_token

    row = create_token(host, args.name, args.role)
    if args.json:
        print_json(row)
    else:
        print(row["token"])
        print(f"API token {row['name']} ({row['role']}): copy it now, it is not shown again", file=sys.stderr)
    return 0


def cmd_tokens_list(host: Host, args: argparse.Namespace) -> int:
    """``mdm api-tokens list``"""
    from .access import list_tokens

    columns = ["name", "role", "created_at", "last_used_at", "revoked_at", "revoked_by"]
    return print_rows(list_tokens(host), args.json, columns, empty="no API token: create one with `mdm api-tokens create NAME`")


def cli_actor() -> str:
    """Who revokes from the command line, for ``revoked_by``: ``cli:USER``, the operating
    system's user the command runs as (from its user id, not the environment), with
    ``via sudo`` and the user who ran sudo when it did (``cli:root via sudo from alice``)."""
    try:
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # no passwd entry for the uid (a container), or not POSIX
        user = f"uid {os.geteuid()}" if hasattr(os, "geteuid") else getpass.getuser()
    sudo = os.environ.get("SUDO_USER")
    return f"cli:{user} via sudo from {sudo}" if sudo and sudo != user else f"cli:{user}"


def cmd_tokens_revoke(host: Host, args: argparse.Namespace) -> int:
    """``mdm api-tokens revoke``"""
    from .access import revoke_token

    row = revoke_token(host, args.name, cli_actor())
    if row["already"]:
        by = f" by {row['revoked_by']}" if row["revoked_by"] else ""
        print(f"API token {args.name} was already revoked at {format_time(row['revoked_at'])}{by}: nothing to do")
    else:
        print(f"revoked API token {args.name}: a request sending it is told it was revoked")
    return 0
