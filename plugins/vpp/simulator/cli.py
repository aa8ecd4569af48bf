"""Command line: `serve` a simulator until SIGINT/SIGTERM (wired as `mdm vpp simulator serve`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC

from .server import Simulator


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the serve options to `parser` (every number checked where it enters)."""
    from mdm_core.argtypes import count, number, seconds

    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=count(0, 65535), default=0, help="port (default 0 = a free port)")
    parser.add_argument("--seed", default="1", help="seed of the generated data")
    parser.add_argument("--assets", type=count(0), default=12)
    parser.add_argument("--devices", type=count(0), default=40)
    parser.add_argument("--users", type=count(0), default=25)
    parser.add_argument("--assignments", type=count(0), default=None, help="total assignments (default 2*devices + users)")
    parser.add_argument("--page-size", type=count(1), default=437)
    parser.add_argument("--async-delay", type=seconds(maximum=3600), default=0.2, help="seconds an event stays PENDING")
    parser.add_argument(
        "--notification-retry-delays",
        default="60,240",
        metavar="SECONDS,...",
        help="seconds between the 3 attempts to deliver a notification (default 60,240, as Apple)",
    )
    parser.add_argument(
        "--token-file", default="var/simulator.vpptoken", help="where to write the .vpptoken (mode 0600); the base URL goes beside it (FILE.url)"
    )
    parser.add_argument(
        "--token-expires-in",
        type=number("days", 0.01, 3650),
        metavar="DAYS",
        help="the token expires in DAYS days (default: a year), e.g. 20 to preview expiring_30, 5 for expiring_7",
    )
    return parser


def add_control_arguments(change: argparse.ArgumentParser, fault: argparse.ArgumentParser) -> None:
    """The options of `change` and `fault` (a simulator started by `serve`)."""
    from mdm_core.argtypes import count

    from .remote import ACTIONS, FAULT_COMMON, FAULTS

    for parser in (change, fault):
        parser.add_argument("--url", help="the simulator's URL as `serve` printed it (default: the one `serve` wrote beside --token-file)")
        parser.add_argument("--token-file", default="var/simulator.vpptoken", help="the token file given to `serve`")
    change.add_argument("action", choices=sorted(ACTIONS), metavar="ACTION", help="one of: " + ", ".join(ACTIONS))
    change.add_argument("params", nargs="*", metavar="NAME=VALUE", help="the action's parameters (see `mdm vpp simulator actions`); values are JSON or text")
    fault.add_argument("kind", nargs="?", choices=sorted(FAULTS), metavar="KIND", help="one of: " + ", ".join(FAULTS))
    fault.add_argument("params", nargs="*", metavar="NAME=VALUE", help="the fault's parameters (see `mdm vpp simulator actions`)")
    fault.add_argument("--endpoint", help=FAULT_COMMON["endpoint"])
    fault.add_argument("--count", type=count(1), help=FAULT_COMMON["count"])
    fault.add_argument("--after", type=count(0), default=0, help=FAULT_COMMON["after"])
    fault.add_argument("--list", action="store_true", help="show the armed faults and what fired")
    fault.add_argument("--clear", action="store_true", help="disarm every fault and make the token valid again")


#: what to check when an action (by its method) answers False: it found nothing to change
UNMATCHED = {
    "assign_in_portal": "that device or user holds this asset's license already (check adam_id, pricing_param, serial_number or client_user_id)",
    "remove_in_portal": "nothing matched: no license of that asset is assigned to that device or user (check adam_id, pricing_param STDQ or PLUS, "
    "serial_number or client_user_id)",
    "retire_user": "nothing matched: no active user has that client_user_id (unknown, or retired already)",
    "accept_invite": "nothing matched: no user with that client_user_id waits for an invitation (unknown, associated or retired already)",
    "remove_asset": "nothing matched: no asset has that adam_id and pricing_param (STDQ or PLUS)",
}


def change(args: argparse.Namespace) -> int:
    """`mdm vpp simulator change ACTION NAME=VALUE ...`"""
    from mdm_core.output import say

    from .remote import ACTIONS, action_parameters, call, control_url, parse_params

    values = parse_params(args.params, [n for n, _ in action_parameters(args.action)], f"action {args.action}")
    answer = call(control_url(args.url, args.token_file), "POST", "change", {"action": args.action, **values})
    if answer.get("result") is False:  # the action found nothing to change: not a success
        from mdm_core.errors import MdmError

        raise MdmError(f"{args.action} changed nothing: {UNMATCHED[ACTIONS[args.action][0]]}")
    say(f"{args.action}: {json.dumps(answer.get('result'))}; versions {json.dumps(answer.get('versions'), sort_keys=True)}")
    return 0


def fault(args: argparse.Namespace) -> int:
    """`mdm vpp simulator fault KIND NAME=VALUE ... | --list | --clear`"""
    from mdm_core.output import say

    from .remote import FAULTS, call, control_url, parse_params

    root = control_url(args.url, args.token_file)
    if args.clear:
        call(root, "DELETE", "faults")
        say("faults cleared; the token is valid again")
        return 0
    if args.list or args.kind is None:
        answer = call(root, "GET", "faults")
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    values = parse_params(args.params, list(FAULTS[args.kind][0]), f"fault {args.kind}")
    body = {"kind": args.kind, "endpoint": args.endpoint, "count": args.count, "after": args.after, **values}
    answer = call(root, "POST", "faults", body)
    say(f"armed {json.dumps(answer.get('fault'), sort_keys=True)}")
    return 0


def _seed_value(raw: object) -> object:
    try:
        return int(str(raw))
    except ValueError:
        return raw


def _delays(raw: str) -> tuple[float, ...]:
    from mdm_core.errors import UsageError

    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= d <= 3600 for d in delays):
        raise UsageError(f"--notification-retry-delays {raw!r} is not valid: give seconds from 0 to 3600 separated by commas, e.g. 60,240")
    return delays


def serve(args: argparse.Namespace, *, ready: threading.Event | None = None, stop: threading.Event | None = None) -> int:
    """Start the simulator, write the token file, print the URL, serve until a signal."""
    from datetime import datetime, timedelta

    from .remote import url_file

    stop = stop or threading.Event()
    days = getattr(args, "token_expires_in", None)
    expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    sim = Simulator(
        seed=_seed_value(args.seed),
        assets=args.assets,
        devices=args.devices,
        users=args.users,
        assignments=args.assignments,
        page_size=args.page_size,
        async_delay=args.async_delay,
        host=args.host,
        port=args.port,
        token_expires_at=expires,
        notification_retry_delays=_delays(args.notification_retry_delays),
    )
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with sim:
            path = sim.write_token(args.token_file)
            url_file(path).write_text(sim.base_url + "\n", encoding="utf-8")
            print(
                f"Apple Apps and Books simulator at {sim.base_url} (token file: {path}, token expires "
                f"{sim.token_expiration_date}); change it with `mdm vpp simulator change|fault` (see `mdm vpp simulator actions`)",
                flush=True,
            )
            if ready is not None:
                ready.set()
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_serve_arguments(
        argparse.ArgumentParser(prog="python -m plugins.vpp.simulator", description="Serve a local Apple Apps and Books v2 simulator.")
    )
    return serve(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
