"""What an install tells its user, in the command line's words (``mdm apps install``, its
``--json``): they name commands and flags.

The console and the API (its errors and its results' messages) say the same facts in their
own words through the web registry's rewordings (``mdm_core.web.wording``): :data:`WORDING`,
added by the plugin's ``web.register``; a line's ``next`` links the console to what to see or do next.
:mod:`.request` decides what happened (one source of the facts); only these words differ.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mdm_core.errors import MdmError

INSTALL_STATUS = "/apps/installs"
#: what settles the installs an interrupted request left ``associating`` (holding their licenses) now
SETTLE = "mdm jobs run mobile_apps.installs"
SETTLES = "asks Apple again now for those an interrupted request left"
API_INSTALLS = "GET /api/v1/apps/installs"
#: why a user's install ends ``licensed``: nothing to install on
NO_DEVICE = "licensed, but no enrolled device of the user to install on"
#: a device license Apple granted to a device removed from this MDM meanwhile (:func:`.removal.give_back`),
#: once Apple confirmed it took the license back
REMOVED_WHILE_LICENSED = "the device was removed from this MDM while Apple licensed it: its license is given back"
#: the same while Apple has not confirmed it took the license back (or could not be reached)
REMOVED_ASKED_BACK = (
    "the device was removed from this MDM while Apple licensed it: Apple was asked to take its license back (not confirmed yet: the reclaim job asks again)"
)
#: why a device's install ends ``licensed``: no command could be queued on it
DEVICE_GONE = "licensed, but nothing was queued: the device is not enrolled any more, or runs none of the app's platforms"
CHOOSE_USER = "choose a user in the install form"
BUY_MORE = "buy more in Apple Business Manager or Apple School Manager, or take licenses back with"
ASKS_AGAIN = r"not licensed yet: \1; this host asks Apple again by itself:"
#: An adamId or an account name in the command line's advice (``\1`` of a rewording): letters,
#: digits, '.', '_' and '-' (an account's name is no more: ``NAME_RE``), so an API path names it
#: as it is, with nothing to URL-quote.
KEY = r"([A-Za-z0-9._-]+)"
#: The two below as recorded before they named the app and the account (an install's ``error``)
OLD_BUY_OR_RECLAIM = " (buy more, or reclaim with `mdm apps reclaim`)"
OLD_STALE_COUNTS = "; `mdm vpp assets` shows the counts as of the last sync: `mdm vpp sync` refreshes them"
RECLAIM_ON_PAGE = "Reclaim licenses on the app's page"
#: the body of the API's reclaim of unused licenses, ``mdm apps reclaim APP --unused`` (it answers
#: what it would reclaim, to be confirmed with ``"yes": true``)
UNUSED_BODY = '{"unused": true}'
STALE_ON_PAGE = "; the app's counts are as of the last synchronization: synchronize the VPP account to refresh them"
#: ``STALE_ON_PAGE`` naming the account (``\1``) and where the console synchronizes it
STALE_ON_PAGE_NAMED = (
    r"; the app's counts are as of the last synchronization: synchronize the VPP account '\1' (Apple Volume Purchase Program › Synchronize) to refresh them"
)
REGISTERS_AGAIN = r"\1: an administrator of the host registers it again"
REGISTERS = r"not registered as a VPP user in account '\1', so Apple cannot license it to them: an administrator of the host registers it, then install again"

#: The command line's advice in these lines (regular expressions) as the console and the API
#: say it: (cli, console, api), for ``web.add_wording``.
WORDING = [
    (
        r"not enrolled \(see `mdm devices list`\)",
        "not enrolled in this MDM: check the serial number against Devices",
        "not enrolled in this MDM: check the serial number against GET /api/v1/devices",
    ),
    (
        r"\(Apple licenses it to users only\): use --user",
        f"(Apple licenses it to users only): {CHOOSE_USER} instead",
        '(Apple licenses it to users only): give "users" instead',
    ),
    (  # `--unused` since it must name what to reclaim; without it as recorded before
        rf" \(buy more, or reclaim (?:unused ones )?with `mdm apps reclaim {KEY}(?: --unused)?`\)",
        f": {BUY_MORE} {RECLAIM_ON_PAGE}",
        rf": {BUY_MORE} POST /api/v1/apps/\1/reclaim {UNUSED_BODY}",
    ),
    (
        re.escape(OLD_BUY_OR_RECLAIM),
        f": {BUY_MORE} {RECLAIM_ON_PAGE}",
        f": {BUY_MORE} POST /api/v1/apps/ADAM_ID/reclaim (ADAM_ID: the install's adam_id)",
    ),
    (
        r"not an MDM user \(see `mdm users list`\)",
        "not an MDM user of this host: check the user against Users",
        "not an MDM user of this host: check the user against GET /api/v1/users",
    ),
    (
        r"not an MDM user: add it with `mdm users add [^`]*`",
        "not an MDM user of this host: Users lists those who are (an administrator of the host adds users)",
        "not an MDM user of this host: GET /api/v1/users lists those who are (an administrator of the host adds users)",
    ),
    (
        rf"; `mdm vpp assets --account {KEY}` shows the counts as of the last sync: `mdm vpp sync \1` refreshes them",
        STALE_ON_PAGE_NAMED,
        r"; GET /api/v1/vpp/assets?account=\1 shows the counts as of the last sync: POST /api/v1/vpp/accounts/\1/sync refreshes them",
    ),
    (
        re.escape(OLD_STALE_COUNTS),
        STALE_ON_PAGE,
        "; GET /api/v1/vpp/assets?account=ACCOUNT shows the counts as of the last sync: POST /api/v1/vpp/accounts/ACCOUNT/sync refreshes them"
        " (ACCOUNT: the install's account)",
    ),
    (r"no VPP user in account '([^']*)': register it with `mdm vpp users register [^`]*`", REGISTERS, REGISTERS),
    (r"(is retired at Apple \([^)]*\)): register it again with `mdm vpp users register [^`]*`", REGISTERS_AGAIN, REGISTERS_AGAIN),
    (r" \(see `mdm apps installs --status invited`\)", "", f" (see {API_INSTALLS}?status=invited)"),
    (
        rf"( more being licensed by other installs): see `mdm apps installs`; `({re.escape(SETTLE)})` ({re.escape(SETTLES)})\)",
        r"\1: see Install status; on the host, \2 \3)",
        rf"\1: see {API_INSTALLS}; on the host, \2 \3)",
    ),
    (
        r"for this device, choose an app `mdm apps list --platform (\S+)` lists",
        r"for this device, choose an app Mobile Applications lists for \1",
        r"for this device, choose an app GET /api/v1/apps?platform=\1 lists",
    ),
    (
        r"; run the install again once a device is enrolled",
        "; install again from this page once a device is enrolled",
        "; install again once a device is enrolled",
    ),
    (
        r"not licensed: (.*?); the mobile_apps\.installs job asks Apple again",
        f"{ASKS_AGAIN} Install status shows when it is licensed",
        f"{ASKS_AGAIN} {API_INSTALLS} shows when it is licensed",
    ),
    (r"(InstallApplication will be queued when it does) \(see `mdm apps installs`\)", r"\1", rf"\1 (see {API_INSTALLS}?status=pending)"),
    (
        r"(is no longer in VPP account '([^']*)'): run `mdm vpp sync [^`]*`",
        r"\1: synchronize the account (Apple Volume Purchase Program › Synchronize), then try again",
        r"\1: synchronize the account (POST /api/v1/vpp/accounts/\2/sync), then try again",
    ),
    (r"(Apple licenses books to users only), give --user MDM_USER", rf"\1: {CHOOSE_USER}", r'\1: give "users" instead of "devices"'),
    (
        r"\(see `mdm apps list`; run `mdm vpp sync` after a purchase\)",
        "(see Mobile Applications; after a purchase, synchronize the VPP account)",
        "(see GET /api/v1/apps; after a purchase, synchronize its VPP account: POST /api/v1/vpp/accounts/NAME/sync, NAME one of GET /api/v1/vpp/accounts)",
    ),
]


class Said(NamedTuple):
    """One line of an outcome: ``cli``, its words (the console's and the API's through
    :data:`WORDING`), ``next`` a link (text, path) to what the admin can do or see next in
    the console."""

    cli: str
    next: tuple[str, str] | None = None


class Refused(MdmError):
    """An install refused as a whole (``str()`` is the command line's words)."""

    def __init__(self, said: Said):
        super().__init__(said.cli)
        self.said = said


def not_enrolled() -> Said:
    return Said("not enrolled (see `mdm devices list`)", ("Devices", "/devices"))


def platform_mismatch(runs: str, platform: str, label: str, platforms: list[str]) -> Said:
    """A device that runs ``runs`` (``platform`` in the catalog: iPadOS runs iOS apps), an app
    for ``platforms``: the fix is another device, or another app for this one."""
    devices = " or ".join(f"{p} or iPadOS" if p == "iOS" else p for p in platforms)
    facts = f"platform mismatch: the device runs {runs}, {label} supports {', '.join(platforms)}"
    advice = f"install it on a device that runs {devices}; for this device, choose an app `mdm apps list --platform {platform}` lists"
    return Said(f"{facts}: {advice}", ("Mobile Applications", f"/apps?platform={platform}"))


def removed_while_licensed() -> Said:
    """A user's device removed from this MDM while Apple licensed the user: nothing queued on it."""
    return Said("not enrolled any more: the device was removed from this MDM while Apple licensed the user; nothing was queued for it")


def users_only(label: str) -> Said:
    return Said(f"{label} is not device-assignable (Apple licenses it to users only): use --user")


def buy_or_reclaim(adam_id: str) -> str:
    """The advice when the licenses of ``adam_id`` run out, whether this host refused (its
    counts) or Apple did (9709): a command that runs as written (``mdm apps reclaim`` needs to
    be told which licenses: ``--unused``, those of devices and users removed from this MDM)."""
    return f" (buy more, or reclaim unused ones with `mdm apps reclaim {adam_id} --unused`)"


def stale_counts(account: str) -> str:
    """Why Apple refused for want of licenses the mirror of ``account`` counted as available:
    its counts are as of the last sync."""
    return f"; `mdm vpp assets --account {account}` shows the counts as of the last sync: `mdm vpp sync {account}` refreshes them"


def not_enough_licenses(available: int, account: str, adam_id: str, needed: int | None = None, *, taken: int = 0) -> Said:
    """This host's refusal for want of licenses; ``taken``: licenses other installs are asking
    Apple for at this moment, counted as gone (``mdm apps installs`` lists them; those of a
    request that died asking hold theirs until the installs job asks again: :data:`SETTLE`)."""
    busy = f" ({taken} more being licensed by other installs: see `mdm apps installs`; `{SETTLE}` {SETTLES})" if taken else ""
    facts = f"not enough licenses: {available} available in account '{account}'{busy}" + (f", {needed} needed" if needed is not None else "")
    return Said(facts + buy_or_reclaim(adam_id), (("Installs", INSTALL_STATUS) if taken else None))


def not_an_mdm_user(user: str) -> Said:
    return Said(f"not an MDM user: add it with `mdm users add {user}`", ("Users", "/users"))


def no_vpp_user(account: str, user: str) -> Said:
    return Said(f"no VPP user in account '{account}': register it with `mdm vpp users register {user} --account {account}`")


def retired_vpp_user(account: str, user: str) -> Said:
    """``user``'s VPP user is Retired (or the legacy Deleted) in Apple's service: registering it
    again makes a new one (invited again unless it has a Managed Apple ID)."""
    facts = (
        f"its VPP user in account '{account}' is retired at Apple (retired in Apple School Manager or Apple Business Manager, "
        "or by this host when the MDM user was removed)"
    )
    return Said(f"{facts}: register it again with `mdm vpp users register {user} --account {account}`, then install again")


def invited(url: str) -> Said:
    facts = f"waiting for the user to accept the invitation{url}: licensed and installed on the user's devices as soon as they do"
    return Said(f"{facts} (see `mdm apps installs --status invited`)", ("Invited installs", f"{INSTALL_STATUS}?status=invited"))


def no_device_of_user(platforms: list[str] | None = None) -> Said:
    """A user licensed with no enrolled device to install on: none at all, or (``platforms``,
    those the app supports) none that runs one of them."""
    facts = f"no enrolled device of this user runs {' or '.join(platforms)}" if platforms else "no enrolled device owned by this user"
    return Said(f"{facts}: the license is ready; run the install again once a device is enrolled")


def not_licensed(reason: str, *, asked_again: bool) -> Said:
    if not asked_again:
        return Said(f"not licensed: {reason}")
    return Said(f"not licensed: {reason}; the mobile_apps.installs job asks Apple again", ("Install status", INSTALL_STATUS))


def unconfirmed(wait: float, event_ids: list[str]) -> Said:
    facts = f"Apple has not confirmed the license after {wait:g}s (event {', '.join(event_ids)}): InstallApplication will be queued when it does"
    return Said(f"{facts} (see `mdm apps installs`)", ("Pending installs", f"{INSTALL_STATUS}?status=pending"))


def gone_from_account(label: str, account: str) -> Said:
    facts = f"{label} is no longer in VPP account '{account}'"
    return Said(f"{facts}: run `mdm vpp sync {account}`")


def book_for_devices(label: str) -> Said:
    facts = f"{label} is a book: Apple licenses books to users only"
    return Said(f"{facts}, give --user MDM_USER (InstallMedia then goes to each of the user's enrolled devices)")


#: a user license Apple granted and let go before the install was written: nothing queued
LET_GO = "not installed, nothing was queued: Apple released the user license right after granting it"


def license_let_go(account: str, user: str, why: str) -> Said:
    """Why a user's install queued nothing though Apple had granted its license (``why``:
    ``removed`` from this MDM, VPP user ``retired`` at Apple, license ``reclaimed``), and what to do."""
    if why == "removed":
        return Said("not installed, nothing was queued: the user was removed from this MDM while Apple licensed it (the removal takes its licenses back)")
    if why == "retired":
        return Said(f"{LET_GO}: {retired_vpp_user(account, user).cli}")
    where = "reclaimed here, or in Apple School Manager or Apple Business Manager"
    return Said(f"{LET_GO} (taken back at Apple meanwhile: {where}): install again to license the user")
