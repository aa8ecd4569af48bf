"""What is alerted and how it reads: pure functions from a state change to an ``Alert``.

Each alert says what happened, why it matters and what to do. Severities: ``critical``
(something stopped working or is about to), ``warning`` (act soon), ``resolved`` (back to
normal), ``info`` (a test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mdm_core.errors import one_line
from mdm_core.failed_deliveries import FIX, FailedSubscriber
from mdm_core.output import days_text, days_until
from plugins.mobile_apps.payloads import REVOKE

from .settings import Threshold

if TYPE_CHECKING:  # the other plugins' published contracts: types only, no import at run time
    from plugins.mobile_apps.payloads import InstallFailedPayload, ReclaimFinishedPayload
    from plugins.vpp.payloads import Asset

BLOCKED = ("expired", "revoked", "invalid", "taken_over")  # the token states that stop the account's syncs
TOKEN_ALERT_STATES = ("expiring_30", "expiring_14", "expiring_7", "expiring_1", *BLOCKED)
LICENSE_STATES = ("ok", "low", "none")
MAX_LISTED = 20  # targets listed in one install-failure alert


@dataclass(frozen=True)
class Alert:
    """One message to send: ``subject`` names what it is about (``token:school``)."""

    kind: str
    subject: str
    state: str
    severity: str
    account: str | None
    title: str
    text: str
    action: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 text (``Z`` or an offset) as an aware UTC datetime; None if absent or bad."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# --------------------------------------------------------------------------- tokens


def token_subject(account: str) -> str:
    return f"token:{account}"


def token_alert_state(state: str, expires: Any, now: datetime) -> str:
    """The VPP plugin's token ``state`` as the alerts tell it: ``expiring_7`` with a day or less
    left is ``expiring_1``, the last day's reminder (the VPP plugin has no such state)."""
    when = parse_time(expires)
    return "expiring_1" if state == "expiring_7" and when is not None and days_until(when, now) <= 1 else state


def token_alert(account: str, previous: str | None, state: str, *, expires: Any, detail: str | None, action: str | None, now: datetime) -> Alert | None:
    """The alert for a token that went from ``previous`` to ``state`` (None: nothing to say)."""
    if state == previous:
        return None
    when = parse_time(expires)
    day = f"{when:%Y-%m-%d}" if when else "an unknown date"
    fields = {"tokenState": state, "previousState": previous, "tokenExpirationDate": when.isoformat() if when else None, "detail": detail}
    renew = f"mdm vpp account set {account} --token-file NEW.vpptoken"
    if state not in TOKEN_ALERT_STATES:
        if previous not in TOKEN_ALERT_STATES:
            return None  # first seen, and fine
        return Alert(
            "token",
            token_subject(account),
            state,
            "resolved",
            account,
            f"VPP token of account '{account}' is valid again",
            f"The token of account '{account}' was {previous.replace('_', ' ')}; it is now valid until {day}.",
            "Nothing to do.",
            fields,
        )
    past = when is not None and when <= now  # an expiring state told after the date itself (a late delivery)
    if state.startswith("expiring_") and not past:
        left = days_until(when, now) if when else int(state.rsplit("_", 1)[1])
        title = f"VPP token of account '{account}' expires in {days_text(left)}, on {day}"
        text = (
            "When it expires, this account stops syncing and its licenses can no longer be assigned or reclaimed. "
            "Download a new token from Apple School Manager or Apple Business Manager (Settings > Apps and Books)."
        )
        if previous in BLOCKED:  # renewed (or taken back) with a token expiring soon: say the block is over too
            text = f"The token of account '{account}' was {previous.replace('_', ' ')}: it works again and the account syncs again. {text}"
        severity = "critical" if state in ("expiring_7", "expiring_1") else "warning"
        if state == "expiring_1":  # the last day: the VPP plugin's advice still says "this week"
            action = f"renew the token today: {renew}"
    elif state == "expired" or state.startswith("expiring_"):  # expired, or expiring and told past its date
        # Apple can refuse a token as expired (9621) before the date it carries: never "expired on" a day to come
        ended = f"expired on {day}" if past else "has expired"
        title, severity = f"VPP token of account '{account}' {ended}", "critical"
        text = "This account no longer syncs, and its licenses can no longer be assigned or reclaimed."
    elif state == "revoked":
        title, severity = f"VPP token of account '{account}' was revoked", "critical"
        text = "Someone revoked the token in Apple School Manager or Apple Business Manager (or reset the account's password). The account's syncs are stopped."
    elif state == "invalid":
        title, severity = f"Apple rejects the VPP token of account '{account}'", "critical"
        text = "Apple no longer accepts this token. The account's syncs are stopped."
    else:  # taken_over
        other = detail or "another MDM"
        title, severity = f"Another MDM took over the location of account '{account}': {other}", "critical"
        text = (
            "Two MDMs on one location assign licenses unpredictably, so this account's syncs are stopped. "
            "If the other MDM should manage the location, remove the account here."
        )
    return Alert("token", token_subject(account), state, severity, account, title, text, action or f"Renew the token: {renew}", fields)


# --------------------------------------------------------------------------- syncs


def sync_subject(account: str) -> str:
    return f"sync:{account}"


def sync_failing_alert(account: str, failures: int, since: datetime, error_type: str | None, error: str | None) -> Alert:
    """An account's sync failed ``failures`` times in a row."""
    last = f"{error_type}: {error}" if error_type and error else error or error_type or "unknown error"
    return Alert(
        "sync",
        sync_subject(account),
        "failing",
        "critical",
        account,
        f"Sync of VPP account '{account}' failed {failures} times in a row",
        f"Failing since {since:%Y-%m-%d %H:%M} UTC. Last error: {last}. Until a sync succeeds, assets, licenses and published apps are not updated.",
        f"Fix what the error says (network, service URL, token state in `mdm vpp account list`); `mdm vpp runs {account}` "
        f"lists the failed runs; `mdm vpp sync {account}` tries again now.",
        {"failures": failures, "since": since.isoformat(), "errorType": error_type, "error": error},
    )


def sync_recovered_alert(account: str, failures: int, since: datetime) -> Alert:
    """An account that was reported failing synced successfully."""
    return Alert(
        "sync",
        sync_subject(account),
        "ok",
        "resolved",
        account,
        f"Sync of VPP account '{account}' works again",
        f"The sync succeeded after {failures} failed attempt(s) since {since:%Y-%m-%d %H:%M} UTC.",
        "Nothing to do.",
        {"failures": failures, "since": since.isoformat()},
    )


# --------------------------------------------------------------------------- scheduled jobs

VPP_SYNC_JOBS = "vpp.sync."  # an account's sync job: its failures are the "sync failing" alert's


def job_subject(job: str) -> str:
    return f"job:{job}"


def job_failing_alert(job: str, finished: datetime, error: str) -> Alert:
    """Scheduled job ``job``'s last run, finished at ``finished``, failed with ``error``."""
    last = one_line(error)
    return Alert(
        "job",
        job_subject(job),
        "failing",
        "critical",
        None,
        f"Scheduled job '{job}' is failing",
        f"Its run that finished at {finished:%Y-%m-%d %H:%M} UTC failed: {last}. Until a run succeeds, what the job does is not done, "
        "and no other alert is sent for this job, even if it then fails for another reason (its last result, after a fix, says whether it works).",
        f"Fix what the error says (the log of `mdm run` has the details); `mdm jobs` shows the job's last result; `mdm jobs run {job}` tries again now.",
        {"job": job, "finished": finished.isoformat(), "error": last},
    )


def job_recovered_alert(job: str, since: datetime) -> Alert:
    """A job that was reported failing ran successfully."""
    return Alert(
        "job",
        job_subject(job),
        "ok",
        "resolved",
        None,
        f"Scheduled job '{job}' works again",
        f"A run succeeded after the runs that failed since {since:%Y-%m-%d %H:%M} UTC.",
        "Nothing to do.",
        {"job": job, "since": since.isoformat()},
    )


# --------------------------------------------------------------------------- event subscribers

SUBSCRIBER = "subscriber:"


def subscriber_failing_alert(failed: FailedSubscriber) -> Alert:
    """Plugin ``failed.plugin`` has event deliveries failed for good (retries exhausted)."""
    last = one_line(failed.error)
    return Alert(
        "subscriber",
        SUBSCRIBER + failed.plugin,
        "failing",
        "critical",
        None,
        f"Events are not delivered to plugin '{failed.plugin}'",
        f"{failed.deliveries} event deliveries to {failed.plugin} failed after every retry, the first at {failed.since:%Y-%m-%d %H:%M} UTC; "
        f"the last error: {last}. What the plugin does with these events is not done, and each one stays in the database until it is delivered "
        "(housekeeping cannot delete it): while the plugin keeps failing, every event it fails on adds one. No other alert is sent for it "
        "until none is left failed.",
        FIX[0].upper() + FIX[1:] + ".",
        {"plugin": failed.plugin, "deliveries": failed.deliveries, "since": failed.since.isoformat(), "error": last},
    )


def subscriber_recovered_alert(plugin: str, since: datetime) -> Alert:
    """No delivery to ``plugin`` is left failed any more (delivered again, or its events gone)."""
    return Alert(
        "subscriber",
        SUBSCRIBER + plugin,
        "ok",
        "resolved",
        None,
        f"Events are delivered to plugin '{plugin}' again",
        f"No event delivery to {plugin} is left failed (there were since {since:%Y-%m-%d %H:%M} UTC).",
        "Nothing to do.",
        {"plugin": plugin, "since": since.isoformat()},
    )


# --------------------------------------------------------------------------- licenses


def license_subject(account: str, adam_id: str, pricing: str) -> str:
    return f"licenses:{account}:{adam_id}:{pricing}"


def license_level(asset: Asset, threshold: Threshold, previous: str = "ok", margin: int = 0) -> str:
    """``ok``, ``low`` (below the threshold) or ``none`` (no license left) for an asset's counts.

    Hysteresis: from a worse ``previous`` level, the asset gets better only once ``margin`` more
    licenses are available than that level's bar (the threshold; 1 for ``none``), or once every
    license is free; getting worse is immediate. Counts swinging around the threshold keep their level.
    """
    available, total = int(asset.get("availableCount") or 0), int(asset.get("totalCount") or 0)
    level = _level(available, total, threshold)
    rank = LICENSE_STATES.index
    previous = previous if previous in LICENSE_STATES else "ok"
    if rank(level) >= rank(previous) or margin <= 0 or available >= total:
        return level
    return min(previous, _level(available - margin, total, threshold), key=rank)  # the better of the two


def _level(available: int, total: int, threshold: Threshold) -> str:
    if not threshold.active or total <= 0:
        return "ok"
    if available <= 0:
        return "none"
    return "low" if threshold.is_low(available, total) else "ok"


def app_label(adam_id: str, name: str | None, *details: str) -> str:
    """``Name (adamId 123, STDQ, App)``, or ``adamId 123 (STDQ, App)`` without a known name."""
    if name:
        return f"{name} ({', '.join((f'adamId {adam_id}', *details))})"
    return f"adamId {adam_id} ({', '.join(details)})" if details else f"adamId {adam_id}"


def recovery_count(total: int, threshold: Threshold, margin: int) -> int:
    """The available licenses at which a low asset of ``total`` is back to normal: its
    threshold plus ``margin``, at most ``total`` (every license free) unless the threshold is
    above it."""
    bar = threshold.bar(total)
    return max(bar, min(bar + max(margin, 0), total))


def license_alert(account: str, asset: Asset, previous: str, level: str, threshold: Threshold, name: str | None = None, margin: int = 0) -> Alert | None:
    """The alert for an asset whose license level went from ``previous`` to ``level``;
    ``name``: the app's name, when known (a safe one line); ``margin``: the recovery margin,
    to say when the all-clear comes."""
    if level == previous:
        return None
    adam_id, pricing = str(asset["adamId"]), str(asset["pricingParam"])
    available, total = int(asset.get("availableCount") or 0), int(asset.get("totalCount") or 0)
    recovery = recovery_count(total, threshold, margin)
    what = app_label(adam_id, name, pricing, str(asset.get("productType") or "asset"))
    fields = {
        "adamId": adam_id,
        "name": name,
        "pricingParam": pricing,
        "productType": asset.get("productType"),
        "availableCount": available,
        "assignedCount": asset.get("assignedCount"),
        "retiredCount": asset.get("retiredCount"),
        "totalCount": total,
        "threshold": str(threshold),
        "recoveryCount": recovery,
        "previousState": previous,
    }
    until = ""
    if margin > 0 and recovery <= total:
        why = f"the threshold plus a margin of {margin}" if recovery == threshold.bar(total) + margin else "every license"
        until = f" The all-clear comes when {recovery} are available ({why})."
    subject = license_subject(account, adam_id, pricing)
    more = f"Buy more licenses in Apple School Manager or Apple Business Manager (Apps and Books), or free unused ones: mdm apps reclaim {adam_id} --unused"
    if level == "ok":
        return Alert(
            "licenses",
            subject,
            "ok",
            "resolved",
            account,
            f"Licenses of {what} in account '{account}' are available again",
            f"{available} of {total} licenses are available (threshold {threshold}).",
            "Nothing to do.",
            fields,
        )
    if level == "none":
        return Alert(
            "licenses",
            subject,
            "none",
            "critical",
            account,
            f"No licenses left of {what} in account '{account}'",
            f"All {total} licenses are in use: new installs of it fail (Apple error 9709) until licenses are bought or freed.{until}",
            more,
            fields,
        )
    if available >= total:  # a threshold above all the asset has: none of them is in use, none to free
        text = f"Every license is free, but {total} is below the threshold ({threshold}): it stays low until more are bought or its threshold is lowered."
        more = "Buy more licenses in Apple School Manager or Apple Business Manager (Apps and Books), or lower its threshold ([alerts] low_licenses_per_asset)."
    else:
        text = f"Available licenses are below the threshold ({threshold}).{until}"
    title = f"Only {available} of {total} licenses left of {what} in account '{account}'"
    return Alert("licenses", subject, "low", "warning", account, title, text, more, fields)


SEVERITY_ORDER = ("critical", "warning", "resolved", "info")
DIGEST_AFTER = 3  # more license changes than this in one sync (or check) make one alert


def license_digest(account: str, alerts: list[Alert]) -> Alert:
    """Many assets of one account changing level at once (a first sync, a big purchase): one
    alert listing them, rather than a message per asset."""
    counts = {state: sum(1 for a in alerts if a.state == state) for state in ("none", "low", "ok")}
    parts = [
        f"{counts['none']} with no license left" if counts["none"] else "",
        f"{counts['low']} low" if counts["low"] else "",
        f"{counts['ok']} available again" if counts["ok"] else "",
    ]
    lines = [a.title for a in alerts][:MAX_LISTED]
    if len(alerts) > MAX_LISTED:
        lines.append(f"... and {len(alerts) - MAX_LISTED} more (`mdm vpp assets --account {account}`)")
    needs_action = counts["none"] or counts["low"]
    return Alert(
        "licenses",
        f"licenses:{account}",
        "digest",
        min((a.severity for a in alerts), key=SEVERITY_ORDER.index),
        account,
        f"Licenses of {len(alerts)} assets in account '{account}' changed: {', '.join(p for p in parts if p)}",
        "\n".join(lines),
        (
            "Buy more licenses in Apple School Manager or Apple Business Manager (Apps and Books), or free unused ones: mdm apps reclaim ADAMID --unused"
            if needs_action
            else "Nothing to do."
        ),
        {"assets": [{**a.fields, "state": a.state, "severity": a.severity, "title": a.title} for a in alerts]},
    )


def digest_parts(message_state: str, subject: str, severity: str, account: str, title: str, fields: dict[str, Any]) -> list[Alert]:
    """The per-asset license alerts a recorded license alert stands for (a digest: each asset
    it lists), to be folded into a new digest; only what ``license_digest`` reads."""
    if message_state != "digest":
        return [Alert("licenses", subject, message_state, severity, account, title, "", "", fields)]
    parts = []
    for asset in fields.get("assets", []):
        own = {k: v for k, v in asset.items() if k not in ("state", "severity", "title")}
        key = license_subject(account, str(asset.get("adamId")), str(asset.get("pricingParam")))
        parts.append(Alert("licenses", key, str(asset.get("state")), str(asset.get("severity")), account, str(asset.get("title")), "", "", own))
    return parts


# --------------------------------------------------------------------------- installs


def asset_subject(kind: str, account: str, adam_id: str, pricing: str) -> str:
    """The subject of an alert of ``kind`` about one asset of ``account``."""
    return f"{kind}:{account}:{adam_id}:{pricing}"


def install_subject(account: str, adam_id: str, pricing: str) -> str:
    return asset_subject("install", account, adam_id, pricing)


def install_failure(payload: InstallFailedPayload) -> dict[str, Any]:
    """One failed install, from a ``mobile_apps_install_failed`` payload."""
    target = payload.get("serialNumber") or payload.get("clientUserId")
    return {
        "id": payload.get("id"),
        "license": payload.get("license"),
        "target": target,
        "error": payload.get("error"),
        "errorNumber": payload.get("errorNumber"),
    }


def install_alert(account: str, adam_id: str, pricing: str, failures: list[dict[str, Any]], name: str | None = None) -> Alert:
    """Installs of one asset that failed (several failures of one moment are one alert);
    ``name``: the app's name, when known."""
    numbers = {f.get("errorNumber") for f in failures}
    if 9709 in numbers:
        action = (
            f"No license was left: buy more in Apple School Manager or Apple Business Manager, or free unused ones "
            f"(`mdm apps reclaim {adam_id} --unused`), then run `mdm apps install {adam_id}` again for these targets."
        )
    elif 9609 in numbers:
        action = "The VPP user is not registered or has not accepted the invitation: see `mdm vpp users`, then install again."
    else:
        action = f"See `mdm apps installs --status failed`; fix what Apple said, then run `mdm apps install {adam_id}` again."
    told = ("Install", "failed", "No InstallApplication was queued:", "`mdm apps installs --status failed`")
    return _asset_failures("install", account, told, action, adam_id, pricing, failures, name)


def _asset_failures(
    kind: str,
    account: str,
    told: tuple[str, str, str, str],
    action: str,
    adam_id: str,
    pricing: str,
    failures: list[dict[str, Any]],
    name: str | None,
    what: str | None = None,
) -> Alert:
    """An alert about failures of one asset (installs, reclaims), ``told`` as (noun, outcome,
    heading, where they are listed): its title, each device or user with what Apple said
    (``MAX_LISTED`` at most, the rest counted), and ``action``; ``what``: the asset as the title
    names it (default: its label)."""
    noun, outcome, heading, listed_by = told
    targets = [f"{'device' if f.get('license') == 'device' else 'user'} {f.get('target')}" for f in failures]
    what = what or app_label(adam_id, name, pricing)
    if len(failures) == 1:
        title = f"{noun} of {what} from account '{account}' {outcome} for {targets[0]}"
    else:
        title = f"{noun}s of {what} from account '{account}' {outcome} for {len(failures)} devices or users"
    lines = [f"{t}: {f.get('error') or outcome}" for t, f in zip(targets, failures, strict=True)][:MAX_LISTED]
    if len(failures) > MAX_LISTED:
        lines.append(f"... and {len(failures) - MAX_LISTED} more ({listed_by})")
    fields = {"adamId": adam_id, "name": name, "pricingParam": pricing, "failures": failures}
    return Alert(kind, asset_subject(kind, account, adam_id, pricing), "failed", "warning", account, title, "\n".join([heading, *lines]), action, fields)


def reclaim_subject(account: str, adam_id: str, pricing: str) -> str:
    return asset_subject("reclaim", account, adam_id, pricing)


def reclaim_failure(payload: ReclaimFinishedPayload) -> dict[str, Any]:
    """One reclaim Apple refused, from a ``mobile_apps_reclaim_finished`` payload."""
    device = payload.get("serialNumber")
    return {"id": payload.get("id"), "license": "device" if device else "user", "target": device or payload.get("clientUserId"), "error": payload.get("error")}


def reclaim_alert(account: str, adam_id: str, pricing: str, failures: list[dict[str, Any]], name: str | None = None) -> Alert:
    """Reclaims of one asset's licenses that Apple refused (several of one moment are one alert):
    the devices or users keep the licenses; ``name``: the app's name, when known. For adamId
    ``*``: revokes of removed devices or users whose licenses the mirror did not know (those it
    knew are told by their own reclaims)."""
    if adam_id == REVOKE:
        action = (
            "See `mdm apps reclaims`; fix what Apple said: once a sync shows the licenses they hold, `mdm apps reclaim --all --unused` takes them back "
            "(or release them in Apple School Manager or Apple Business Manager)."
        )
        heading = "Apple kept the licenses of these removed devices or users (none of them mirrored yet: assigned since the last sync, or in Apple's portal):"
        told = ("Revoke", "refused", heading, "`mdm apps reclaims`")
        return _asset_failures("reclaim", account, told, action, adam_id, pricing, failures, None, "the licenses of removed devices or users")
    action = (
        f"See `mdm apps reclaims`; fix what Apple said, then run `mdm apps reclaim {adam_id}` again for these devices or users "
        "(or release the licenses in Apple School Manager or Apple Business Manager: the reclaim job then ends them)."
    )
    told = ("Reclaim", "refused", "Apple kept these licenses assigned:", "`mdm apps reclaims`")
    return _asset_failures("reclaim", account, told, action, adam_id, pricing, failures, name)


def trial_alert(hostname: str) -> Alert:
    """What ``mdm alerts test`` sends."""
    return Alert(
        "test",
        "test",
        "test",
        "info",
        None,
        f"Test alert from mdm-host on {hostname}",
        "If you read this, alerts of this MDM host reach you through this channel.",
        "Nothing to do.",
        {},
    )
