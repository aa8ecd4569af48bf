"""State changes and the durable queue: every alert is a row (``alerts_message``) with one
``alerts_delivery`` per configured channel, written in the transaction that changed the state.

Subscribers only write here, so an event's delivery never waits for a mail server; the
``alerts.deliver`` job sends what is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, exists, insert, literal, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks, one_of
from mdm_core.db.typed import table_of
from mdm_core.events import first_time
from mdm_core.housekeeping import delete_in_chunks, event_gone
from mdm_core.models import utcnow

from . import rules
from .models import AlertDelivery, AlertMessage, AlertSubject, SeenEvent
from .rules import Alert
from .settings import settings, thresholds

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.failed_deliveries import FailedSubscriber
    from mdm_core.host import Host
    from mdm_core.models import JobRun
    from plugins.alerts.names import LicenseLevels
    from plugins.mobile_apps.payloads import InstallFailedPayload, ReclaimFinishedPayload
    from plugins.vpp.payloads import Asset, SyncReport

log = logging.getLogger(__name__)
GOOD = ("ok", "valid")  # the states of a watched thing that need nothing (a license subject exists only while low)
COALESCE_WINDOW = timedelta(minutes=10)  # install failures of one asset within this, not yet sent, make one alert


def write(host: Host, work: Callable[[Session], None]) -> None:
    """Run ``work`` in one write transaction; a concurrent insert of the same row (two hosts
    on one PostgreSQL) is retried, and then finds the row the other one wrote."""
    for attempt in range(3):
        try:
            host.db.run_write(work)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def on_event(host: Host, event: Event, work: Callable[[Session], Iterable[Alert]]) -> None:
    """Apply an event once (a redelivered event changes nothing) and queue its alerts."""

    seen = table_of(SeenEvent)

    def tx(session: Session) -> None:  # one Core statement for the guard: no ORM object, identity lookup or flush
        if not first_time(session, seen, {"event_id": event.id, "at": utcnow()}):
            return
        enqueue_all(host, session, list(work(session)), event.id)

    write(host, tx)


def enqueue(host: Host, session: Session, alert: Alert, event_id: str | None = None) -> int:
    """Record an alert and one pending delivery per configured channel; returns its id."""
    [message_id] = enqueue_all(host, session, [alert], event_id)
    return message_id


def enqueue_all(host: Host, session: Session, alerts: Sequence[Alert], event_id: str | None = None) -> list[int]:
    """Record alerts, in order, and one pending delivery per configured channel of each;
    returns their ids.

    Core inserts, one statement for the alerts (returning their ids, in order) and one for their
    deliveries: an ORM object added and flushed for each alert and each delivery cost a sync's
    assets event more CPU than the statements themselves, and a statement per alert one round
    trip each on PostgreSQL (an assets event's license alerts: 3 round trips, now 1)."""
    if not alerts:
        return []
    now = utcnow()
    messages = table_of(AlertMessage)
    rows = [
        {"created_at": now, "kind": a.kind, "subject": a.subject, "state": a.state, "severity": a.severity}
        | {"account": a.account, "title": a.title, "text": a.text, "action": a.action, "fields": a.fields, "event_id": event_id}
        for a in alerts
    ]
    ids: list[int] = list(session.execute(insert(messages).returning(messages.c.id, sort_by_parameter_order=True), rows).scalars())
    channels = settings(host).channel_names  # names alone: the channels' code (SMTP, HTTP clients) is not loaded
    if channels:
        pending = {"status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None, "sent_at": None, "updated_at": now}
        session.execute(insert(table_of(AlertDelivery)), [{**pending, "message_id": i, "channel": channel} for i in ids for channel in channels])
    for message_id, alert in zip(ids, alerts, strict=True):
        log.info("alert %s (%s): %s", message_id, alert.severity, alert.title)
    return ids


def _subject(session: Session, key: str) -> AlertSubject | None:
    return session.get(AlertSubject, key, with_for_update=True)


def _set(session: Session, row: AlertSubject | None, key: str, kind: str, account: str, state: str, now: datetime, **values: Any) -> AlertSubject:
    if row is None:
        row = AlertSubject(subject=key, kind=kind, account=account, state=state, since=now, updated_at=now)
    elif row.state != state:
        row.state, row.since = state, now
    row.updated_at = now
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)
    return row


# --------------------------------------------------------------------------- tokens


def token_state(
    session: Session, account: str, state: str, *, expires: Any, detail: str | None, action: str | None, now: datetime | None = None
) -> list[Alert]:
    """An account's token is in ``state`` now (from the event, or from the daily check)."""
    now = now or utcnow()
    state = rules.token_alert_state(state, expires, now)
    key = rules.token_subject(account)
    row = _subject(session, key)
    previous = row.state if row else None
    if previous == state:
        return []
    _set(session, row, key, "token", account, state, now)
    alert = rules.token_alert(account, previous, state, expires=expires, detail=detail, action=action, now=now)
    return [alert] if alert else []


# --------------------------------------------------------------------------- syncs


def sync_news(host: Host, report: SyncReport) -> bool:
    """Whether :func:`sync_finished` may change anything for ``report``: a failure, or a success
    after failures (or the account's first); read without a transaction. Most syncs succeed
    after a success: their subscriber then opens no transaction (was: BEGIN, the event's guard
    row, the state read and locked, COMMIT, for nothing written but the guard; a redelivery of
    it changes nothing either)."""
    account = _reported_account(report)
    if account is None:
        return False
    if report.get("status") == "error":
        return True
    subjects = table_of(AlertSubject)
    query = select(subjects.c.state, subjects.c.failures).where(subjects.c.subject == rules.sync_subject(account))
    with host.db.reading() as conn:
        return not _settled(conn.execute(query).first())


def _reported_account(report: SyncReport) -> str | None:
    """The account a sync's report says something about the health of (its sync ``ok`` or in
    ``error``); None for "already running", "skipped": no news about the account's health."""
    account = report.get("account")
    return account if report.get("status") in ("ok", "error") and account else None


def _settled(row: Any) -> bool:
    """Whether a success changes nothing for the subject (``row``: its state and failures, or
    None): its state is ``ok`` with no failure counted."""
    return row is not None and row.state == "ok" and row.failures == 0


def sync_finished(host: Host, session: Session, report: SyncReport, now: datetime | None = None) -> list[Alert]:
    """Count failures in a row; alert at the N-th, and once more when a sync succeeds again."""
    account = _reported_account(report)
    if account is None:
        return []
    return failure_streak(
        session,
        rules.sync_subject(account),
        account,
        failed=report.get("status") == "error",
        threshold=settings(host).sync_failures,
        now=now or utcnow(),
        failing=lambda failures, since: rules.sync_failing_alert(account, failures, since, report.get("error_type"), report.get("error")),
        recovered=lambda failures, since: rules.sync_recovered_alert(account, failures, since),
    )


def failure_streak(
    session: Session,
    key: str,
    account: str,
    *,
    failed: bool,
    threshold: int,
    now: datetime,
    failing: Callable[[int, datetime], Alert],
    recovered: Callable[[int, datetime], Alert],
) -> list[Alert]:
    """One more outcome of something run again and again (an account's sync, a scheduled job),
    subject ``key`` (``KIND:NAME``): failures in a row are counted; the ``threshold``-th makes the
    ``failing(failures, since)`` alert, said once, and the first success after it the
    ``recovered(failures, since)`` one (``since``: the streak's first failure). A success that
    changes nothing (the state ``ok``, no failure counted) writes nothing: its ``updated_at``
    stays the time of its last change (was: rewritten at every sync, a write a sync)."""
    kind = key.partition(":")[0]
    row = _subject(session, key)
    if not failed:
        if _settled(row):
            return []
        if row is None:
            _set(session, row, key, kind, account, "ok", now, failures=0)
            return []
        alerts = [recovered(row.failures, row.since)] if row.state == "failing" else []
        _set(session, row, key, kind, account, "ok", now, failures=0)
        return alerts
    failures = (row.failures if row else 0) + 1
    if row is None or row.failures == 0:  # the first failure of a run: "since" starts here
        row = _set(session, row, key, kind, account, "ok", now, failures=failures)
        row.since = now
    else:
        _set(session, row, key, kind, account, row.state, now, failures=failures)
    if row.state != "failing" and failures >= threshold:
        since = row.since
        row.state = "failing"  # "since" stays the first failure
        session.add(row)
        return [failing(failures, since)]
    return []


# --------------------------------------------------------------------------- scheduled jobs


def job_runs(session: Session, runs: Iterable[JobRun]) -> list[Alert]:
    """The last recorded run of each scheduled job (``mdm jobs``), but the accounts' syncs (the
    sync alerts tell those): a failed one is the job's failure, alerted at once (then not again
    until a run succeeds, which says it works again). The streak's subject keeps the finish time
    of the last run read that changed it (``updated_at``), so a run read again by the next check
    counts once (a success read again changes nothing either way)."""
    alerts: list[Alert] = []
    for run in runs:
        finished = run.last_finished_at
        if run.name.startswith(rules.VPP_SYNC_JOBS) or finished is None:
            continue
        key = rules.job_subject(run.name)
        row = _subject(session, key)
        if row is not None and finished <= row.updated_at:
            continue  # no run since the last look
        alerts += failure_streak(
            session,
            key,
            "",  # no account: a job is the host's
            failed=run.last_error is not None,
            threshold=1,
            now=finished,
            failing=partial(_job_failing, run.name, finished, run.last_error or ""),
            recovered=partial(_job_recovered, run.name),
        )
    return alerts


def _job_failing(job: str, finished: datetime, error: str, failures: int, since: datetime) -> Alert:
    return rules.job_failing_alert(job, finished, error)


def _job_recovered(job: str, failures: int, since: datetime) -> Alert:
    return rules.job_recovered_alert(job, since)


def forget_jobs(session: Session) -> None:
    """Drop the jobs' states (their alert turned off: turned on again, each job starts afresh)."""
    session.execute(delete(AlertSubject).where(col(AlertSubject.kind) == "job"))


# --------------------------------------------------------------------------- event subscribers


def failed_subscribers(session: Session, failed: Sequence[FailedSubscriber], now: datetime) -> list[Alert]:
    """The plugins with event deliveries failed for good (``mdm events failures --failed``): each
    alerted once when it starts, and said to work again once none of its deliveries is left failed."""
    told = {row.subject: row for row in session.execute(select(AlertSubject).where(col(AlertSubject.kind) == "subscriber").with_for_update()).scalars()}
    alerts = []
    for subscriber in failed:
        key = rules.SUBSCRIBER + subscriber.plugin
        row = told.pop(key, None)
        if row is None or row.state != "failing":
            alerts.append(rules.subscriber_failing_alert(subscriber))
        _set(session, row, key, "subscriber", "", "failing", now, failures=subscriber.deliveries)
    for key, row in told.items():
        if row.state == "failing":
            alerts.append(rules.subscriber_recovered_alert(key.removeprefix(rules.SUBSCRIBER), row.since))
            _set(session, row, key, "subscriber", "", "ok", now, failures=0)
    return alerts


# --------------------------------------------------------------------------- licenses


def license_counts(
    host: Host,
    session: Session,
    account: str,
    assets: Sequence[Asset],
    *,
    levels: LicenseLevels | None = None,
    complete: bool = False,
    now: datetime | None = None,
) -> list[Alert]:
    """Compare each asset's available licenses with its threshold; alert on a change of level
    (more than a few at once: one digest alert), a low asset getting better only past the
    recovery margin (``rules.license_level``). ``levels``: what ``names.license_levels`` found
    before this transaction, the apps' names by adamId (the others are told by adamId) and each
    asset's level, taken when the state locked here is the one it was computed from.

    Rows exist only for assets below their threshold: those of ``assets`` are read (and locked),
    not every asset's of the account (an incremental sync's event names some of them). ``complete``:
    ``assets`` is every asset of the account, so rows of assets not in it are dropped (without an
    alert).
    """
    now = now or utcnow()
    limits = thresholds(settings(host))
    prefix = f"licenses:{account}:"
    subjects = table_of(AlertSubject)  # Core rows: no ORM object per state read (hundreds an event)
    query = select(subjects.c.subject, subjects.c.state).where(subjects.c.kind == "licenses", subjects.c.account == account).with_for_update()
    keyed = []  # (subject, adamId, pricingParam, asset): each asset's strings built once
    for asset in assets:
        adam_id, pricing = str(asset.get("adamId")), str(asset.get("pricingParam"))
        keyed.append((rules.license_subject(account, adam_id, pricing), adam_id, pricing, asset))
    if complete:
        states = {k: v for k, v in session.execute(query)}
    else:
        keys = sorted({key for key, *_ in keyed})
        of_keys = query.where(one_of(subjects.c.subject, "keys", not host.db.is_sqlite))
        states = {k: v for chunk in in_chunks(keys) for k, v in session.execute(of_keys, {"keys": chunk})}
    names, found = (levels.names, levels.found) if levels is not None else ({}, {})
    alerts = []
    gone: list[str] = []
    moved: list[dict[str, Any]] = []
    new: list[dict[str, Any]] = []
    for key, adam_id, pricing, asset in keyed:
        previous = states.get(key, "ok")
        before = found.get(key)  # found from the same state (most): its level as found, not computed again
        if before is not None and before[0] == previous and before[1] == previous:
            continue  # most assets of an incremental sync's event: no alert, no row written (and no threshold looked up)
        threshold = limits.for_asset(adam_id, pricing)
        level = before[1] if before is not None and before[0] == previous else rules.license_level(asset, threshold, previous, limits.margin)
        if level == previous:
            continue
        alert = rules.license_alert(account, asset, previous, level, threshold, names.get(adam_id), limits.margin)
        if alert is None:
            continue
        alerts.append(alert)
        if level == "ok":
            gone.append(key)
        elif key in states:
            moved.append({"b_subject": key, "state": level})
        else:
            new.append({"subject": key, "kind": "licenses", "account": account, "state": level, "failures": 0, "since": now, "updated_at": now})
    if complete:
        seen = {key for key, *_ in keyed}
        gone += [key for key in states if key.startswith(prefix) and key not in seen]
    for chunk in in_chunks(gone):
        session.execute(delete(subjects).where(subjects.c.subject.in_(chunk)))
    if moved:  # a level that changed: its state begins now
        session.execute(update(subjects).where(subjects.c.subject == bindparam("b_subject")).values(since=now, updated_at=now), moved)
    if new:
        session.execute(insert(subjects), new)
    alerts = _fold_unsent(session, account, alerts, now)
    return [rules.license_digest(account, alerts)] if len(alerts) > rules.DIGEST_AFTER else alerts


def _fold_unsent(session: Session, account: str, alerts: list[Alert], now: datetime) -> list[Alert]:
    """These license alerts with the account's not yet sent ones (recorded within
    ``COALESCE_WINDOW``, their deliveries not tried yet): more than ``DIGEST_AFTER`` together replace those
    by one digest. A removed device's revoke, or a bulk reclaim, changes many assets' counts in
    separate events: each used to be a message of its own.

    The account's recent license alerts are locked by their ids alone; then, by a statement of
    its own (after the lock: it sees an attempt a sender made while holding one of them), those
    of them unsent are read with what a digest needs. Was: every recent alert read with its
    fields (an incremental sync after a full one: the full sync's digest of every low asset,
    48 kB of JSON at a third of the benchmark's size, decoded at each assets event for ten
    minutes, already sent or told to no channel), then their deliveries, then two DELETEs run
    with nothing to delete."""
    if not alerts:
        return alerts
    message, delivery = table_of(AlertMessage), table_of(AlertDelivery)  # Core rows, the columns a digest needs: no ORM object
    recent = (message.c.kind == "licenses", message.c.account == account, message.c.created_at >= now - COALESCE_WINDOW)
    locked = list(session.execute(select(message.c.id).where(*recent).order_by(message.c.id).with_for_update()).scalars())
    if not locked:
        return alerts
    queued = exists().where(delivery.c.message_id == message.c.id)  # no channel: nothing to send, nothing to fold
    tried = exists().where(delivery.c.message_id == message.c.id, delivery.c.attempts > 0)
    columns = (message.c.id, message.c.state, message.c.subject, message.c.severity, message.c.title, message.c.fields)
    of_ids = one_of(message.c.id, "ids", session.get_bind().dialect.name != "sqlite")
    unsent_query = select(*columns).where(of_ids, queued, ~tried).order_by(message.c.id)
    unsent = [row for chunk in in_chunks(locked) for row in session.execute(unsent_query, {"ids": chunk})]
    earlier = [a for r in unsent for a in rules.digest_parts(r.state, r.subject, r.severity, account, r.title, r.fields)]
    latest: dict[str, Alert] = {}
    for alert in [*earlier, *alerts]:
        first = latest.pop(alert.subject, None)
        if first is not None and alert.state == "ok" and first.fields.get("previousState") == "ok":
            continue  # low then available again before anyone was told: nothing to say
        latest[alert.subject] = alert if first is None else replace(alert, fields={**alert.fields, "previousState": first.fields.get("previousState")})
    if len(latest) <= rules.DIGEST_AFTER:
        return alerts
    gone = [r.id for r in unsent]
    if gone:
        session.execute(delete(delivery).where(delivery.c.message_id.in_(gone)))
        session.execute(delete(message).where(message.c.id.in_(gone)))
    return list(latest.values())


def assets_removed(session: Session, account: str, assets: Sequence[Asset]) -> list[Alert]:
    """Assets that left the account are no longer watched (no alert: the asset is gone)."""
    keys = [rules.license_subject(account, str(a.get("adamId")), str(a.get("pricingParam"))) for a in assets]
    if keys:
        session.execute(delete(AlertSubject).where(col(AlertSubject.subject).in_(keys)))
    return []


# --------------------------------------------------------------------------- installs


def install_failed(host: Host, session: Session, payload: InstallFailedPayload, name: str | None = None, now: datetime | None = None) -> list[Alert]:
    """A failed install: joined to an alert of the same asset not yet sent, else a new alert;
    ``name``: the app's name, when known."""
    return _failure_of_asset(session, rules.install_subject, rules.install_alert, payload, rules.install_failure(payload), name, now)


def reclaim_failed(host: Host, session: Session, payload: ReclaimFinishedPayload, name: str | None = None, now: datetime | None = None) -> list[Alert]:
    """A reclaim Apple refused: joined to an alert of the same asset not yet sent, else a new
    alert; ``name``: the app's name, when known."""
    return _failure_of_asset(session, rules.reclaim_subject, rules.reclaim_alert, payload, rules.reclaim_failure(payload), name, now)


def _failure_of_asset(
    session: Session,
    subject: Callable[[str, str, str], str],
    alert_of: Callable[..., Alert],
    payload: Mapping[str, Any],
    failure: dict[str, Any],
    name: str | None,
    now: datetime | None,
) -> list[Alert]:
    """A failure about one asset (an install, a reclaim): added to the alert of its ``subject``
    written within ``COALESCE_WINDOW`` and not tried yet (its title and text written again by
    ``alert_of``), else a new alert."""
    now = now or utcnow()
    account, adam_id, pricing = str(payload.get("account")), str(payload.get("adamId")), str(payload.get("pricingParam"))
    key = subject(account, adam_id, pricing)
    recent = session.execute(
        select(AlertMessage)
        .where(col(AlertMessage.subject) == key, col(AlertMessage.created_at) >= now - COALESCE_WINDOW)
        .order_by(col(AlertMessage.id).desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()
    if recent is not None:
        tried = session.execute(select(col(AlertDelivery.id)).where(col(AlertDelivery.message_id) == recent.id, col(AlertDelivery.attempts) > 0)).first()
        if tried is None:
            alert = alert_of(account, adam_id, pricing, [*recent.fields.get("failures", []), failure], name)
            recent.title, recent.text, recent.action, recent.fields = alert.title, alert.text, alert.action, alert.fields
            session.add(recent)
            return []
    return [alert_of(account, adam_id, pricing, [failure], name)]


# --------------------------------------------------------------------------- housekeeping


def account_renamed(session: Session, previous: str, account: str) -> list[Alert]:
    """The states kept for account ``previous`` (its token, its syncs, its low licenses) are now
    account ``account``'s, so that a state already alerted is not alerted again under the new
    name; those left by an account once named ``account`` go. Alerts already written keep the
    name they were written with."""
    subjects = table_of(AlertSubject)
    session.execute(delete(subjects).where(subjects.c.account == account))
    for key in list(session.execute(select(subjects.c.subject).where(subjects.c.account == previous)).scalars()):
        kind, _, rest = key.partition(":")
        moved = ":".join([kind, account, *rest.split(":")[1:]])  # KIND:ACCOUNT[:ADAMID:PRICING]
        session.execute(update(subjects).where(subjects.c.subject == key).values(subject=moved, account=account))
    return []


def still_true(message: Table) -> ColumnElement[bool]:
    """True for the latest alert of a watched thing whose state is still not ok (a token expired,
    a job failing, an asset's licenses low: the account's digest too), so that `mdm alerts list`
    keeps saying why while it lasts; pruned by its age, it was gone after ``keep_days`` while
    nothing had changed, and the same state is not alerted again."""
    subjects, later = table_of(AlertSubject), message.alias("later")
    unresolved = subjects.c.state.not_in(GOOD)
    digests = select(literal("licenses:") + subjects.c.account).where(unresolved, subjects.c.kind == "licenses")
    return and_(
        or_(message.c.subject.in_(select(subjects.c.subject).where(unresolved)), message.c.subject.in_(digests)),
        ~exists().where(later.c.subject == message.c.subject, later.c.id > message.c.id),
    )


def forget_untold(session: Session) -> None:
    """Forget the watched states whose alert went through no channel (none was configured when
    it was written: "(no channel configured)" in ``mdm alerts list``), so that the check, run
    next with channels configured, tells each as it is now, once (the alert it writes has
    deliveries); a sync still failing is told at its next failure."""
    rows = list(session.execute(select(AlertSubject).where(col(AlertSubject.state).not_in(GOOD)).with_for_update()).scalars())
    if not rows:
        return
    told = col(AlertMessage.id).in_(select(col(AlertDelivery.message_id)))
    written: dict[str, list[tuple[datetime, bool]]] = {}
    for subject, created_at, was_told in session.execute(
        select(col(AlertMessage.subject), col(AlertMessage.created_at), told).where(col(AlertMessage.created_at) >= min(row.since for row in rows))
    ):
        written.setdefault(subject, []).append((created_at, bool(was_told)))
    forgotten = 0
    for row in rows:
        digest = [f"licenses:{row.account}"] if row.kind == "licenses" else []  # a digest tells its assets too
        since = [was_told for key in (row.subject, *digest) for created_at, was_told in written.get(key, []) if created_at >= row.since]
        if not since or any(since):
            continue  # nothing written about this state yet, or told
        forgotten += 1
        if row.kind == "sync":
            row.state = "ok"  # the failures in a row are kept: the next one alerts
            session.add(row)
        else:
            session.delete(row)
    if forgotten:
        log.info("%d state(s) alerted when no channel was configured: told again through the channels configured now", forgotten)


def forget_accounts(session: Session, known: set[str]) -> None:
    """Drop the state of accounts that no longer exist (removed: nothing to alert); the jobs' and
    the event subscribers' states belong to no account."""
    session.execute(delete(AlertSubject).where(col(AlertSubject.account).not_in(known), col(AlertSubject.kind).not_in(("job", "subscriber"))))


def prune(host: Host, now: datetime, chunk: int) -> dict[str, int]:
    """The plugin's history past its retention, at most ``chunk`` rows a transaction (its
    ``mdm_housekeeping``); returns the rows deleted by table. Alerts created more than ``[alerts]
    keep_days`` ago go with their deliveries (the foreign key cascades), unless a delivery is
    still pending (or queued again by ``mdm alerts retry`` while the chunk is deleted: both lock
    the alerts); the guards of applied events after ``max(30, keep_days)`` days, once their
    event is gone from the outbox (one kept for a failed subscriber's retry can still be
    delivered again: forgotten, it would queue its alerts twice). The latest alert of a thing
    still not ok stays whatever its age (:func:`still_true`)."""
    keep_days = settings(host).keep_days
    message, delivery, seen = table_of(AlertMessage), table_of(AlertDelivery), table_of(SeenEvent)
    pending = select(delivery.c.message_id).where(delivery.c.status == "pending")
    alerts = [message.c.created_at < now - timedelta(days=keep_days), message.c.id.not_in(pending), not_(still_true(message))]
    guards = [seen.c.at < now - timedelta(days=max(30, keep_days)), event_gone(seen.c.event_id)]
    return {
        "alerts_message": delete_in_chunks(host.db, message, message.c.id, alerts, chunk, lock=True),  # see delivery.retry_failed
        "alerts_seen_event": delete_in_chunks(host.db, seen, seen.c.event_id, guards, chunk),
    }
