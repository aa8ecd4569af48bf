"""MDM users: add (one, or an import file), remove, list. A user's id is Apple's ``clientUserId``.

Adding or removing a user records ``user_added`` / ``user_removed`` in the same transaction, and
changing the e-mail or Managed Apple ID of an existing one ``user_changed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import values_of
from mdm_core.errors import NotFound, UsageError
from mdm_core.models import Device, MdmUser

from .csvfile import read_csv
from .upsert import Counts, Watch, check_lengths, update_one, upsert

if TYPE_CHECKING:
    from mdm_core.host import Host

USER_HEADER = ["id", "email", "managed_apple_id", "name"]
USER_REQUIRED = ["id", "email"]
USER_LABELS = {"id": "user id", "managed_apple_id": "managed Apple ID"}


@dataclass(frozen=True)
class UserRow:
    """An MDM user as given on the command line or in an import file."""

    id: str
    email: str | None = None
    managed_apple_id: str | None = None
    name: str | None = None


def _user_from(user_id: str, email: str | None, managed_apple_id: str | None, name: str | None) -> UserRow:
    user_id = user_id.strip()
    if not user_id:
        raise UsageError("user id is empty")
    _check_address("email", email)
    _check_address("managed Apple ID", managed_apple_id)
    check_lengths(MdmUser, {"id": user_id, "email": email, "managed_apple_id": managed_apple_id, "name": name}, USER_LABELS)
    return UserRow(user_id, email or None, managed_apple_id or None, name or None)


def _check_address(label: str, value: str | None) -> None:
    if value and "@" not in value:
        raise UsageError(f"{label} '{value}' is not an address like name@example.com")


#: a new e-mail or Managed Apple ID is recorded as ``user_changed`` (the VPP user follows at Apple)
USER_CHANGED = Watch(
    "user_changed", ("email", "managed_apple_id"), lambda u: {"id": u["id"], "email": u["email"], "managed_apple_id": u["managed_apple_id"], "name": u["name"]}
)


def add_users(host: Host, users: Iterable[UserRow]) -> Counts:
    """Add new MDM users and change the given fields (not ``None``) of existing ones, in one
    transaction; returns the counts of real changes."""
    return upsert(host, MdmUser, list(users), lambda u: u.id, "user_added", dataclasses.asdict, watch=USER_CHANGED)


def add_user(host: Host, user_id: str, *, email: str | None = None, managed_apple_id: str | None = None, name: str | None = None) -> UserRow:
    """Add one new MDM user; an existing id is refused."""
    row = _user_from(user_id, email, managed_apple_id, name)
    upsert(
        host,
        MdmUser,
        [row],
        lambda u: u.id,
        "user_added",
        dataclasses.asdict,
        exists=lambda u: f"user {u.id} exists: change it with `mdm users set {u.id} [--email E] [--managed-apple-id A] [--name N]`",
    )
    return row


def set_user(host: Host, user_id: str, *, email: str | None = None, managed_apple_id: str | None = None, name: str | None = None) -> tuple[UserRow, list[str]]:
    """Change only the given fields of an MDM user (``""`` clears one); returns the user and
    the names of the fields that changed."""
    user_id = user_id.strip()
    given = {n: v.strip() or None for n, v in (("email", email), ("managed_apple_id", managed_apple_id), ("name", name)) if v is not None}
    if not given:
        raise UsageError('nothing to change: give --email, --managed-apple-id and/or --name ("" clears one)')
    _check_address("email", given.get("email"))
    _check_address("managed Apple ID", given.get("managed_apple_id"))
    check_lengths(MdmUser, given, USER_LABELS)
    user, changed = update_one(host, MdmUser, user_id, given, f"'{user_id}' is not an MDM user: add it with `mdm users add {user_id}`", watch=USER_CHANGED)
    host.deliver_events()
    return UserRow(user.id, user.email, user.managed_apple_id, user.name), changed


def remove_user(host: Host, user_id: str) -> UserRow:
    """Remove an MDM user (its devices lose their owner); plugins hear of it through ``mdm_user_removed``."""
    return remove_user_with_event(host, user_id)[0]


def remove_user_with_event(host: Host, user_id: str) -> tuple[UserRow, str]:
    """:func:`remove_user`, and the id of its ``user_removed`` event (for the removal's summary)."""

    def work(session: Session) -> tuple[UserRow, str]:
        user = session.get(MdmUser, user_id.strip())
        if user is None:
            raise NotFound(f"'{user_id}' is not an MDM user: see `mdm users list`")
        row = UserRow(user.id, user.email, user.managed_apple_id, user.name)
        for device in session.execute(select(Device).where(col(Device.owner) == user.id)).scalars():
            device.owner = None
            session.add(device)
        session.delete(user)
        return row, host.events.record(session, "user_removed", dataclasses.asdict(row)).id

    removed = host.db.run_write(work)
    host.deliver_events()
    return removed


def import_users(host: Host, path: str | Path, ignored: list[str] | None = None) -> Counts:
    """Import users from a CSV file whose header names its columns (``id`` and ``email``
    required; ``managed_apple_id``, ``name`` optional; any order). An empty cell keeps the
    stored value. Any bad row means nothing is written."""
    rows = read_csv(
        Path(path), USER_HEADER, USER_REQUIRED, lambda r: _user_from(r["id"], r["email"], r["managed_apple_id"], r["name"]), key=lambda u: u.id, ignored=ignored
    )
    return add_users(host, rows)


def iter_users(host: Host, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """MDM users as plain values, by id, streamed (constant memory)."""
    rows = stream_rows(host.db, select(MdmUser).order_by(MdmUser.id), offset=offset, limit=limit)
    return (values_of(row[0]) for row in rows)


def list_users(host: Host) -> list[dict[str, Any]]:
    """Every MDM user as plain values."""
    return list(iter_users(host))
