"""The typed façade mobile_apps uses to reach the VPP plugin: its results follow the VPP plugin's
published types, and without the VPP plugin every call fails with one clear error."""

from __future__ import annotations

import pytest

from mdm_core.inventory import add_device
from mdm_core.testing import MdmRunner, payload_problems
from plugins.mobile_apps.vpp_port import VppPort, VppUnavailable
from plugins.vpp.payloads import Account, AppMetadata, Asset, License, LicenseResult, MirroredUser

from .conftest import fixed_assets, free_serials


def test_results_follow_the_published_types(host, simulator):
    port = VppPort(host)
    assert port.available
    assets = port.assets("school")
    assert assets and all(not payload_problems("asset", a, Asset) for a in assets)
    licenses = port.licenses("school")
    assert {"serialNumber", "clientUserId"} <= {k for lic in licenses for k in lic}
    assert all(not payload_problems("license", lic, License) for lic in licenses)
    users = port.users("school")
    assert users and all(not payload_problems("user", u, MirroredUser) for u in users)
    assert port.user("school", users[0]["clientUserId"]) == users[0] and port.user("school", "nobody") is None
    a = fixed_assets(simulator)[0]
    asset = port.asset("school", a["adamId"], "STDQ")
    assert asset is not None and asset["totalCount"] == a["totalCount"]
    assert port.asset("school", a["adamId"], "NOPE") is None
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS")
    result = port.associate("school", a["adamId"], "STDQ", serial_numbers=[serial], wait=5)
    assert not payload_problems("associate", result, LicenseResult) and result["succeeded"]["serialNumbers"] == [serial]
    metadata = port.lookup_metadata("school", [a["adamId"]])
    assert not payload_problems("metadata", metadata[a["adamId"]], AppMetadata)
    [account] = host.pm.hook.mdm_vpp_accounts(host=host)
    assert not payload_problems("account", account, Account)


def test_without_the_vpp_plugin_every_call_is_one_clear_error(make_host, project_dir, monkeypatch, capsys):
    from plugins.mobile_apps import plugin

    host = make_host(plugins=[plugin], environ={"MDM_DISABLED_PLUGINS": "vpp"})
    port = VppPort(host)
    assert not port.available
    calls = [
        lambda: port.assets(None),
        lambda: port.licenses(),
        lambda: port.users(None),
        lambda: port.lookup_metadata("x", ["1"]),
        lambda: port.associate("x", "1", "STDQ", serial_numbers=["S"], wait=0),
        lambda: port.disassociate("x", "1", "STDQ", serial_numbers=["S"], wait=0),
    ]
    for call in calls:
        with pytest.raises(VppUnavailable, match=r"^the VPP plugin is not loaded \(see `mdm plugins`\): "):
            call()
    with pytest.raises(VppUnavailable, match="VPP apps cannot be installed"):
        port.require("VPP apps cannot be installed")
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DISABLED_PLUGINS": "vpp"})
    code, out, err = mdm("apps", "install", "1", "--device", "S1")
    assert code == 1 and err.strip() == "mdm: error: the VPP plugin is not loaded (see `mdm plugins`): VPP apps cannot be installed or reclaimed"


def test_the_statuses_of_a_vpp_user_holding_licenses_are_the_vpp_plugins():
    """Which VPP user statuses still hold licenses was written out three times (an install's
    let-go check, a removed user's revoke, the VPP plugin's users/update): one is now the VPP
    plugin's, reached through the port, so the three cannot disagree about a new status."""
    from plugins.mobile_apps import reclaims, vpp_port
    from plugins.mobile_apps.installs import released
    from plugins.vpp import operations, payloads

    assert vpp_port.LIVE_USER_STATUSES is payloads.LIVE_USER_STATUSES == ("Registered", "Associated")
    assert released.LIVE_USER_STATUSES is reclaims.LIVE_USER_STATUSES is operations.LIVE_USER_STATUSES is vpp_port.LIVE_USER_STATUSES
