"""``mdm demo``: the whole flow against the local simulator, on a database of its own.

The demo keeps everything in ``var/demo/``: its database (``demo.sqlite3``), the simulator's
token and its own key file. The configured database (``[core] database_url``,
``MDM_DATABASE_URL``) is never opened. With ``--database-url`` it runs on the database given,
and there it adds only what is missing and replaces the ``demo`` account only if an earlier
demo made it (a loopback simulator's location): it never deletes what it did not create.

Every step runs a real ``mdm`` command in-process and prints it, so the output doubles as a
walkthrough. Running it twice works: the demo account is replaced, the rest kept (devices,
users, the apps published, their commands), which the second run says; it makes the same
changes each run (the same license removed).
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from mdm_core.errors import MdmError
from mdm_core.files import private_folder

if TYPE_CHECKING:
    from pathlib import Path

    from mdm_core.host import Host

ACCOUNT = "demo"


_current_step = ""


def _step(title: str) -> None:
    global _current_step
    _current_step = title
    print(f"\n== {title}", flush=True)


def _mdm(host: Host, command: str) -> int:
    """Run one ``mdm`` command in this process, printing it first."""
    from mdm_core.cli import parser_for

    print(f"$ mdm {command}", flush=True)
    try:
        args = parser_for(host).parse_args(shlex.split(command))
        code = int(args.func(host, args) or 0)
    except MdmError as exc:
        print(f"mdm: error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except SystemExit as exc:  # argparse refused the command
        code = int(exc.code or 0)
    sys.stdout.flush()
    return code


def _platforms_by_serial(snapshot: dict[str, Any]) -> dict[str, str]:
    """A platform for each seeded device from the apps it holds (macOS-only app → Mac)."""
    platforms = {key: asset.get("supportedPlatforms", []) for key, asset in _assets(snapshot).items()}
    chosen: dict[str, str] = {}
    for adam_id, pricing, kind, target in _assignments(snapshot):
        if kind == "serialNumber" and platforms.get((adam_id, pricing)) == ["macOS"]:
            chosen[target] = "macOS"
    return chosen


def _assets(snapshot: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    assets = snapshot["assets"]
    if isinstance(assets, dict):
        return assets
    return {(a["adamId"], a["pricingParam"]): a for a in assets}


def _assignments(snapshot: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [tuple(a) for a in snapshot["assignments"]]


DEMO_DIR = "demo"
DEMO_DATABASE = "demo.sqlite3"


def demo_host(host: Host, database_url: str | None) -> Host:
    """A host like ``host`` (same configuration and plugins) on the demo's database and key."""
    from mdm_core.host import Host
    from mdm_core.secrets import KEY_FILE_NAME, SecretBox

    folder = host.config.var_dir / DEMO_DIR
    private_folder(folder)  # it holds a key and a token, var/ too: its owner's only
    url = database_url or f"sqlite:///{folder / DEMO_DATABASE}"
    if database_url is None and url == host.config.database_url:
        raise MdmError(f"the configured database is the demo's own ({url}): point [core] database_url somewhere else")
    demo = Host(host.config, host.pm, host.plugins, database_url=url, database_source="the demo's own" if database_url is None else "given with --database-url")
    demo.__dict__["secrets"] = SecretBox.from_key_file(folder / KEY_FILE_NAME)  # the demo's key, not the host's
    return demo


def _is_demo_account(account: dict[str, Any]) -> bool:
    """An account an earlier demo added: its service is a simulator on loopback."""
    from urllib.parse import urlsplit

    host = urlsplit(str(account.get("service_url") or "")).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def run_demo(host: Host, *, seed: int = 7, database_url: str | None = None) -> int:
    """Run the demo on its own database (or ``database_url``); returns the exit code."""
    from mdm_core.output import is_quiet

    demo = demo_host(host, database_url)
    try:
        if not is_quiet():
            return _run(demo, seed, own_database=database_url is None)
        with contextlib.redirect_stdout(io.StringIO()):  # ``mdm -q demo``: errors only (stderr)
            code = _run(demo, seed, own_database=database_url is None)
        if code:
            print(f'mdm: error: the demo failed at "{_current_step}": run `mdm demo` without -q to see each command', file=sys.stderr, flush=True)
        return code
    finally:
        demo.close()


def _run(host: Host, seed: int, *, own_database: bool) -> int:
    from mdm_core import inventory
    from plugins.vpp.accounts import remove_account
    from plugins.vpp.simulator import Simulator

    started = time.monotonic()
    var = host.config.var_dir / DEMO_DIR
    token_file = var / "demo.vpptoken"
    has_apps = host.pm.has_plugin("mobile_apps")
    existing = next((a for a in host.pm.hook.mdm_vpp_accounts(host=host) or [] if a["name"] == ACCOUNT), None)
    if existing is not None and not _is_demo_account(existing):
        raise MdmError(
            f"database {host.db.describe()} has an account named '{ACCOUNT}' that the demo did not create "
            f"(service {existing['service_url']}): the demo never replaces it; run it on another --database-url"
        )

    _step("Starting the Apple Apps and Books simulator on loopback")
    with Simulator(seed=seed, assets=12, devices=24, users=16, page_size=97, async_delay=0.2) as sim:
        sim.write_token(token_file)
        snapshot = sim.snapshot()
        print(f"simulator at {sim.base_url}; token written to {token_file} (mode 0600)", flush=True)
        if own_database:
            print(f"database: {host.db.describe()} (the demo's own, in {var}; your configured database is not touched)", flush=True)
        else:
            print(f"database: {host.db.describe()} (given with --database-url)", flush=True)

        _step("Enrolling devices and MDM users (the MDM side)")
        macs = _platforms_by_serial(snapshot)
        serials = sim.state.device_serials()
        rows = []
        for i, serial in enumerate(serials):
            platform = macs.get(serial) or ("iPadOS" if i % 3 == 0 else "iOS")
            rows.append(inventory.DeviceRow(serial, platform, None, {"macOS": "MacBookAir10,1", "iPadOS": "iPad13,18"}.get(platform, "iPhone15,2"), None))
        users = [u for u in sim.state.user_records() if u.get("status") != "Retired"]
        known_users = {u["id"] for u in inventory.list_users(host)}
        known_devices = {d["serial_number"] for d in inventory.list_devices(host)}
        new_users = [inventory.UserRow(u["clientUserId"], u.get("email"), u.get("managedAppleId"), None) for u in users if u["clientUserId"] not in known_users]
        new_devices = [r for r in rows if r.serial_number not in known_devices]
        inventory.add_users(host, new_users)  # only what is missing: existing records are never changed
        inventory.add_devices(host, new_devices)
        print(
            f"{len(users)} MDM users ({len(new_users)} new), {len(rows)} devices ({len(new_devices)} new): "
            + ", ".join(f"{n} {p}" for p, n in sorted(Counter(r.platform for r in rows).items())),
            flush=True,
        )

        if existing is not None:
            print(_rerun_note(var if own_database else None, has_apps), flush=True)
            remove_account(host, ACCOUNT)

        _step("Adding the VPP account (decodes the token, reads and claims the location)")
        _mdm(host, f"vpp account add {ACCOUNT} --token-file {token_file} --service-url {sim.base_url} --interval 900")
        _mdm(host, "vpp account list")

        _step("Full sync: assets, users and licenses")
        if _mdm(host, f"vpp sync {ACCOUNT}") != 0:
            return 1
        _mdm(host, f"vpp assets --account {ACCOUNT}")

        asset = _asset_with_both(host)
        _step(f"User licenses and device licenses of asset {asset}")
        _mdm(host, f"vpp licenses --account {ACCOUNT} --asset {asset}")
        if has_apps:
            _step("The same assets published as installable mobile applications")
            _mdm(host, "apps refresh-metadata")
            _mdm(host, "apps list")

        _step("Meanwhile, in Apple School Manager: a new purchase, and a license removed")
        new_adam, _ = sim.purchase(count=25, product_type="App", device_assignable=True, revocable=True, supported_platforms=("iOS",))
        # the first in order: the same device every run (a set's order changed with the process)
        removed = min(a for a in _assignments(sim.snapshot()) if a[0] == asset and a[2] == "serialNumber")
        sim.remove_in_portal(removed[0], removed[1], serial_number=removed[3])
        print(f"purchased 25 licenses of new app {new_adam}; removed the license of {removed[0]} from device {removed[3]}", flush=True)

        _step("Incremental sync: only what changed")
        if _mdm(host, f"vpp sync {ACCOUNT}") != 0:
            return 1
        _mdm(host, f"vpp licenses --account {ACCOUNT} --device {removed[3]}")
        _mdm(host, f"vpp assets --account {ACCOUNT}")
        if has_apps:
            _mdm(host, "apps refresh-metadata")
            _mdm(host, "apps list --platform iOS")
            target = next((r for r in rows if r.platform in ("iOS", "iPadOS")), None)
            if target is not None:
                _step(f"Installing the new app on {target.serial_number} with a VPP license")
                _mdm(host, f"apps install {new_adam} --device {target.serial_number} --wait 30")
                _mdm(host, f"commands list --device {target.serial_number} --json")
        _mdm(host, f"vpp runs {ACCOUNT} --limit 2")
    print(
        f"\ndemo finished in {time.monotonic() - started:.1f}s; its data stays in {host.db.describe()}"
        + (f" (delete {var} to start afresh)" if own_database else ""),
        flush=True,
    )
    _console_hint(host, own_database)
    return 0


def _rerun_note(own_folder: Path | None, has_apps: bool) -> str:
    """What a second run says before it lists anything: it replaces the account and keeps the
    rest (the app the earlier run bought is listed retired until this run buys it again)."""
    kept = "devices, users, the apps it published and their commands: the app it bought is listed retired until this run buys it again"
    afresh = f"; delete {own_folder} to start afresh" if own_folder is not None else ""
    return f"replacing the '{ACCOUNT}' account left by an earlier run; the rest of what it left stays ({kept if has_apps else 'devices, users'}){afresh}"


def _console_hint(host: Host, own_database: bool) -> None:
    """How to look at the demo's data in the web console (no server is left running)."""
    import shlex
    import socket

    from mdm_core.secrets import KEY_FILE_NAME

    with socket.socket() as sock:  # a port free now (the server is not started here)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = f" --config {shlex.quote(str(host.config.path))}" if host.config.path else ""
    url = shlex.quote(str(host.db.url)) if own_database else "<the --database-url you gave>"
    key = shlex.quote(str(host.config.var_dir / DEMO_DIR / KEY_FILE_NAME))
    _step("Look at it in the web console")
    print(f'  export MDM_DATABASE_URL={url} MDM_SECRET_KEY="$(cat {key})"   # the demo\'s database and key', flush=True)
    print(f"  mdm{config} admins add demo-admin            # asks for a password (or --password-file FILE)", flush=True)
    print(f"  mdm{config} run --listen 127.0.0.1:{port}      # then open http://127.0.0.1:{port}/ and sign in as demo-admin; Ctrl-C stops it", flush=True)
    print("  (the simulator stopped with the demo: the console shows what was synced; Synchronize needs a real account)", flush=True)


def _asset_with_both(host: Host) -> str:
    """An asset that has both user and device licenses (else the most licensed one)."""
    licenses = (
        host.pm.hook.mdm_vpp_licenses(
            host=host, account=ACCOUNT, adam_id=None, serial_number=None, client_user_id=None, serial_numbers=None, client_user_ids=None
        )
        or []
    )
    kinds: dict[str, set[str]] = {}
    count: Counter[str] = Counter()
    for lic in licenses:
        kinds.setdefault(lic["adamId"], set()).add("device" if "serialNumber" in lic else "user")
        count[lic["adamId"]] += 1
    both = [a for a, k in kinds.items() if len(k) == 2]
    return max(sorted(both or count), key=lambda a: count[a])  # the first of equals: the same every run
