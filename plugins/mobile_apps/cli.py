"""``mdm apps ...``: list, show, install, reclaim, reclaims, installs, refresh-metadata, check-updates."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mdm_core.argtypes import seconds
from mdm_core.errors import UsageError
from mdm_core.output import add_list_options, format_time, output_format, print_json, print_rows, say

from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host
    from plugins.vpp.payloads import License


def register(subparsers: Any) -> None:
    """Add ``apps`` to the ``mdm`` parser."""
    apps = subparsers.add_parser(
        "apps",
        help="mobile applications from VPP: list, install with licenses, reclaim",
        description="Applications published from the VPP accounts' assets (one per platform; iOS also covers iPadOS). "
        "APP is an application id, an adamId or a bundle id.",
    )
    sub = apps.add_subparsers(dest="apps_cmd", required=True, metavar="COMMAND")

    lst = sub.add_parser("list", help="applications and books with their license counts")
    lst.add_argument("--platform", metavar="P", help="iOS (also iPadOS), macOS, tvOS, watchOS or visionOS")
    lst.add_argument("--kind", choices=["app", "book"])
    lst.add_argument("--state", choices=["published", "retired"])
    add_list_options(lst)
    lst.set_defaults(func=_list)

    show = sub.add_parser("show", help="one application: source, platforms, counts, state, metadata, license holders")
    show.add_argument("app", metavar="APP")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    inst = sub.add_parser(
        "install",
        help="install an app with a VPP license on devices or for a user",
        description="Check each target, associate the license with Apple (unless already held), then queue "
        "InstallApplication (PurchaseMethod 1). Exit 1 if any device or user was refused or failed.",
        usage="%(prog)s APP (--device SERIAL [SERIAL ...] | --user MDM_USER | --devices-file FILE) [--wait SECONDS] [--json]",
    )
    inst.add_argument("app", metavar="APP", nargs="?")  # checked in _install: after --device it was taken for a serial
    target = inst.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--device", metavar="SERIAL", nargs="+", action="extend", help="device serial numbers: several after one --device, or --device repeated"
    )
    target.add_argument("--user", metavar="MDM_USER", help="an MDM user: a user license, installed on each enrolled device they own")
    target.add_argument("--devices-file", metavar="FILE", help="serial numbers, one per line (or CSV with a serial_number column)")
    inst.add_argument("--wait", type=seconds(), metavar="SECONDS", help="how long to wait for Apple's confirmation (default: [mobile_apps] install_wait)")
    inst.add_argument("--json", action="store_true", help="print JSON")
    inst.set_defaults(func=_install)

    installs = sub.add_parser("installs", help="recorded installs (queued, pending Apple's confirmation, failed)")
    installs.add_argument("--status", choices=["associating", "invited", "pending", "queued", "licensed", "failed", "canceled", "removed"])
    add_list_options(installs)
    installs.set_defaults(func=_installs)

    rec = sub.add_parser(
        "reclaim",
        help="free VPP licenses of an app (or of every app with --all --unused)",
        description="Disassociate licenses now; when Apple cannot be reached they stay pending and the "
        "mobile_apps.reclaim job retries them. Irrevocable assets are reported, not attempted.",
    )
    rec.add_argument("app", metavar="APP", nargs="?")
    rec.add_argument("--all", action="store_true", help="every app (only with --unused)")
    which = rec.add_mutually_exclusive_group(required=True)
    which.add_argument("--device", metavar="SERIAL", help="the license held by this device")
    which.add_argument("--user", metavar="MDM_USER", help="the license held by this user")
    which.add_argument(
        "--unused", action="store_true", help="licenses held by devices or users that were removed from this MDM (never those of targets it never knew)"
    )
    rec.add_argument("--dry-run", action="store_true", help="list the licenses it would reclaim, change nothing")
    rec.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts); without a terminal --unused needs it")
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.set_defaults(func=_reclaim)

    shown = "pending, failed and irrevocable reclaims (not a failed one reclaimed again since), then how many others are not shown (--all lists them)"
    recs = sub.add_parser("reclaims", help=shown, description=f"Every reclaim is recorded. This lists the {shown}.")
    recs.add_argument("--all", action="store_true", help="every reclaim recorded: done, canceled and superseded ones too")
    add_list_options(recs)
    recs.set_defaults(func=_reclaims)

    meta = sub.add_parser("refresh-metadata", help="look up names, bundle ids, versions and icons now")
    meta.add_argument("--all", action="store_true", help="also refresh metadata that is not stale yet")
    meta.set_defaults(func=_refresh_metadata)

    upd = sub.add_parser(
        "check-updates",
        help="look for new versions of the published apps now and queue their updates",
        description="Look up every published app again; for each new version, record it, fire mdm_mobile_apps_app_updated and queue "
        "InstallApplication on each enrolled device whose install of the app was acknowledged and that still holds a license "
        "(no license is associated again). Runs whatever [mobile_apps] auto_update says. "
        "Exit 1 if a lookup failed, 3 if every one failed (no app was checked).",
    )
    upd.add_argument("--no-install", action="store_true", help="record the new versions and fire the events, queue nothing (no later check installs them)")
    upd.add_argument("--json", action="store_true", help="print JSON")
    upd.set_defaults(func=_check_updates)


def _list(host: Host, args: argparse.Namespace) -> int:
    from .catalog import counts_shown, iter_apps

    rows = iter_apps(host, platform=args.platform, kind=args.kind, state=args.state, offset=args.offset, limit=args.limit)
    fmt = output_format(args)
    if fmt == "text":
        rows = ({**row, **counts_shown(row), "name": row["name"] or f"({row['metadata']})"} for row in rows)
    return print_rows(
        rows,
        fmt,
        # the JSON's keys
        ["id", "kind", "platform", "name", "bundleId", "version", "available", "adamId", "pricingParam", "account", "availableCount", "totalCount", "state"],
        empty="no applications: add a VPP account and run `mdm vpp sync`",
    )


def _show(host: Host, args: argparse.Namespace) -> int:
    from .catalog import RETIRED_COUNTS, app_dict, find_apps

    with host.db.session() as session:
        rows = find_apps(session, args.app)
    apps = [app_dict(a, m) for a, m in rows]
    holders: dict[tuple[str, str, str], list[License]] = {}
    port = VppPort(host)
    if port.available:
        for key in sorted({(a["account"], a["adamId"], a["pricingParam"]) for a in apps}):
            holders[key] = [lic for lic in port.licenses(key[0], key[1]) if lic["pricingParam"] == key[2]]
    for app in apps:
        app["licenses"] = holders.get((app["account"], app["adamId"], app["pricingParam"]), [])
    if args.json:
        print_json(apps if len(apps) > 1 else apps[0])
        return 0
    for i, app in enumerate(apps):
        if i:
            print()
        name = app["name"] or f"(metadata {app['metadata']})"
        print(f"{name}  [application {app['id']}, {app['kind']}, {app['platform']}, {app['state']}]")
        fields = [
            ("source", f"VPP account {app['account']}, adamId {app['adamId']}, pricingParam {app['pricingParam']} ({app['productType']})"),
            ("bundle id", app["bundleId"]),
            (
                "version",
                app["version"] + (f" ({app['available']} available: the update check installs it)" if app["available"] else "") if app["version"] else None,
            ),
            ("icon", app["iconUrl"]),
            ("platforms", ", ".join(app["supportedPlatforms"]) + (" (iOS covers iPadOS)" if "iOS" in app["supportedPlatforms"] else "")),
            (
                "licenses",
                f"{app['assignedCount']} assigned, {app['availableCount']} available, {app['retiredCount']} retired, {app['totalCount']} total"
                + (f" ({RETIRED_COUNTS})" if app["state"] == "retired" else ""),
            ),
            ("device-assignable", "yes" if app["deviceAssignable"] else "no (user licenses only)"),
            ("revocable", "yes" if app["revocable"] else "no (licenses cannot be reclaimed)"),
            (
                "metadata",
                app["metadata"]
                + (f", fetched {format_time(app['metadataFetchedAt'])}" if app["metadataFetchedAt"] else "")
                + (f", last error: {app['metadataError']}" if app["metadataError"] else ""),
            ),
            ("published", format_time(app["publishedAt"]) + (f", retired {format_time(app['retiredAt'])}" if app["retiredAt"] else "")),
        ]
        for label, value in fields:
            print(f"  {label + ':':<18} {value if value is not None else '-'}")
        devices = [lic for lic in app["licenses"] if lic.get("serialNumber")]
        users = [lic for lic in app["licenses"] if lic.get("clientUserId")]
        print(f"  {'held by devices:':<18} " + (", ".join(d["serialNumber"] + ("" if d.get("enrolled") else " (not enrolled)") for d in devices) or "-"))
        print(f"  {'held by users:':<18} " + (", ".join(u["clientUserId"] + ("" if u.get("mdmUser") else " (not an MDM user)") for u in users) or "-"))
    return 0


def _install(host: Host, args: argparse.Namespace) -> int:
    from .installs.request import NOT_DONE, install, read_devices_file

    if args.app is None:
        raise UsageError(
            "APP is missing: give it first (--device takes every serial number up to the next option): mdm apps install APP --device SERIAL [SERIAL ...]"
        )
    VppPort(host).require("VPP apps cannot be installed or reclaimed")
    serials = read_devices_file(args.devices_file) if args.devices_file else args.device
    outcome = install(host, args.app, serials=serials, user=args.user, wait=args.wait)
    if args.json:
        print_json({"app": outcome.asset.label if outcome.asset else None, "ok": outcome.ok, "results": outcome.as_dicts()})
    else:
        for target, status, said in outcome.lines:
            if status in NOT_DONE:
                print(f"{target}: {status}: {said.cli}", file=sys.stderr)
            else:
                say(f"{target}: {status}: {said.cli}")
        counts: dict[str, int] = {}
        for _, status, _ in outcome.lines:
            counts[status] = counts.get(status, 0) + 1
        asset = outcome.asset
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        (say if outcome.ok else print)(f"{asset.label if asset else args.app} from account {asset.account if asset else '?'}: {summary}")
    return 0 if outcome.ok else 1


def _installs(host: Host, args: argparse.Namespace) -> int:
    from .installs.commands import iter_installs

    rows = iter_installs(host, args.status, offset=args.offset, limit=args.limit)
    return print_rows(
        rows,
        output_format(args),
        ["id", "account", "adam_id", "pricing_param", "kind", "target", "source", "status", "updated_at", "error"],
        empty="no installs",
    )


def _reclaim(host: Host, args: argparse.Namespace) -> int:
    from mdm_core.output import confirm

    from .reclaims import plan_reclaim, reclaim, reclaim_ok, reclaim_result

    VppPort(host).require("VPP apps cannot be installed or reclaimed")
    if args.all and args.app:
        raise UsageError("give APP or --all, not both")
    if args.all and not args.unused:
        raise UsageError("--all needs --unused (reclaim a device's or a user's license one app at a time)")
    if not args.all and not args.app:
        raise UsageError("give APP (an application id, an adamId or a bundle id), or --all --unused")
    plan = plan_reclaim(host, args.app, serial=args.device, user=args.user, unused=args.unused)
    if not plan.licenses:
        _refuse_unknown_holder(host, args)
    if args.dry_run:
        if args.json:
            print_json(plan.rows)
            return 0
        if not plan.licenses:
            print(_nothing_to_reclaim(args))
        for lic in plan.rows:
            said = f"irrevocable: {reclaim_result(lic)}" if lic["status"] == "irrevocable" else "would be reclaimed"
            print(f"{lic['adamId']} {lic['pricingParam']} {lic.get('serialNumber') or lic.get('clientUserId')}: {said} (account {lic['account']})")
        if plan.licenses:
            print(f"would reclaim {len(plan.licenses) - plan.kept} license(s)" + (f"; {plan.kept} irrevocable (kept)" if plan.kept else ""))
        return 0
    if plan.question and not confirm(plan.question, yes=args.yes):
        print("nothing reclaimed")
        return 1
    rows = reclaim(host, args.app, plan=plan)
    if args.json:
        print_json(rows)
        return 0 if reclaim_ok(rows) else 1
    if not rows:
        say(_nothing_to_reclaim(args))
        return 0
    for row in rows:
        target = row.get("serialNumber") or row.get("clientUserId")
        (say if row["status"] in ("done", "pending") else print)(f"{row['adam_id']} {row['pricing_param']} {target}: {row['status']}: {reclaim_result(row)}")
    return 0 if reclaim_ok(rows) else 1


def _refuse_unknown_holder(host: Host, args: argparse.Namespace) -> None:
    """No license found for a ``--device`` or ``--user`` this MDM does not know (misspelt, most
    often): say so (``UsageError``), not "holds no license", which exited 0."""
    from .reclaims import UNKNOWN_HOLDER, unknown_holders

    if args.app and (args.device or args.user):
        kind, target = ("device", args.device.strip().upper()) if args.device else ("user", args.user.strip())
        if unknown_holders(host, [(kind, target)]):
            raise UsageError(f"no license to reclaim: {'device ' if args.device else ''}{target} is {UNKNOWN_HOLDER[kind]}")


def _nothing_to_reclaim(args: argparse.Namespace) -> str:
    """What was looked for, so that a misspelt serial number or user shows."""
    if args.app and (args.device or args.user):
        what, option, target = ("device", "--device", args.device) if args.device else ("MDM user", "--user", args.user)
        return f"no license to reclaim: {what} {target} holds no license of {args.app} (see `mdm vpp licenses {option} {target}`)"
    return "no license to reclaim"


def _reclaims(host: Host, args: argparse.Namespace) -> int:
    from .reclaims import count_closed, iter_reclaims

    rows = iter_reclaims(host, everything=args.all, offset=args.offset, limit=args.limit)
    fmt = output_format(args)
    columns = ["id", "account", "adam_id", "pricing_param", "kind", "target", "reason", "status", "attempts", "next_attempt_at", "last_error"]
    print_rows(
        rows,
        fmt,
        columns + ["superseded_by"] if args.all else columns,  # open ones are never superseded
        empty="no pending, failed or irrevocable reclaims" if not args.all else "no reclaims",
    )
    hidden = 0 if args.all or fmt != "text" else count_closed(host)
    if hidden:  # every reclaim is recorded: say that the finished ones are there
        print(f"{hidden} done, canceled or superseded reclaim(s) not shown: `mdm apps reclaims --all` lists them")
    return 0


def _refresh_metadata(host: Host, args: argparse.Namespace) -> int:
    from .catalog import refresh_metadata

    VppPort(host).require("metadata cannot be looked up")
    errors: list[str] = []
    counts = refresh_metadata(host, force=True, everything=args.all, errors=errors)
    if not counts["looked_up"]:  # "looked up 0 app(s)" read as if the lookup had found nothing
        say("nothing to look up: every published app's metadata is current (--all looks it up again)")
        return 0
    (print if counts["failed"] else say)(_looked_up(counts, errors, "retried later by the mobile_apps.metadata job"))
    return 1 if counts["failed"] else 0


def _looked_up(counts: dict[str, int], errors: list[str], retry: str) -> str:
    """The line that says what a metadata lookup did."""
    return f"looked up {counts['looked_up']} app(s): {counts['found']} found, {counts['missing']} unknown to Apple, {counts['failed']} failed" + (
        f" ({'; '.join(dict.fromkeys(errors))}; {retry})" if counts["failed"] else ""
    )


def _check_updates(host: Host, args: argparse.Namespace) -> int:
    from .updates import NothingChecked, check_updates

    report = check_updates(host, install=not args.no_install)
    failed = report.counts["failed"]
    code = NothingChecked.exit_code if report.nothing_checked else 1 if failed else 0
    if args.json:
        print_json({**report.counts, "errors": list(dict.fromkeys(report.errors)), "updates": [u.as_dict() for u in report.updates]})
        return code
    if report.nothing_checked:  # "no new version" said that every app had been checked
        raise report.nothing_checked_error("fix what it says or try again later: mdm apps check-updates")
    (print if failed else say)(_looked_up(report.counts, report.errors, "looked up again by the next check"))
    for found in report.updates:
        print(found.label)
        for device in found.devices:
            print(f"  {device['serialNumber']}: {device['status']}: {device['message']}")
        if found.waiting_line:
            print(f"  {found.waiting_line}")
    (print if failed or report.updates else say)(report.outcome(" (--no-install)" if args.no_install else ""))
    return code
