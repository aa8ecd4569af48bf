"""``mdm vpp ...`` commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mdm_core.argtypes import count, seconds
from mdm_core.output import add_list_options, output_format, print_json, print_rows, print_table, say

if TYPE_CHECKING:
    from mdm_core.host import Host


#: an interval's whole seconds; its range ([vpp] min_interval to a year) is checked with the
#: configuration (``check_interval``), so that the one range an admin is told is the real one
INTERVAL = count(None, unit="seconds")
KEY_LOST_HELP = (
    "the key the stored tokens were encrypted with is lost: store this token with the current key although it reads none of them (see `mdm secrets status`)"
)


def service_url(text: str) -> str:
    """An Apps and Books base URL (:func:`~plugins.vpp.accounts.service_url_problem`): a bad one is
    argparse's one-line error, a credential in it shown as ``***``."""
    from .accounts import service_url_problem

    problem = service_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def register(subparsers: Any) -> None:
    """Add ``vpp`` to the ``mdm`` parser."""
    vpp = subparsers.add_parser(
        "vpp",
        help="Apple Apps and Books (VPP) accounts, sync and mirror",
        description="Apple Apps and Books (VPP): accounts, sync, and the mirrored assets, licenses and users.",
    )
    sub = vpp.add_subparsers(dest="vpp_cmd", required=True, metavar="COMMAND")

    account = sub.add_parser("account", help="manage VPP accounts (locations and their tokens)")
    asub = account.add_subparsers(dest="account_cmd", required=True, metavar="COMMAND")
    add = asub.add_parser(
        "add",
        help="add an account from a .vpptoken file and claim its location",
        description="Decode the token, read the location from Apple, refuse a location another MDM manages (unless --take-over), then claim it.",
    )
    add.add_argument("name", metavar="NAME", help="a short name for the account")
    add.add_argument("--token-file", required=True, metavar="PATH", help="the .vpptoken file from Apple School/Business Manager")
    add.add_argument("--interval", type=INTERVAL, metavar="SECONDS", help="Account Synchronization Interval (sec) (default: [vpp] default_interval, 3600)")
    add.add_argument("--service-url", type=service_url, metavar="URL", help="Apps and Books v2 base URL (default: https://vpp.itunes.apple.com/mdm/v2)")
    add.add_argument("--take-over", action="store_true", help="claim the location even if another MDM manages it")
    add.add_argument("--key-lost", action="store_true", help=KEY_LOST_HELP)
    add.add_argument(
        "--notifications",
        choices=("on", "off"),
        help="Apple's notifications (default: on when [web] public_url is set; `mdm run` must then be up and reachable there)",
    )
    add.set_defaults(func=_account_add)
    lst = asub.add_parser("list", help="list accounts with token state and last sync")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_account_list)
    set_ = asub.add_parser("set", help="change an account's interval or renew its token")
    set_.add_argument("name", metavar="NAME")
    set_.add_argument("--interval", type=INTERVAL, metavar="SECONDS", help="new Account Synchronization Interval (sec)")
    set_.add_argument("--token-file", metavar="PATH", help="renewed token of the same location")
    set_.add_argument("--take-over", action="store_true", help="claim the location back if another MDM claimed it meanwhile")
    set_.add_argument("--key-lost", action="store_true", help=KEY_LOST_HELP)
    set_.add_argument(
        "--notifications",
        choices=("on", "off"),
        help="turn Apple's notifications on (needs [web] public_url and `mdm run` reachable there) or off (sync by polling only)",
    )
    set_.add_argument("--service-url", type=service_url, metavar="URL", help="another Apps and Books v2 base URL (checked with the stored token first)")
    set_.set_defaults(func=_account_set)
    ren = asub.add_parser(
        "rename",
        help="give an account another name (its mirror, runs, schedule and alerts follow it)",
        description="Rename an account: NEW is checked as `account add` checks a name and must not be an account already. "
        "Refused while a sync of it runs. Past events and alerts keep the old name.",
    )
    ren.add_argument("name", metavar="OLD")
    ren.add_argument("new_name", metavar="NEW")
    ren.set_defaults(func=_account_rename)
    rm = asub.add_parser(
        "remove",
        help="forget an account and its mirror",
        description="Forget an account and its mirror (its applications are retired). Asks on a terminal; --yes for scripts.",
    )
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--dry-run", action="store_true", help="say what it would remove, change nothing")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    rm.set_defaults(func=_account_remove)

    sync = sub.add_parser(
        "sync", help="sync one account or all now", description="Sync now (incremental when possible). Exit 1 if a sync failed or was already running."
    )
    sync.add_argument("name", nargs="?", metavar="NAME", help="the account (default: all)")
    sync.add_argument("--full", action="store_true", help="read everything again instead of the changes")
    sync.add_argument("--wait", type=seconds(), metavar="SECONDS", help="wait this long for a running sync of the same account (default: [vpp] lock_wait)")
    sync.add_argument("--json", action="store_true", help="print the reports as JSON")
    sync.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pages and rows per dataset every few seconds on stderr (default: when stderr is a terminal)",
    )
    sync.set_defaults(func=_sync)

    runs = sub.add_parser("runs", help="recent sync runs (trigger, mode, counts, error)")
    runs.add_argument("name", nargs="?", metavar="NAME")
    add_list_options(runs, limit=20)
    runs.set_defaults(func=_runs)

    assets = sub.add_parser("assets", help="mirrored assets with their license counts")
    assets.add_argument("--account", metavar="NAME")
    add_list_options(assets, json_help="print JSON (Apple's field names)")
    assets.set_defaults(func=_assets)

    licenses = sub.add_parser("licenses", help="mirrored licenses (user and device licenses of assets)")
    licenses.add_argument("--account", metavar="NAME")
    licenses.add_argument("--asset", metavar="ADAM_ID")
    licenses.add_argument("--device", metavar="SERIAL")
    licenses.add_argument("--user", metavar="CLIENT_USER_ID")
    add_list_options(licenses, json_help="print JSON (Apple's field names)")
    licenses.set_defaults(func=_licenses)

    users = sub.add_parser("users", help="mirrored VPP users; `register` creates VPP users for MDM users")
    users.add_argument("--account", metavar="NAME")
    add_list_options(users, json_help="print JSON (Apple's field names)")
    users.set_defaults(func=_users)
    usub = users.add_subparsers(dest="users_cmd", required=False, metavar="COMMAND")
    reg = usub.add_parser(
        "register",
        help="create VPP users for MDM users (clientUserId = MDM user id)",
        description="Users with a Managed Apple ID are associated at once; others get an invitation URL.",
    )
    reg.add_argument("users", nargs="+", metavar="MDM_USER")
    reg.add_argument("--account", metavar="NAME", help="the account (needed when there are several)")
    reg.add_argument("--json", action="store_true", help="print JSON")
    reg.set_defaults(func=_users_register)
    ret = usub.add_parser(
        "retire",
        help="retire VPP users at Apple (their revocable licenses go back to the pool)",
        description="Send Apple users/retire for these clientUserIds in every account where they are live VPP users "
        "(or --account). Apple frees their revocable licenses; books stay with the user.",
    )
    ret.add_argument("users", nargs="+", metavar="CLIENT_USER_ID")
    ret.add_argument("--account", metavar="NAME", help="only this account")
    ret.add_argument("--json", action="store_true", help="print JSON")
    ret.set_defaults(func=_users_retire)

    sim = sub.add_parser("simulator", help="a local Apple-compatible Apps and Books service")
    ssub = sim.add_subparsers(dest="sim_cmd", required=True, metavar="COMMAND")
    serve = ssub.add_parser("serve", help="run the simulator and write a matching .vpptoken file")
    from plugins.vpp.simulator.cli import add_serve_arguments

    add_serve_arguments(serve)
    serve.set_defaults(func=_sim_serve)
    from plugins.vpp.simulator.cli import add_control_arguments

    change = ssub.add_parser(
        "change",
        help="change Apple's side of a running simulator (a purchase, a license removed, ...)",
        description="Send a control action to a simulator started with `serve`, e.g. "
        "`mdm vpp simulator change purchase count=25 supported_platforms='[\"iOS\"]'`.",
    )
    fault = ssub.add_parser(
        "fault",
        help="arm a fault in a running simulator (429, 5xx, slow, dropped, ...); --list, --clear",
        description="Arm a fault for the next requests, e.g. `mdm vpp simulator fault rate_limit retry_after=2 --endpoint assets --count 3`.",
    )
    add_control_arguments(change, fault)
    change.set_defaults(func=_sim_change)
    fault.set_defaults(func=_sim_fault)
    actions = ssub.add_parser("actions", help="every control action and fault with its parameters")
    actions.set_defaults(func=_sim_actions)


def _account_add(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.accounts import add_account

    account = add_account(
        host,
        args.name,
        args.token_file,
        interval=args.interval,
        service_url=args.service_url,
        take_over=args.take_over,
        notifications=_on_off(args.notifications),
        key_lost=args.key_lost,
    )
    say(
        f"added account {account['name']}: {account['locationName']} ({account['orgName']}), "
        f"token {account['token_status']} until {account['tokenExpirationDate'][:10]}, "
        f"sync every {account['interval_seconds']}s, notifications {account['notifications']}"
    )
    return 0


def _account_list(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.accounts import list_accounts

    rows = list_accounts(host)
    if rows:
        _ = host.secrets  # a missing key file: one line saying how to restore it, not a table of unreadable tokens
    if args.json:
        print_json(rows)
    else:
        shown: list[dict[str, Any]] = [{**row, "tokenExpirationDate": row["tokenExpirationDate"][:10]} for row in rows]  # the day
        print_table(
            shown,
            [
                "name",
                "locationName",
                "orgName",
                "tokenExpirationDate",
                "token_status",
                "interval_seconds",
                "last_sync_at",
                "last_sync_result",
                "notifications",
                "last_notification_at",
            ],
            empty="no VPP accounts: add one with `mdm vpp account add`",
        )
        from plugins.vpp.token_state import NOTHING_TO_DO

        for row in rows:  # what --json and the API say too (accounts.account_action)
            if row["action"] != NOTHING_TO_DO:
                print(f"{row['name']}: {row['action']}")
    return 0


def _account_set(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.accounts import set_account

    account = set_account(
        host,
        args.name,
        interval=args.interval,
        token_file=args.token_file,
        take_over=args.take_over,
        notifications=_on_off(args.notifications),
        service_url=args.service_url,
        key_lost=args.key_lost,
    )
    say(
        f"updated account {account['name']}: token {account['token_status']} until {account['tokenExpirationDate'][:10]}, "
        f"sync every {account['interval_seconds']}s, notifications {account['notifications']}"
        + (f", service {account['service_url']}" if args.service_url else "")
    )
    if "notice" in account:  # what the renewal changed unasked (notifications it turned off)
        import sys

        say(f"warning: {account['notice']}", out=sys.stderr)
    return 0


def _account_rename(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.rename import rename_account

    account = rename_account(host, args.name, args.new_name)
    say(f"renamed account {args.name} to {account['name']}")
    return 0


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _account_remove(host: Host, args: argparse.Namespace) -> int:
    import sys

    from mdm_core.output import ask_first
    from plugins.vpp.accounts import account_contents, remove_account

    contents = account_contents(host, args.name)
    at_apple = "Apple's notifications are turned off, nothing else changes at Apple" if contents["notifications"] else "nothing changes at Apple"
    what = (
        f"remove account {args.name} and its mirror ({contents['assets']} assets, {contents['licenses']} licenses, {contents['users']} VPP users; {at_apple})"
    )
    stop = ask_first(what, yes=args.yes, dry_run=args.dry_run, declined="nothing removed")
    if stop is not None:
        return stop
    notice = remove_account(host, args.name)
    say(f"removed account {args.name}")
    if notice:
        say(f"warning: {notice}", out=sys.stderr)
    return 0


def format_report(report: dict[str, Any]) -> str:
    """One line per sync report."""
    if report["status"] != "ok":
        return f"{report['account']}: {report['status']}" + (f": {report['error']}" if report.get("error") else "")
    from plugins.vpp.changes import format_sync_counts

    return f"{report['account']}: {report['mode']} sync ok in {report['duration_s']}s, {report['pages']} pages: {format_sync_counts(report['counts'])}"


PROGRESS_EVERY = 3.0  # seconds between two progress lines


def _sync(host: Host, args: argparse.Namespace) -> int:
    import sys
    import time
    from contextlib import nullcontext

    from plugins.vpp.sync import progress
    from plugins.vpp.sync.run import finished_before

    started = time.monotonic()
    show = sys.stderr.isatty() if args.progress is None else args.progress
    listen = progress.listening(progress.every(PROGRESS_EVERY, lambda line: print(line, file=sys.stderr, flush=True))) if show else nullcontext()
    try:
        with listen:
            reports = host.pm.hook.mdm_vpp_sync(host=host, account=args.name, full=args.full, trigger="manual", wait=args.wait)
    except KeyboardInterrupt as exc:  # the syncs that finished, then (mdm_core.cli) the interrupted one's line
        _show_reports(args, finished_before(exc))
        raise
    if len(reports) == 1:  # the time this command took, as the admin waited for it
        reports[0]["duration_s"] = round(time.monotonic() - started, 3)
    if not reports and not args.json:
        print("no VPP accounts: add one with `mdm vpp account add`")
    _show_reports(args, reports)
    return 0 if all(r["status"] == "ok" for r in reports) else 1


def _show_reports(args: argparse.Namespace, reports: list[Any]) -> None:
    if args.json:
        print_json(reports)
        return
    import sys

    for report in reports:  # results on stdout, an account's error on stderr
        if report["status"] == "ok":
            say(format_report(report))
        else:
            print(format_report(report), file=sys.stderr, flush=True)


def _runs(host: Host, args: argparse.Namespace) -> int:
    from mdm_core.locks import describe_holder
    from plugins.vpp.sync.run import recent_runs
    from plugins.vpp.views import get_account

    if args.name:  # a misspelt name is an error, not an empty history
        with host.db.session() as session:
            get_account(session, args.name)
    rows = recent_runs(host, args.name, args.limit, offset=args.offset)
    fmt = output_format(args)
    if fmt == "text":  # which process on which host ran it (`process 1234 on host-a`; JSON: the holder's own id)
        rows = [{**r, "holder": describe_holder(r["holder"]) if r["holder"] else None} for r in rows]
    columns = ["id", "account", "trigger", "mode", "status", "started_at", "finished_at", "holder", "pages", "error"]
    return print_rows(rows, fmt, columns, empty="no sync runs")


def _assets(host: Host, args: argparse.Namespace) -> int:
    rows = host.pm.hook.mdm_vpp_iter_assets(host=host, account=args.account, offset=args.offset, limit=args.limit)
    return print_rows(
        rows,
        output_format(args),
        [
            "account",
            "adamId",
            "pricingParam",
            "productType",
            "assignedCount",
            "availableCount",
            "retiredCount",
            "totalCount",
            "deviceAssignable",
            "revocable",
            "supportedPlatforms",
        ],
        empty="no assets: run `mdm vpp sync`",
    )


def _licenses(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.views import account_id, check_license_filters

    with host.db.session() as session:  # a filter naming nothing here is an error, not "no licenses"
        check_license_filters(session, account_id(session, args.account), args.asset, args.device, args.user)
    rows = host.pm.hook.mdm_vpp_iter_licenses(
        host=host, account=args.account, adam_id=args.asset, serial_number=args.device, client_user_id=args.user, offset=args.offset, limit=args.limit
    )
    return print_rows(
        rows, output_format(args), ["account", "adamId", "pricingParam", "serialNumber", "enrolled", "clientUserId", "mdmUser"], empty="no licenses"
    )


def _users(host: Host, args: argparse.Namespace) -> int:
    rows = host.pm.hook.mdm_vpp_iter_users(host=host, account=args.account, offset=args.offset, limit=args.limit)
    return print_rows(rows, output_format(args), ["account", "clientUserId", "email", "status", "idHash", "inviteCode", "mdmUser"], empty="no VPP users")


def _users_register(host: Host, args: argparse.Namespace) -> int:
    from mdm_core.errors import UsageError
    from plugins.vpp.accounts import list_accounts
    from plugins.vpp.operations import register_users

    account = args.account
    if account is None:
        names = [a["name"] for a in list_accounts(host)]
        if len(names) != 1:
            raise UsageError("give --account NAME" + (f" (one of {', '.join(names)})" if names else ": no VPP account yet"))
        account = names[0]
    rows = register_users(host, account, args.users)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            if row["status"] == "Associated":
                say(f"{row['clientUserId']}: associated")
            elif row["status"] == "Registered":
                print(f"{row['clientUserId']}: registered; send the invitation: {row['invitationUrl']}")
            else:
                print(f"{row['clientUserId']}: failed: {row['errorMessage']} (Apple error {row['errorNumber']})")
    return 0 if all(r["status"] != "FAILED" for r in rows) else 1


def _sim_change(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.simulator.cli import change

    return change(args)


def _sim_fault(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.simulator.cli import fault

    return fault(args)


def _sim_actions(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.simulator.remote import describe_actions

    print(describe_actions())
    return 0


def _users_retire(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.operations import retire_users

    rows = retire_users(host, args.users, account=args.account)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            where = f" in {row['account']}" if row["account"] else ""
            if row["status"] == "Retired":
                say(f"{row['clientUserId']}: retired{where}")
            elif row["status"] == "pending":
                print(f"{row['clientUserId']}: pending{where}: Apple has not confirmed yet; see `mdm vpp users` after the next sync")
            elif row["status"] == "unknown":
                print(f"{row['clientUserId']}: not retired: {row['errorMessage']}")
            else:
                print(f"{row['clientUserId']}: failed{where}: {row['errorMessage']} (Apple error {row['errorNumber']})")
    return 0 if all(r["status"] == "Retired" for r in rows) else 1


def _sim_serve(host: Host, args: argparse.Namespace) -> int:
    from plugins.vpp.simulator.cli import serve

    return serve(args)
