"""``mdm alerts ...``: list, test, send, retry, webhook-secret."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING, Any

from sqlmodel import col

from mdm_core.argtypes import count
from mdm_core.errors import MdmError
from mdm_core.models import utcnow
from mdm_core.output import add_list_options, output_format, print_rows, say

from .listing import STATUSES

if TYPE_CHECKING:
    from mdm_core.host import Host

NO_CHANNEL = (
    "no alert channel is configured: set [alerts] email_to and email_from (and smtp_host), or add a webhook under [alerts.webhooks] (see the README, Alerts)"
)


def register(subparsers: Any) -> None:
    """Add ``alerts`` to the ``mdm`` parser."""
    alerts = subparsers.add_parser(
        "alerts",
        help="alerts to admins: what was sent, test the channels",
        description="Alerts about tokens, failing syncs, low licenses and failed installs, sent by e-mail "
        "and webhooks from [alerts] by the alerts.deliver job of `mdm run`.",
    )
    sub = alerts.add_subparsers(dest="alerts_cmd", required=True, metavar="COMMAND")

    lst = sub.add_parser("list", help="recent alerts and their delivery through each channel (pending, sent, failed)")
    lst.add_argument("--status", choices=STATUSES, help="only deliveries in this state")
    add_list_options(lst, limit=50)
    lst.set_defaults(func=_list)

    test = sub.add_parser(
        "test",
        help="send a test message through every configured channel now and report each",
        description="Exit 1 if any channel failed or none is configured.",
    )
    test.set_defaults(func=_test)

    send = sub.add_parser("send", help="check tokens and licenses now and send what is due (what `mdm run` does on its own)")
    send.set_defaults(func=_send)

    retry = sub.add_parser("retry", help="send failed alerts again (after fixing a channel)")
    retry.add_argument("ids", nargs="*", type=count(1), metavar="ID", help="alert ids (default: every failed delivery)")
    retry.set_defaults(func=_retry)

    secret = sub.add_parser(
        "webhook-secret",
        help="print the secret a webhook's POSTs are signed with (X-MDM-Signature), for its receiver",
        description="Each webhook's POSTs carry X-MDM-Timestamp and X-MDM-Signature: sha256=HMAC-SHA256(secret, TIMESTAMP + '.' + body); "
        "the receiver checks it with this secret (README, Alerts). Made at the webhook's first use, kept encrypted with the host's key.",
    )
    secret.add_argument("name", metavar="NAME", help="the webhook's name under [alerts.webhooks]")
    change = secret.add_mutually_exclusive_group()
    change.add_argument("--new", action="store_true", help="replace it (its receiver then needs the new one)")
    change.add_argument("--forget", action="store_true", help="drop it, e.g. of a webhook removed from [alerts.webhooks] (its name need not be there)")
    secret.set_defaults(func=_webhook_secret)


def list_alerts(host: Host, status: str | None = None, limit: int | None = 50, offset: int = 0) -> list[dict[str, Any]]:
    """The most recent alerts, newest first (``offset`` skips the newest), each with its
    deliveries; an app not named yet is named if its name is known now."""
    from .listing import alerts_query, with_deliveries
    from .models import AlertMessage
    from .names import name_listed

    with host.db.session() as session:
        messages = list(session.execute(alerts_query(status).order_by(col(AlertMessage.id).desc()).offset(offset).limit(limit)).scalars())
        rows = with_deliveries(session, messages, status)
    return name_listed(host, rows)


def _list(host: Host, args: argparse.Namespace) -> int:
    alerts = list_alerts(host, args.status, args.limit, args.offset)
    fmt = output_format(args)
    if fmt != "text":
        return print_rows(alerts, fmt, [])
    rows = []
    for alert in alerts:
        base = {"id": alert["id"], "created_at": alert["created_at"], "severity": alert["severity"], "title": alert["title"]}
        for d in alert["deliveries"] or [{"channel": "(no channel configured)", "status": "-"}]:
            rows.append(
                {
                    **base,
                    "channel": d["channel"],
                    "status": d["status"],
                    "attempts": d.get("attempts"),
                    "next_attempt_at": d.get("next_attempt_at"),
                    "last_error": d.get("last_error"),
                }
            )
    return print_rows(
        rows,
        fmt,
        ["id", "created_at", "severity", "channel", "status", "attempts", "next_attempt_at", "title", "last_error"],  # the JSON's keys (a delivery's)
        empty="no alerts" + (f" with a {args.status} delivery" if args.status else ""),
    )


def _test(host: Host, args: argparse.Namespace) -> int:
    from .channels import Outgoing
    from .delivery import send_now
    from .rules import trial_alert

    _ = host.db  # the webhooks' signing secrets: a database that does not exist is refused before anything is sent
    alert = trial_alert(socket.gethostname())
    message = Outgoing(
        id=None,
        created_at=utcnow(),
        kind=alert.kind,
        subject=alert.subject,
        state=alert.state,
        severity=alert.severity,
        account=None,
        title=alert.title,
        text=alert.text,
        action=alert.action,
        fields={},
    )
    results = send_now(host, message)
    if not results:
        raise MdmError(NO_CHANNEL)
    for result in results:
        line = f"{result['target']}: {result['status']}" + (f": {result['error']}" if result["error"] else "")
        if result["status"] == "sent":
            say(line)
        else:
            print(line, file=sys.stderr)
    return 0 if all(r["status"] == "sent" for r in results) else 1


def _send(host: Host, args: argparse.Namespace) -> int:
    from .channels import configured_channels
    from .delivery import check, deliver_due
    from .settings import settings

    queued = check(host)["queued"]
    counts = deliver_due(host)
    failed = bool(counts["retrying"] or counts["failed"])
    if not configured_channels(settings(host), host.config):  # recorded, and told to nobody: say where to set a channel
        say(f"{queued} new alert(s), sent to nobody: {NO_CHANNEL}")
        return 0
    (print if failed else say)(f"{queued} new alert(s); {counts['sent']} sent, {counts['retrying']} to retry, {counts['failed']} failed")
    return 1 if failed else 0


def _webhook_secret(host: Host, args: argparse.Namespace) -> int:
    from .signing import configured_webhook, forget_webhook_secret, webhook_secret

    if args.forget:
        forget_webhook_secret(host, args.name)
        print(f"forgot the signing secret of webhook {args.name}")
        return 0
    print(webhook_secret(host, configured_webhook(host, args.name), new=args.new))  # asked for: shown here only, never logged
    return 0


def _retry(host: Host, args: argparse.Namespace) -> int:
    from .delivery import NothingToRetry, retry_failed

    try:
        count = retry_failed(host, args.ids)
    except NothingToRetry as exc:  # nothing to do is not a failure (exit 0)
        say(f"nothing to retry: {str(exc).split(': nothing was queued again')[0]}")
        return 0
    if not count:
        say("nothing to retry: no failed deliveries")
        return 0
    say(f"{count} failed deliver{'y' if count == 1 else 'ies'} queued again; the alerts.deliver job (or `mdm alerts send`) sends them")
    return 0
