"""Sending what is due: the ``alerts.deliver`` job, and the daily-ish ``alerts.check``.

Each (alert, channel) is tried on its own. A failure waits ``retry_delay`` seconds, doubling at
each attempt up to ``retry_max_delay``; after ``max_attempts`` (or at once when the server
refused for good) the delivery is ``failed`` and shows in ``mdm alerts list``. A channel that
fails is not tried again for other alerts in the same run, so a mail server that is down
costs one timeout per run, not one per alert. One process delivers at a time (a database lock),
so two ``mdm run`` on one database do not send twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks
from mdm_core.db.typed import rowcount, table_of
from mdm_core.errors import MdmError, NotFound, describe
from mdm_core.job_lock import check_held
from mdm_core.models import utcnow
from mdm_core.output import format_time

from . import store
from .channels import Channel, DeliveryError, Outgoing, configured_channels, known_secrets, scrub
from .models import AlertDelivery, AlertMessage
from .names import license_levels, name_due
from .settings import AlertsSettings, settings
from .signing import webhook_secret

if TYPE_CHECKING:
    from mdm_core.host import Host
    from plugins.vpp.payloads import Account, Asset

log = logging.getLogger(__name__)
BATCH = 200
LOCK = "alerts.deliver"


def outgoing(message: AlertMessage) -> Outgoing:
    """A stored alert as channels see it."""
    return Outgoing(
        id=message.id,
        created_at=message.created_at,
        kind=message.kind,
        subject=message.subject,
        state=message.state,
        severity=message.severity,
        account=message.account,
        title=message.title,
        text=message.text,
        action=message.action,
        fields=dict(message.fields or {}),
    )


def signer(host: Host) -> Callable[[str], str]:
    """A webhook's signing secret by its name (:func:`.signing.webhook_secret`)."""
    return lambda name: webhook_secret(host, name)


def backoff(s: AlertsSettings, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: ``retry_delay`` doubling, at most ``retry_max_delay``."""
    return float(min(s.retry_max_delay, s.retry_delay * 2 ** max(0, attempts - 1)))


def deliver_due(host: Host) -> dict[str, int]:
    """Send every pending delivery whose time has come; returns counts (sent, retrying, failed)."""
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    lock = host.lock(LOCK, ttl=max(300.0, settings(host).smtp_timeout * 4))
    if not lock.try_acquire():
        return counts  # another process is delivering
    try:
        channels = configured_channels(settings(host), host.config, signer(host))
        with host.db.session() as session:
            due = list(
                session.execute(
                    select(AlertDelivery, AlertMessage)
                    .join(AlertMessage, col(AlertMessage.id) == col(AlertDelivery.message_id))
                    .where(col(AlertDelivery.status) == "pending", col(AlertDelivery.next_attempt_at) <= utcnow())
                    .order_by(col(AlertDelivery.id))
                    .limit(BATCH)
                ).all()
            )
        name_due(host, {id(m): m for _, m in due}.values())  # a first sync's alerts, written before the apps were looked up
        down: set[str] = set()
        for delivery, message in due:
            if delivery.channel in down:
                continue
            check_held()  # the job's lock lost: the rest stay pending for its next holder
            channel = channels.get(delivery.channel)
            if channel is None and (source := _added_since_start(host, delivery.channel)):
                _wait_for_restart(host, delivery.id, f"channel {delivery.channel} is in [alerts] of {source} but {STALE}")
                counts["retrying"] += 1
                down.add(delivery.channel)
                continue
            claimed = _claim(host, delivery.id, message)
            if claimed is None:
                continue  # folded into a digest (or joined by nothing: gone) meanwhile: the digest goes out instead
            outcome = _attempt(host, channel, delivery.channel, claimed)
            status = _record(host, delivery.id, outcome)
            counts[status] += 1
            if status != "sent" and channel is not None:
                down.add(delivery.channel)
            lock.refresh()
    finally:
        lock.release()
    return counts


def deliver_job(host: Host) -> dict[str, int]:
    """The ``alerts.deliver`` job: a run where a channel failed is recorded as failed on the job
    (``mdm jobs``), with what to look at."""
    counts = deliver_due(host)
    if counts["retrying"] or counts["failed"]:
        raise MdmError(
            f"{counts['retrying'] + counts['failed']} alert delivery(ies) failed ({counts['sent']} sent): "
            "see `mdm alerts list --status pending` and `--status failed`"
        )
    return counts


STALE = "this process read its configuration before: restart `mdm run` (the alert stays queued)"


def _added_since_start(host: Host, name: str) -> str | None:
    """The configuration file as it reads now, if its ``[alerts]`` configures channel ``name``,
    which this process's configuration (read at start) does not: the channel was added since
    ``mdm run`` started. None when it is not there either (removed) or the file does not read."""
    from mdm_core.config import load_config

    try:
        now = load_config(host.config.path, host.config.environ)
        return now.source if name in configured_channels(now.section("alerts", AlertsSettings), now) else None
    except (MdmError, ValueError):  # a file being edited: as if the channel were not there
        return None


def _wait_for_restart(host: Host, delivery_id: int, text: str) -> None:
    """Leave a delivery queued (no attempt counted), saying why in its ``last_error``."""

    def work(session: Session) -> None:
        row = session.get(AlertDelivery, delivery_id)
        if row is not None and row.last_error != text:
            row.last_error, row.updated_at = text, utcnow()
            session.add(row)

    host.db.run_write(work)
    log.warning("alert delivery %s waits: %s", delivery_id, text)


def _claim(host: Host, delivery_id: int | None, message: AlertMessage) -> Outgoing | None:
    """Count the attempt before sending: an alert with a tried delivery is never changed again (a
    digest folds only untried ones, an install failure joins only an untried alert), so what
    is sent is what is recorded. The alert is locked first, as those writers lock it: either
    one of them changed it before (it is read as it is now, here) or it sees this attempt.
    Returns the alert to send; None if the delivery is gone (folded into a digest, which goes
    out instead) or no longer pending."""

    def work(session: Session) -> Outgoing | None:
        current = session.execute(select(AlertMessage).where(col(AlertMessage.id) == message.id).with_for_update()).scalar_one_or_none()
        claimed = session.execute(
            update(AlertDelivery)
            .where(col(AlertDelivery.id) == delivery_id, col(AlertDelivery.status) == "pending")
            .values(attempts=col(AlertDelivery.attempts) + 1, updated_at=utcnow())
        )
        return outgoing(current or message) if rowcount(claimed) == 1 else None

    return host.db.run_write(work)


def _attempt(host: Host, channel: Channel | None, name: str, message: Outgoing) -> tuple[bool, str | None, bool]:
    """(sent, error or note, permanent); the text holds no secret of ``[alerts]``."""
    if channel is None:
        return False, f"channel {name} is no longer configured in [alerts]", True
    try:
        note = channel.send(message)
        return True, scrub(note, known_secrets(settings(host), host.config)) if note else None, False
    except DeliveryError as exc:
        return False, scrub(str(exc), known_secrets(settings(host), host.config)), exc.permanent
    except Exception as exc:  # a bug must not stop the other channels; its text may not be safe to keep
        log.error("alert %s through %s failed unexpectedly: %s", message.id, name, type(exc).__name__)
        return False, f"unexpected {type(exc).__name__} (run with -vv and see the log)", False


def _record(host: Host, delivery_id: int, outcome: tuple[bool, str | None, bool]) -> str:
    sent, text, permanent = outcome
    s = settings(host)

    def work(session: Session) -> str:
        row = session.get(AlertDelivery, delivery_id)
        if row is None:  # its alert was folded into a digest meanwhile (which goes out too)
            return "sent" if sent else "retrying"
        now = utcnow()  # the attempt was counted by _claim
        row.updated_at = now
        row.last_error = text
        if sent:
            row.status, row.sent_at = "sent", now
        elif permanent or row.attempts >= s.max_attempts:
            row.status = "failed"
            log.error("alert %s through %s failed after %d attempt(s), giving up: %s", row.message_id, row.channel, row.attempts, text)
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff(s, row.attempts))
            log.warning(
                "alert %s through %s failed (attempt %d of %d), retrying at %s: %s",
                row.message_id,
                row.channel,
                row.attempts,
                s.max_attempts,
                format_time(row.next_attempt_at),
                text,
            )
        session.add(row)
        return "sent" if sent else row.status if row.status == "failed" else "retrying"

    return host.db.run_write(work)


def send_now(host: Host, message: Outgoing) -> list[dict[str, Any]]:
    """Send ``message`` through every configured channel at once (``mdm alerts test``), one result each."""
    results = []
    for name, channel in configured_channels(settings(host), host.config, signer(host)).items():
        sent, text, _ = _attempt(host, channel, name, message)
        results.append({"channel": name, "target": channel.describe(), "status": "sent" if sent else "failed", "error": None if sent else text})
    return results


class NothingToRetry(MdmError):
    """None of the alerts given to :func:`retry_failed` has a failed delivery (sent meanwhile,
    say): the API and console refuse it (400) as before; ``mdm alerts retry`` has nothing to do (exit 0)."""


def retry_failed(host: Host, message_ids: list[int]) -> int:
    """Put failed deliveries (of these alerts, or all) back in the queue, due now; returns how many.

    An alert id without a failed delivery, or no longer recorded (deleted by ``core.housekeeping``
    after ``[alerts] keep_days``), is refused (MdmError, one line) and nothing is queued. The
    alerts are locked first (``FOR SHARE``, in id order): the housekeeping's prune, which locks
    the old alerts it deletes, either deletes one before (refused here) or waits and keeps it,
    its delivery now pending (``mdm_core.housekeeping.delete_in_chunks``)."""

    def work(session: Session) -> int:
        message, delivery = table_of(AlertMessage), table_of(AlertDelivery)
        failed = delivery.c.status == "failed"
        held = select(message.c.id).order_by(message.c.id).with_for_update(read=True)
        held = held.where(message.c.id.in_(message_ids)) if message_ids else held.where(message.c.id.in_(select(delivery.c.message_id).where(failed)))
        kept = list(session.execute(held).scalars())
        rows = [
            row for chunk in in_chunks(kept) for row in session.execute(select(AlertDelivery).where(failed, col(AlertDelivery.message_id).in_(chunk))).scalars()
        ]
        gone = sorted(set(message_ids) - set(kept))
        unfailed = sorted(set(kept) - {row.message_id for row in rows}) if message_ids else []
        if gone or unfailed:
            said = [f"alert(s) {', '.join(map(str, gone))} not found (deleted after [alerts] keep_days, or a mistyped id)"] if gone else []
            said += [f"no failed delivery of alert(s) {', '.join(map(str, unfailed))}"] if unfailed else []
            refused = NotFound if gone else NothingToRetry if not rows else MdmError  # a mistyped id is bad input (exit 2, 404); one sent meanwhile is not
            raise refused(f"{'; '.join(said)}: nothing was queued again (see `mdm alerts list --status failed`)")
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.updated_at = "pending", 0, utcnow(), utcnow()
            session.add(row)
        return len(rows)

    return host.db.run_write(work)


# --------------------------------------------------------------------------- the check


def check(host: Host, now: datetime | None = None) -> dict[str, int]:
    """Token expiry and license counts as they are now, even without a sync (a paused account's
    token still approaches its expiry), the scheduled jobs' last runs, and the event subscribers
    whose deliveries failed for good. Returns how many alerts it queued."""
    accounts_hook = host.hook("mdm_vpp_accounts")
    assets_hook = host.hook("mdm_vpp_assets")
    queued = 0
    if configured_channels(settings(host), host.config):
        store.write(host, store.forget_untold)  # what was told to nobody before a channel was set: told below
    if accounts_hook is not None and assets_hook is not None:
        accounts: list[Account] = accounts_hook(host=host) or []
        assets: list[Asset] = assets_hook(host=host, account=None) or []
        by_account: dict[str, list[Asset]] = {a["name"]: [] for a in accounts}
        for asset in assets:
            by_account.setdefault(asset["account"], []).append(asset)
        levels = license_levels(host, by_account)

        def work(session: Session) -> None:
            nonlocal queued
            alerts = []
            for account in accounts:
                alerts += store.token_state(
                    session,
                    account["name"],
                    account["token_state"],
                    expires=account.get("tokenExpirationDate"),
                    detail=None,
                    action=account.get("action"),
                    now=now,
                )
                alerts += store.license_counts(host, session, account["name"], by_account[account["name"]], levels=levels, complete=True, now=now)
            store.forget_accounts(session, set(by_account))
            for alert in alerts:
                store.enqueue(host, session, alert)
            queued = len(alerts)

        store.write(host, work)
    return {"queued": queued + check_jobs(host) + check_subscribers(host, now or utcnow())}


def check_jobs(host: Host) -> int:
    """The scheduled jobs' last runs (``[alerts] job_failures``); returns how many alerts it queued."""
    from mdm_core.jobs_cli import recorded_runs

    enabled = settings(host).job_failures
    runs = recorded_runs(host) if enabled else {}

    def alerts(session: Session) -> list[store.Alert]:
        if not enabled:
            store.forget_jobs(session)
            return []
        return store.job_runs(session, runs.values())

    return _queue(host, alerts)


def check_subscribers(host: Host, now: datetime) -> int:
    """The plugins with event deliveries failed for good; returns how many alerts it queued."""
    from mdm_core.failed_deliveries import failed_subscribers

    failed = failed_subscribers(host.db)
    return _queue(host, lambda session: store.failed_subscribers(session, failed, now))


def _queue(host: Host, alerts: Callable[[Session], list[store.Alert]]) -> int:
    """Queue the alerts ``alerts`` returns, in its write transaction; returns how many."""
    queued = 0

    def work(session: Session) -> None:
        nonlocal queued
        found = alerts(session)
        for alert in found:
            store.enqueue(host, session, alert)
        queued = len(found)

    store.write(host, work)
    return queued


def safely(name: str, func: Any) -> Any:
    """Log, rather than raise, what fails at start-up (alerts must never stop the host)."""
    try:
        return func()
    except Exception as exc:
        log.error("%s failed: %s", name, describe(exc))
        return None
