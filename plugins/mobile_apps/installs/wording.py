"""What an install tells its user, in two wordings of the same facts: the command line's
(``mdm apps install``, and the REST API, whose JSON is the CLI's ``--json``) names commands
and flags; the console's names what to pick or click instead, with a link to it.

:mod:`.request` decides what happened (one source of the facts); only these words differ.
"""

from __future__ import annotations

from typing import NamedTuple

from mdm_core.errors import MdmError

INSTALL_STATUS = "/apps/installs"


class Said(NamedTuple):
    """One line of an outcome: ``cli`` for the terminal and the API, ``console`` for the web
    console (the same words when empty), ``next`` a link (text, path) to what the admin can
    do or see next in the console."""

    cli: str
    console: str = ""
    next: tuple[str, str] | None = None

    def for_console(self) -> str:
        """The console's words."""
        return self.console or self.cli


class Refused(MdmError):
    """An install refused as a whole, in both wordings (``str()`` is the command line's)."""

    def __init__(self, said: Said):
        super().__init__(said.cli)
        self.said = said


def not_enrolled() -> Said:
    return Said("not enrolled (see `mdm devices list`)", "not enrolled in this MDM: check the serial number against Devices", ("Devices", "/devices"))


def users_only(label: str) -> Said:
    return Said(
        f"{label} is not device-assignable (Apple licenses it to users only): use --user",
        f"{label} is not device-assignable (Apple licenses it to users only): choose a user in the install form instead",
    )


def not_enough_licenses(available: int, account: str, needed: int | None = None) -> Said:
    facts = f"not enough licenses: {available} available in account '{account}'" + (f", {needed} needed" if needed is not None else "")
    return Said(
        f"{facts} (buy more, or reclaim with `mdm apps reclaim`)",
        f"{facts}: buy more in Apple Business Manager or Apple School Manager, or take licenses back with Reclaim licenses on the app's page",
    )


def not_an_mdm_user(user: str) -> Said:
    return Said(
        f"not an MDM user: add it with `mdm users add {user}`",
        "not an MDM user of this host: Users lists those who are (an administrator of the host adds users)",
        ("Users", "/users"),
    )


def no_vpp_user(account: str, user: str) -> Said:
    return Said(
        f"no VPP user in account '{account}': register it with `mdm vpp users register {user}`",
        f"not registered as a VPP user in account '{account}', so Apple cannot license it to them: "
        "an administrator of the host registers it, then install again",
    )


def invited(url: str) -> Said:
    facts = f"waiting for the user to accept the invitation{url}: licensed and installed on the user's devices as soon as they do"
    return Said(f"{facts} (see `mdm apps installs --status invited`)", facts, ("Invited installs", f"{INSTALL_STATUS}?status=invited"))


def no_device_of_user() -> Said:
    facts = "no enrolled device owned by this user: the license is ready"
    return Said(f"{facts}; run the install again once a device is enrolled", f"{facts}; install again from this page once a device is enrolled")


def not_licensed(reason: str, *, asked_again: bool) -> Said:
    if not asked_again:
        return Said(f"not licensed: {reason}")
    return Said(
        f"not licensed: {reason}; the mobile_apps.installs job asks Apple again",
        f"not licensed yet: {reason}; this host asks Apple again by itself: Install status shows when it is licensed",
        ("Install status", INSTALL_STATUS),
    )


def unconfirmed(wait: float, event_ids: list[str]) -> Said:
    facts = f"Apple has not confirmed the license after {wait:g}s (event {', '.join(event_ids)}): InstallApplication will be queued when it does"
    return Said(f"{facts} (see `mdm apps installs`)", facts, ("Pending installs", f"{INSTALL_STATUS}?status=pending"))


def gone_from_account(label: str, account: str) -> Said:
    facts = f"{label} is no longer in VPP account '{account}'"
    return Said(f"{facts}: run `mdm vpp sync {account}`", f"{facts}: synchronize the account (Apple Volume Purchase Program › Synchronize), then try again")


def book_for_devices(label: str) -> Said:
    facts = f"{label} is a book: Apple licenses books to users only"
    return Said(
        f"{facts}, give --user MDM_USER (InstallMedia then goes to each of the user's enrolled devices)",
        f"{facts}: choose a user in the install form (InstallMedia then goes to each of the user's enrolled devices)",
    )
