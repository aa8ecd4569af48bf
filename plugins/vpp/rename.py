"""Renaming an account: ``mdm vpp account rename OLD NEW``, the console's Rename, the API's
``PATCH {"name": NEW}``.

The account's id keys its mirror, its sync runs and its sync lock, so those follow it as they
are. What is keyed by its name moves in the same transaction: the account's scheduled job's
history (``core_job_run`` ``vpp.sync.NAME``: ``mdm jobs`` shows the job under the new name
with its last run). Other plugins hear ``vpp_account_renamed`` (the alerts move the states
they keep, so that no alert is sent again). Past events and alerts already written keep the
name they were written with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, update
from sqlmodel import Session, col

from mdm_core.errors import UsageError
from mdm_core.job_lock import PREFIX as JOB_LOCK_PREFIX
from mdm_core.locks import LockBusy
from mdm_core.models import JobRun

from .accounts import SyncRunning, account_lock, accounts_lock, check_name, check_name_free, describe_account, get_account, settings
from .jobs import PREFIX as JOB_PREFIX

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.locks import DbLock

    from .models import VppAccount
    from .payloads import Account

#: what a rename refused for a taken name suggests (no `account set`: that is not what was asked)
TAKEN = "choose another name"


def rename_account(host: Host, old: str, new: str) -> Account:
    """Rename account ``old`` to ``new`` (validated as ``account add`` does, case kept as
    given); returns the account as described under its new name.

    Refused with one line, nothing changed: an unknown ``old``, an invalid ``new``, a ``new``
    already an account (``old`` itself included), and while a sync of the account runs (its
    scheduled job or its sync lock held, waited for ``[vpp] lock_wait`` at most).
    """
    check_name(new)
    with host.db.session() as session:
        account = get_account(session, old)
    if new == old:
        raise UsageError(f"account '{old}' is already named '{new}': give the new name")
    wait = settings(host).lock_wait
    with accounts_lock(host):
        with host.db.session() as session:
            check_name_free(session, new, TAKEN)
        # the scheduled job first, as the job itself takes them: a turn about to sync it finishes first
        job = host.lock(JOB_LOCK_PREFIX + JOB_PREFIX + old, ttl=settings(host).lock_ttl)
        sync = account_lock(host, account.id)
        held: list[DbLock] = []
        try:
            for lock in (job, sync):
                try:
                    lock.acquire(wait=wait)
                except LockBusy:
                    raise SyncRunning(f"a sync of {old} is running: rename the account when it has finished") from None
                held.append(lock)
            row = host.db.run_write(lambda session: _rename(host, session, old, new, sync))
        finally:
            for lock in reversed(held):
                lock.release()
    host.deliver_events()
    return describe_account(row)


def _rename(host: Host, session: Session, old: str, new: str, lock: DbLock) -> VppAccount:
    lock.fence(session)  # still ours until this commits: no sync of it can start meanwhile
    row = get_account(session, old)
    check_name_free(session, new, TAKEN)
    row.name = new
    session.add(row)
    carry_job_history(session, old, new)
    host.events.record(session, "vpp_account_renamed", {"account": new, "previous": old, "accountId": row.id})
    return row


def carry_job_history(session: Session, old: str, new: str) -> None:
    """The account's scheduled job's last run (``mdm jobs``) under its new name; a row left by
    an account once named ``new`` (removed since) goes."""
    runs = col(JobRun.name)
    session.execute(delete(JobRun).where(runs == JOB_PREFIX + new))
    session.execute(update(JobRun).where(runs == JOB_PREFIX + old).values(name=JOB_PREFIX + new))
