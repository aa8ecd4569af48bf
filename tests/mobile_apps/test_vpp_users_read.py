"""The VPP users of a user or a batch are read by their ids: a removed MDM user's reclaim, and
`mdm apps install --user`, read every VPP user of the account (of every account, for a removal)
to find one, a list the size of a district at every removal of a bulk offboarding."""

from __future__ import annotations

from mdm_core.inventory import add_device, add_user
from plugins.mobile_apps.vpp_port import VppPort
from plugins.vpp import views

from .conftest import app_id, fixed_assets, free_serials, holders, read_sizes


def test_the_users_hook_reads_the_users_asked_for(on_both, monkeypatch):
    host, _ = on_both
    everyone = VppPort(host).users("school")
    assert len(everyone) > 4
    wanted = [everyone[3]["clientUserId"], everyone[1]["clientUserId"], "nobody-such"]
    expected = [u for u in everyone if u["clientUserId"] in wanted]  # in the listing's order
    assert VppPort(host).users("school", wanted) == expected
    assert VppPort(host).users(None, wanted) == expected
    monkeypatch.setattr(views, "USERS_CHUNK", 2)  # several statements: the same users, in the same order
    more = {*wanted, everyone[0]["clientUserId"]}
    assert VppPort(host).users("school", more) == [u for u in everyone if u["clientUserId"] in more]
    assert VppPort(host).user("school", "nobody-such") is None and VppPort(host).user("school", wanted[0]) == everyone[3]


def test_a_user_install_and_a_user_removal_read_that_users_vpp_users_only(on_both, simulator, monkeypatch):
    host, mdm = on_both
    assert len(VppPort(host).users("school")) > 4
    a = fixed_assets(simulator)[0]
    user = next(u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"]))
    add_user(host, user)
    add_device(host, free_serials(simulator, a["adamId"])[0], "iPadOS", owner=user)
    sizes = read_sizes(monkeypatch, "users")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", user)
    assert code == 0 and f"{user}: licensed: user license associated" in out, out + err
    code, out, err = mdm("users", "remove", user)
    assert code == 0 and out.startswith(f"removed user {user}: VPP licenses: "), out + err
    assert simulator.state.user(user)["status"] == "Retired"
    assert sizes and max(sizes) == 1, sizes  # the user's own VPP user, in each read
