"""Mobile Applications in the console and /api/v1/apps: published apps, installing on
devices or for users from the form or the API, install status."""

from __future__ import annotations

import html
import re
from typing import Any

from mdm_core import inventory
from mdm_core.host import Host

from .conftest import csrf, token_for


def _ios_app(host: Host, simulator: Any) -> tuple[str, dict[str, Any]]:
    from plugins.mobile_apps.catalog import list_apps

    asset = list(simulator.state.assets.values())[0].to_json()  # an iOS app, device-assignable
    [app] = [a for a in list_apps(host) if a["adamId"] == asset["adamId"] and a["pricingParam"] == asset["pricingParam"] and a["platform"] == "iOS"]
    return str(app["id"]), asset


def test_apps_page_lists_published_apps(school: Host, admin: Any, simulator: Any) -> None:
    page = admin.get("/apps").text
    assert page.count('class="app-link"') >= 5
    app_id, asset = _ios_app(school, simulator)
    assert f'href="/apps/{app_id}"' in page


def test_install_on_a_device_from_the_form(school: Host, admin: Any, simulator: Any) -> None:
    inventory.add_device(school, "WEBDEV000001", "iOS", model="iPhone15,2")
    app_id, asset = _ios_app(school, simulator)
    form = admin.get(f"/apps/{app_id}").text
    assert 'id="install-form"' in form and "WEBDEV000001" in form
    result = admin.post(f"/apps/{app_id}/install", data={"devices": ["WEBDEV000001"], "csrftoken": csrf(admin)})
    assert result.status_code == 200, result.text
    assert re.search(r"<td>WEBDEV000001</td><td class=\"status-queued\">queued</td>", result.text)
    assert "WEBDEV000001" in {t[3] for t in simulator.snapshot()["assignments"] if t[0] == asset["adamId"]}
    [command] = [c for c in inventory.list_commands(school, "WEBDEV000001")]
    assert command["request_type"] == "InstallApplication"
    assert re.search(
        r'<td>device</td><td>WEBDEV000001</td><td>request</td><td class="status-queued">queued</td>', admin.get("/apps/installs").text.replace("\n", "")
    )


def test_refused_targets_are_reported_per_line(school: Host, admin: Any, simulator: Any) -> None:
    app_id, _ = _ios_app(school, simulator)
    result = admin.post(f"/apps/{app_id}/install", data={"serials": "NOTENROLLED1", "csrftoken": csrf(admin)})
    assert result.status_code == 409 and "NOTENROLLED1" in result.text and "refused" in result.text
    assert admin.post(f"/apps/{app_id}/install", data={"csrftoken": csrf(admin)}).status_code == 422
    assert admin.get("/apps/999999").status_code == 404


def test_install_through_the_api(school: Host, client: Any, simulator: Any) -> None:
    inventory.add_device(school, "WEBDEV000002", "iPadOS", model="iPad13,18")
    _, asset = _ios_app(school, simulator)
    admin = token_for(school, "admin")
    viewer = {"Authorization": token_for(school, "viewer")["Authorization"]}
    assert client.post(f"/api/v1/apps/{asset['adamId']}/install", headers=viewer, json={"devices": ["WEBDEV000002"]}).status_code == 403
    apps = client.get("/api/v1/apps?platform=iOS", headers=viewer).json()["items"]
    assert apps and {"id", "adamId", "pricingParam", "platform", "name", "availableCount", "totalCount", "state"} <= set(apps[0])
    response = client.post(f"/api/v1/apps/{asset['adamId']}/install", headers=admin, json={"devices": ["WEBDEV000002"], "users": []})
    if response.status_code == 422:  # the adamId has several pricing params: name the application instead
        app_id, _ = _ios_app(school, simulator)
        response = client.post(f"/api/v1/apps/{app_id}/install", headers=admin, json={"devices": ["WEBDEV000002"]})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "queued"
    assert client.post("/api/v1/apps/1/install", headers=admin, content=b"not json").status_code == 400
    assert client.post("/api/v1/apps/1/install", headers=admin, json={"devices": "X"}).status_code == 422
    assert client.post("/api/v1/apps/0000/install", headers=admin, json={"devices": ["WEBDEV000002"]}).status_code == 404
    installs = client.get("/api/v1/apps/installs", headers=viewer).json()["items"]
    assert any(i["target"] == "WEBDEV000002" and i["status"] == "queued" for i in installs)


def test_installing_without_the_vpp_plugin_is_refused_saying_so(make_host: Any, simulator: Any) -> None:
    """The console keeps serving the apps already published when the VPP plugin is disabled,
    and an install says why it cannot be done (409), changing nothing."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG

    host = make_host(config=WEB_CONFIG, environ={"MDM_DISABLED_PLUGINS": "vpp"})
    inventory.add_device(host, "WEBDEV000003", "iOS")
    with TestClient(create_app(host)) as client:
        admin = token_for(host, "admin")
        response = client.post("/api/v1/apps/1/install", headers=admin, json={"devices": ["WEBDEV000003"]})
        assert response.status_code == 409
        assert response.json() == {
            "error": "the VPP plugin is not loaded (it is disabled or failed to load on this host: the host's operator enables it in the configuration): "
            "apps cannot be installed with a VPP license"
        }  # not the command line's `mdm plugins`
        assert client.get("/api/v1/apps", headers=admin).json()["items"] == []
        assert not any(r.path.startswith("/api/v1/vpp") for r in client.app.state.route_table)  # type: ignore[attr-defined]  # TestClient types its app as a bare ASGI callable
    assert inventory.list_commands(host, "WEBDEV000003") == []


def _app_with_holders(host: Host, simulator: Any, *, revocable: bool, kind: str) -> tuple[str, tuple[str, str], list[str]]:
    """An application (id) of an adamId with one pricing, its asset key and the targets
    (serial numbers or clientUserIds) holding its licenses."""
    from plugins.mobile_apps.catalog import list_apps

    snap = simulator.snapshot()
    pricings = [k[0] for k in simulator.state.assets]
    for key, asset in sorted(simulator.state.assets.items()):
        holders = sorted(a[3] for a in snap["assignments"] if (a[0], a[1]) == key and a[2] == kind)
        if asset.product_type == "App" and asset.revocable == revocable and pricings.count(key[0]) == 1 and holders:
            app = next(a for a in list_apps(host) if (a["adamId"], a["pricingParam"]) == key)
            return str(app["id"]), key, holders
    raise AssertionError("the simulator's seed has no such asset")


def _held(simulator: Any, key: tuple[str, str], target: str) -> bool:
    return any((a[0], a[1]) == key and a[3] == target for a in simulator.snapshot()["assignments"])


def test_reclaim_a_device_license_from_the_form(school: Host, admin: Any, viewer: Any, simulator: Any) -> None:
    app_id, key, holders = _app_with_holders(school, simulator, revocable=True, kind="serialNumber")
    page = admin.get(f"/apps/{app_id}").text
    assert 'id="reclaim-form"' in page
    assert 'id="reclaim-form"' not in viewer.get(f"/apps/{app_id}").text
    assert viewer.post(f"/apps/{app_id}/reclaim", data={"serials": holders[0], "csrftoken": csrf(viewer)}).status_code == 403
    assert _held(simulator, key, holders[0])  # the viewer changed nothing
    # without ticking the confirmation nothing is taken back (the form asked nothing)
    unconfirmed = admin.post(f"/apps/{app_id}/reclaim", data={"serials": holders[0], "csrftoken": csrf(admin)})
    assert unconfirmed.status_code == 422 and "to confirm: the app is removed from the devices that hold them" in unconfirmed.text
    assert _held(simulator, key, holders[0])
    assert 'id="reclaim-confirm"' in page and re.search(r'<input type="checkbox" name="confirm" value="yes" required id="reclaim-confirm">', page)
    result = admin.post(f"/apps/{app_id}/reclaim", data={"serials": f"{holders[0]}\nNOLICENSE001", "confirm": "yes", "csrftoken": csrf(admin)})
    assert result.status_code == 200, result.text
    text = result.text.replace("\n", "")
    assert re.search(rf'<td>{holders[0]}</td><td class="status-done">done</td><td>license reclaimed</td>', text)
    # not enrolled here either: said so, in the console's words
    assert re.search(r'<td>NOLICENSE001</td><td class="status-unknown">unknown</td><td>not enrolled in this MDM: check the serial number against Devices', text)
    assert not _held(simulator, key, holders[0])  # back in the pool at Apple
    assert admin.post(f"/apps/{app_id}/reclaim", data={"csrftoken": csrf(admin)}).status_code == 422


def test_an_irrevocable_license_is_reported_not_reclaimed(school: Host, admin: Any, simulator: Any) -> None:
    app_id, key, holders = _app_with_holders(school, simulator, revocable=False, kind="serialNumber")
    assert 'id="reclaim-irrevocable"' in admin.get(f"/apps/{app_id}").text
    result = admin.post(f"/apps/{app_id}/reclaim", data={"serials": holders[0], "confirm": "yes", "csrftoken": csrf(admin)})
    assert result.status_code == 409 and "not reclaimed: the asset is irrevocable" in result.text
    assert _held(simulator, key, holders[0])


def test_reclaim_through_the_api(school: Host, client: Any, simulator: Any) -> None:
    app_id, key, holders = _app_with_holders(school, simulator, revocable=True, kind="clientUserId")
    admin, viewer = token_for(school, "admin"), {"Authorization": token_for(school, "viewer")["Authorization"]}
    assert client.post(f"/api/v1/apps/{app_id}/reclaim", headers=viewer, json={"users": [holders[0]]}).status_code == 403
    response = client.post(f"/api/v1/apps/{key[0]}/reclaim", headers=admin, json={"users": [holders[0]]})  # by adamId, as the CLI
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "results": [{"target": holders[0], "adamId": key[0], "pricingParam": key[1], "status": "done", "message": "license reclaimed"}],
    }
    assert not _held(simulator, key, holders[0])
    assert client.post(f"/api/v1/apps/{app_id}/reclaim", headers=admin, content=b"not json").status_code == 400
    assert client.post(f"/api/v1/apps/{app_id}/reclaim", headers=admin, json={"devices": "X"}).status_code == 422
    assert client.post(f"/api/v1/apps/{app_id}/reclaim", headers=admin, json={}).json()["error"].startswith("no target")
    missing = client.post("/api/v1/apps/0000/reclaim", headers=admin, json={"devices": ["X"]})
    assert missing.status_code == 404 and missing.json()["error"].startswith("no application '0000'")


def test_an_empty_serial_or_user_reclaims_nothing(school: Host, client: Any, simulator: Any) -> None:
    """``{"devices": [""]}`` selected no holder, that is every license of the app: all of them,
    device and user licenses, went back to Apple's pool."""
    app_id, key, holders = _app_with_holders(school, simulator, revocable=True, kind="serialNumber")
    admin = token_for(school, "admin")
    before = sorted(simulator.snapshot()["assignments"])
    for body in ({"devices": [""]}, {"devices": ["  "]}, {"users": [""]}, {"devices": [holders[0], ""]}):
        response = client.post(f"/api/v1/apps/{app_id}/reclaim", headers=admin, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"].startswith("the "), response.json()
        assert "is empty: give the one whose license to reclaim" in response.json()["error"]
    assert sorted(simulator.snapshot()["assignments"]) == before  # not one license taken back, not even holders[0]'s


def test_install_for_a_user_from_the_form(school: Host, admin: Any, simulator: Any) -> None:
    """A user license from the form: the MDM user's VPP user gets the license at Apple and the
    user's enrolled device its InstallApplication; the app page's install status shows it."""
    app_id, asset = _ios_app(school, simulator)
    key = (asset["adamId"], asset["pricingParam"])
    holders = {a[3] for a in simulator.snapshot()["assignments"] if (a[0], a[1]) == key}
    user = next(u["clientUserId"] for u in simulator.state.user_records() if u["status"] == "Associated" and u["clientUserId"] not in holders)
    inventory.add_user(school, user, email=f"{user}@example.org")
    inventory.add_device(school, "WEBUSER00001", "iOS", owner=user)
    assert f'<option value="{user}">' in admin.get(f"/apps/{app_id}").text
    result = admin.post(f"/apps/{app_id}/install", data={"user": user, "csrftoken": csrf(admin)})
    assert result.status_code == 200, result.text
    text = result.text.replace("\n", "")
    assert re.search(rf'<td>{user}</td><td class="status-licensed">licensed</td><td>user license associated</td>', text)
    [command] = inventory.list_commands(school, "WEBUSER00001")
    assert command["request_type"] == "InstallApplication"
    assert re.search(
        rf'<td>WEBUSER00001</td><td class="status-queued">queued</td><td>InstallApplication queued \(command {command["uuid"]}, user license of {user}\)</td>',
        text,
    )
    assert _held(simulator, key, user)  # the license is the user's at Apple
    status = admin.get(f"/apps/{app_id}").text
    assert re.search(rf'<td>user</td><td>{user}</td><td class="status-queued">queued</td><td>{command["uuid"]}</td>', status)


def test_an_unknown_install_status_or_app_state_is_refused_not_an_empty_list(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """``?status=faild`` matched nothing and answered an empty list ('No install yet.'), as if
    there were no such installs; the CLI refuses it (--status choices)."""
    inventory.add_device(school, "WEBDEV000009", "iOS")
    app_id, _ = _ios_app(school, simulator)
    assert admin.post(f"/apps/{app_id}/install", data={"devices": ["WEBDEV000009"], "csrftoken": csrf(admin)}).status_code == 200
    viewer = token_for(school, "viewer")
    api = client.get("/api/v1/apps/installs", params={"status": "faild"}, headers=viewer)
    assert api.status_code == 422 and api.json()["error"].startswith("unknown install status 'faild': use one of associating, invited, pending, queued")
    page = admin.get("/apps/installs", params={"status": "faild"})
    assert page.status_code == 422 and "unknown install status" in page.text
    state = client.get("/api/v1/apps", params={"state": "retierd"}, headers=viewer)
    assert state.status_code == 422 and state.json() == {"error": "unknown state 'retierd': use one of published, retired"}
    # a known status that matches nothing says so, not "No install yet."
    failed = admin.get("/apps/installs", params={"status": "failed"})
    assert failed.status_code == 200 and "No install with status failed." in failed.text
    assert [i["status"] for i in client.get("/api/v1/apps/installs", params={"status": "queued"}, headers=viewer).json()["items"]] == ["queued"]


def test_an_id_beyond_the_database_integers_is_refused_not_a_500(school: Host, admin: Any, client: Any) -> None:
    """A run, failure or application id past 2**63 (or 2**31 on PostgreSQL), or '²' (a digit to
    str.isdigit, not to int()), reached the database or int() and answered 500."""
    headers = token_for(school, "admin")
    huge = "9" * 23
    for method, path in (("get", f"/api/v1/vpp/runs/{huge}"), ("post", f"/api/v1/events/failures/{huge}/redeliver")):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 422 and "less than or equal to 2147483647" in response.json()["error"], (path, response.text)
    assert admin.get(f"/apps/{huge}").status_code == 422 and admin.get(f"/vpp/runs/{huge}").status_code == 422
    for selector in (huge, "%C2%B2"):
        response = client.post(f"/api/v1/apps/{selector}/install", headers=headers, json={"devices": ["X"]})
        assert response.status_code == 404 and response.json()["error"].startswith("no application"), response.text


def test_install_results_are_worded_for_the_console_and_the_api(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """The console's install results said what the command line says: 'see `mdm devices list`',
    'add it with `mdm users add ...`', 'register it with `mdm vpp users register ...`', '(see
    `mdm apps installs --status invited`)': commands an admin at the console cannot click.
    The same facts are now worded for the console, each line with a link to what to see or do
    next where there is one. The API's results kept the command line's words ('(see `mdm
    devices list`)'); they are now the API's (its endpoints and fields)."""
    app_id, asset = _ios_app(school, simulator)
    registered = simulator.state.user_ids("Registered")[0]  # a VPP user who has not accepted the invitation
    inventory.add_user(school, registered, email=f"{registered}@example.org")
    inventory.add_user(school, "not-at-apple", email="not-at-apple@example.org")  # an MDM user without a VPP user

    def result(**form: str) -> str:
        response = admin.post(f"/apps/{app_id}/install", data={**form, "csrftoken": csrf(admin)})
        table = response.text.split('id="install-result"', 1)[1].split("</table>", 1)[0]
        assert "`" not in table and "mdm " not in table and "--" not in table, table
        return table.replace("\n", "")

    not_enrolled = result(serials="NOTENROLLED1")
    assert re.search(
        r'NOTENROLLED1</td><td class="status-refused">refused</td><td>not enrolled in this MDM: .*<a class="next" href="/devices">Devices</a>', not_enrolled
    )
    assert re.search(r'<td>ghost</td><td class="status-refused">refused</td><td>not an MDM user of this host: .*href="/users">Users</a>', result(user="ghost"))
    assert "not registered as a VPP user in account &#39;school&#39;" in result(user="not-at-apple")
    invited = result(user=registered)
    assert "waiting for the user to accept the invitation" in invited and 'href="/apps/installs?status=invited">Invited installs</a>' in invited
    assert admin.get("/apps/installs?status=invited").status_code == 200

    api = client.post(f"/api/v1/apps/{app_id}/install", headers=token_for(school, "admin"), json={"devices": ["NOTENROLLED1"], "users": ["ghost"]})
    api_words = [
        "not enrolled in this MDM: check the serial number against GET /api/v1/devices",
        "not an MDM user of this host: GET /api/v1/users lists those who are (an administrator of the host adds users)",
    ]
    assert api.status_code == 409 and [line["message"] for line in api.json()["results"]] == api_words, api.text


def test_an_install_apple_could_not_be_asked_is_pending_not_failed(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """With Apple unreachable the install is recorded pending and the installs job asks Apple
    again (README, "Pending confirmation"), but the result said 'failed' in red with 409 (and
    the API 409 against its own '200 when every target is queued, licensed or pending'),
    while Install status showed it pending. The result says pending, as the record does."""
    inventory.add_device(school, "WEBDEV000010", "iOS")
    inventory.add_device(school, "WEBDEV000011", "iOS")
    app_id, _ = _ios_app(school, simulator)
    simulator.faults.add("drop", endpoint="assets/associate", count=2)
    result = admin.post(f"/apps/{app_id}/install", data={"devices": ["WEBDEV000010"], "csrftoken": csrf(admin)})
    assert result.status_code == 200, result.text
    text = result.text.replace("\n", "")
    assert re.search(r'<td>WEBDEV000010</td><td class="status-pending">pending</td><td>not licensed yet: cannot reach Apple', text), text
    assert 'href="/apps/installs">Install status</a>' in text
    assert re.search(r'<td>WEBDEV000010</td><td>request</td><td class="status-pending">pending</td>', admin.get("/apps/installs").text.replace("\n", ""))
    api = client.post(f"/api/v1/apps/{app_id}/install", headers=token_for(school, "admin"), json={"devices": ["WEBDEV000011"]})
    assert api.status_code == 200 and api.json()["ok"] is True and [line["status"] for line in api.json()["results"]] == ["pending"], api.text


def test_install_status_shows_the_request_time_its_rows_are_ordered_by(make_host: Any, database_url: str) -> None:
    """The "When" column showed the last update while rows were in request (id) order, so its
    times looked shuffled: the page shows when each install was requested (its order, newest
    first, as the API's) and, apart, when it last changed; on SQLite and PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.models import Install

    from .conftest import PASSWORD, WEB_CONFIG, sign_in

    web_host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(web_host, "alice", PASSWORD, "admin")

    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    updated = [start + timedelta(hours=h) for h in (5, 1, 9, 3)]  # not in id order

    def add(session: Any) -> None:
        for n, when in enumerate(updated):
            created = start + timedelta(minutes=n)
            session.add(
                Install(
                    account="school",
                    adam_id="1",
                    pricing_param="STDQ",
                    kind="device",
                    target=f"ORDER{n:07d}",
                    source="request",
                    status="queued",
                    created_at=created,
                    updated_at=when,
                )
            )

    web_host.db.run_write(add)
    with TestClient(create_app(web_host)) as admin:
        assert sign_in(admin).status_code == 303
        page = admin.get("/apps/installs").text.replace("\n", "")
        api = admin.get("/api/v1/apps/installs", headers=token_for(web_host, "viewer")).json()["items"]
    assert "<th>When</th>" not in page and re.search(r"<th[^>]*>Requested</th><th>Updated</th>", page)
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>school</td><td>1</td><td>device</td><td>(ORDER\d+)</td>", page)
    assert [r[2] for r in rows] == ["ORDER0000003", "ORDER0000002", "ORDER0000001", "ORDER0000000"]
    requested = [r[0] for r in rows]
    assert requested == sorted(requested, reverse=True) == [f"2026-11-01 08:0{n}:00 UTC" for n in (3, 2, 1, 0)]
    assert [r[1] for r in rows] == [f"2026-11-01 {8 + h:02d}:00:00 UTC" for h in (3, 9, 1, 5)]
    assert [i["target"] for i in api] == [r[2] for r in rows]  # the API's order: newest request first


def test_the_apps_list_shows_the_version_devices_are_on_and_the_newer_one_apart(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """A lookup answers a new version the update check has not applied: the console and the API
    showed it as the app's version; they show the one devices are on, the new one as available."""
    from plugins.mobile_apps.catalog import refresh_metadata

    assert refresh_metadata(school, everything=True)["found"] >= 1  # the versions devices start from
    app_id, asset = _ios_app(school, simulator)
    old = simulator.state.assets[(str(asset["adamId"]), str(asset["pricingParam"]))].version
    new = simulator.publish_version(str(asset["adamId"]))
    assert refresh_metadata(school, everything=True)["found"] >= 1
    [row] = [r for r in admin.get("/apps").text.split("<tr>") if f'href="/apps/{app_id}"' in r]
    assert f"<td>{old} <span" in row and f"({new} available)" in row
    assert f"{old} <span" in admin.get(f"/apps/{app_id}").text
    viewer = token_for(school, "viewer")
    [item] = [a for a in client.get("/api/v1/apps?platform=iOS&limit=500", headers=viewer).json()["items"] if str(a["id"]) == app_id]
    assert (item["version"], item["available"]) == (old, new)


def test_apple_refusing_for_want_of_licenses_is_worded_for_the_console_and_the_api(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """Apple's 9709 (not enough licenses) when the mirror counted some available (licenses
    assigned in Apple's portal since the last sync): the command line's advice names `mdm
    apps reclaim ADAMID --unused`, `mdm vpp assets --account NAME` and `mdm vpp sync NAME`; the
    console says it with its pages, naming the account to synchronize (it said "the VPP
    account"), and the API with the app's and the account's endpoints (it printed ``{app}`` and
    ``{name}``), each line naming the error, and nothing is queued."""
    from plugins.mobile_apps.catalog import list_apps
    from plugins.vpp.sync.run import sync_account

    adam, pricing = simulator.purchase(count=2)
    assert sync_account(school, "school")["status"] == "ok"  # the mirror now says 2 available ...
    for serial in ("PORTAL000001", "PORTAL000002"):
        simulator.assign_in_portal(adam, pricing, serial_number=serial)  # ... but Apple has none left
    for serial in ("WEB9709DEV01", "WEB9709DEV02"):
        inventory.add_device(school, serial, "iOS")
    [app] = [a for a in list_apps(school) if (a["adamId"], a["pricingParam"], a["platform"]) == (adam, pricing, "iOS")]
    refused = "Apple refused the license: Not enough licenses (Apple error 9709); nothing queued: "
    refused += "buy more in Apple Business Manager or Apple School Manager, or take licenses back with "

    page = admin.post(f"/apps/{app['id']}/install", data={"devices": ["WEB9709DEV01"], "csrftoken": csrf(admin)})
    table = page.text.split('id="install-result"', 1)[1].split("</table>", 1)[0].replace("\n", "")
    console = refused + (
        "Reclaim licenses on the app&#39;s page; the app&#39;s counts are as of the last synchronization: "
        "synchronize the VPP account &#39;school&#39; (Apple Volume Purchase Program › Synchronize) to refresh them"
    )
    assert page.status_code == 409 and f'<td>WEB9709DEV01</td><td class="status-failed">failed</td><td>{console}</td>' in table, table
    assert "`" not in table and "mdm " not in table and "--" not in table, table

    headers = token_for(school, "admin")
    api = client.post(f"/api/v1/apps/{app['id']}/install", headers=headers, json={"devices": ["WEB9709DEV02"]})
    # the API names the app's and the account's own endpoints (they printed {app} and {name})
    api_words = refused + (
        f'POST /api/v1/apps/{adam}/reclaim {{"unused": true}}; GET /api/v1/vpp/assets?account=school shows the counts as of the last sync: '
        "POST /api/v1/vpp/accounts/school/sync refreshes them"
    )
    assert api.status_code == 409 and api.json()["ok"] is False, api.text
    assert api.json()["results"] == [{"target": "WEB9709DEV02", "status": "failed", "message": api_words}], api.text
    assert inventory.list_commands(school, "WEB9709DEV01") == inventory.list_commands(school, "WEB9709DEV02") == []
    assets = client.get("/api/v1/vpp/assets?account=school", headers=headers)
    assert assets.status_code == 200 and adam in {a["adamId"] for a in assets.json()["items"]}, assets.text
    reclaim = client.post(f"/api/v1/apps/{adam}/reclaim", headers=headers, json={"devices": ["WEB9709DEV02"]})
    assert reclaim.status_code == 200 and reclaim.json()["results"][0]["status"] == "none", reclaim.text  # the app found: it holds none


def test_a_retired_apps_counts_are_not_shown_as_its_licenses_now(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """A retired app kept the counts it had when it was retired; the list showed them as its
    "Available / total" now, the app page as its licenses, the API with nothing saying they are old."""
    from plugins.vpp.sync.run import sync_account

    app_id, asset = _ios_app(school, simulator)
    simulator.remove_asset(asset["adamId"])
    assert sync_account(school, "school")["status"] == "ok"
    page = admin.get("/apps", params={"state": "retired"}).text.replace("\n", "")
    row = page.split(f'href="/apps/{app_id}"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">-</td><td>retired</td>' in row and f"{asset['availableCount']} / {asset['totalCount']}" not in row
    shown = admin.get(f"/apps/{app_id}").text
    assert f"available of {asset['totalCount']} (when it was retired, not now)</td>" in shown
    items = client.get("/api/v1/apps", params={"limit": 500}, headers=token_for(school, "viewer")).json()["items"]
    [item] = [a for a in items if str(a["id"]) == app_id]
    assert (item["state"], item["countsAsOf"], item["totalCount"]) == ("retired", "retired", asset["totalCount"])  # kept, and said to be old
    assert {a["countsAsOf"] for a in items if a["state"] == "published"} == {"now"}


def test_a_removed_account_s_app_offers_no_reclaim_and_says_where_its_licenses_go_back(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """After its VPP account was removed, a retired app's page still offered *Reclaim
    licenses*; sending it (or a form left open in another tab) answered that the account was
    renamed, 'try again then', and pointed to `mdm events failures`: nothing the admin could do
    would ever work. The page now says why there is no form and where such licenses go back."""
    app_id, key, holders = _app_with_holders(school, simulator, revocable=True, kind="serialNumber")
    form = csrf(admin)
    assert 'id="reclaim-form"' in admin.get(f"/apps/{app_id}").text  # the tab opened before the removal
    removed = admin.post("/vpp/accounts/school/remove", data={"confirm": "school", "csrftoken": form}, follow_redirects=False)
    assert removed.status_code == 303, removed.text

    page = html.unescape(admin.get(f"/apps/{app_id}").text)
    assert 'id="reclaim-form"' not in page and 'id="reclaim-submit"' not in page
    gone = re.search(r'id="reclaim-account-gone">(.*?)</p>', page, re.S)
    assert gone and "VPP account 'school', which is not on this host any more" in gone.group(1), page
    assert "Apple School Manager or Apple Business Manager" in gone.group(1)
    stale = admin.post(f"/apps/{app_id}/reclaim", data={"serials": holders[0], "confirm": "yes", "csrftoken": form})
    said = html.unescape(stale.text)
    assert stale.status_code == 409 and "VPP account 'school', which is not on this host any more" in said and "`mdm" not in said, said
    assert _held(simulator, key, holders[0])  # nothing asked of Apple
    api = client.post(f"/api/v1/apps/{app_id}/reclaim", json={"devices": [holders[0]]}, headers=token_for(school, "admin"))
    assert api.status_code == 400 and "`mdm" not in api.json()["error"] and "GET /api/v1/events/failures" in api.json()["error"], api.json()


def test_a_misspelt_state_in_the_apps_page_address_is_refused_not_every_app(school: Host, admin: Any) -> None:
    """``/apps?state=retierd`` (a bookmark, a typed address) listed every application, published
    and retired alike, as if it were *All*; the API and ``--state`` refuse it."""
    page = admin.get("/apps", params={"state": "retierd"})
    assert page.status_code == 422 and "unknown state &#39;retierd&#39;: use one of published, retired" in page.text, page.text
    assert admin.get("/apps", params={"state": "all"}).status_code == 200  # the page's own choices
    assert admin.get("/apps", params={"state": "retired"}).status_code == 200


def test_an_install_for_a_user_apple_lists_retired_says_so_and_to_register_it_again(school: Host, admin: Any, client: Any, simulator: Any) -> None:
    """Installing for a user whose VPP user Apple lists as Retired answered 'not registered as
    a VPP user... an administrator of the host registers it', as for a user never registered:
    the admin looked for a registration that was there. It now says the VPP user is retired at
    Apple and that it is registered again, in each surface's words."""
    from plugins.mobile_apps.installs.request import install

    app_id, _ = _ios_app(school, simulator)
    retired = simulator.state.user_ids("Retired")[0]
    inventory.add_user(school, retired, email=f"{retired}@example.org")
    [line] = install(school, app_id, user=retired).as_dicts()
    assert line["status"] == "refused" and line["message"] == (
        "its VPP user in account 'school' is retired at Apple (retired in Apple School Manager or Apple Business Manager, or by this host when the MDM "
        f"user was removed): register it again with `mdm vpp users register {retired} --account school`, then install again"
    ), line
    page = html.unescape(admin.post(f"/apps/{app_id}/install", data={"user": retired, "csrftoken": csrf(admin)}).text)
    assert "its VPP user in account 'school' is retired at Apple" in page and "an administrator of the host registers it again" in page, page
    assert "not registered as a VPP user" not in page and "`mdm" not in page
    api = client.post(f"/api/v1/apps/{app_id}/install", headers=token_for(school, "admin"), json={"users": [retired]})
    [said] = [r["message"] for r in api.json()["results"]]
    assert "is retired at Apple" in said and "registers it again" in said and "`mdm" not in said, api.text


def test_reclaims_are_listed_in_the_console_and_the_api_as_the_cli_lists_them(school: Host, admin: Any, viewer: Any, client: Any, simulator: Any) -> None:
    """The console and the API had no list of reclaims: which licenses were still pending,
    refused by Apple or irrevocable was seen only with `mdm apps reclaims`. Reclaims (linked from
    Mobile Applications) and ``GET /api/v1/apps/reclaims`` list the open ones, oldest first, and
    say how many ended ones they leave out; ``all=true`` lists every one recorded."""
    from plugins.mobile_apps.reclaims import list_reclaims

    app_id, key, holders = _app_with_holders(school, simulator, revocable=True, kind="serialNumber")
    refused, taken = holders[:2]
    simulator.fail_next_event("DISASSOCIATE", 9706)
    for serial, status in ((refused, 409), (taken, 200)):
        result = admin.post(f"/apps/{app_id}/reclaim", data={"serials": serial, "confirm": "yes", "csrftoken": csrf(admin)})
        assert result.status_code == status and '<a href="/apps/reclaims">Reclaims</a>' in result.text  # the result links to the list
    [failed] = [r for r in list_reclaims(school) if r["target"] == refused]
    [done] = [r for r in list_reclaims(school, everything=True) if r["target"] == taken]
    assert (failed["status"], done["status"]) == ("failed", "done")

    assert 'href="/apps/reclaims">Reclaims</a>' in viewer.get("/apps").text
    page = viewer.get("/apps/reclaims")
    assert page.status_code == 200
    rows = page.text.replace("\n", "")
    cells = rf'<td>{key[0]}</td><td>{key[1]}</td><td>device</td><td>{refused}</td><td>manual</td><td class="status-failed">failed</td>'
    assert re.search(rf"<td>{failed['id']}</td>.*{cells}", rows)
    assert f"<td>{taken}</td>" not in rows and '1 done, canceled or superseded reclaim(s) not shown: <a href="/apps/reclaims?all=true">' in rows
    every = viewer.get("/apps/reclaims", params={"all": "true"}).text.replace("\n", "")
    assert f"<td>{taken}</td>" in every and f"<td>{refused}</td>" in every and "Superseded by" in every and "not shown" not in every

    headers = token_for(school, "viewer")
    listed = client.get("/api/v1/apps/reclaims", headers=headers).json()
    assert [(r["id"], r["status"], r["target"]) for r in listed["items"]] == [(failed["id"], "failed", refused)] and listed["next_cursor"] is None
    everything = client.get("/api/v1/apps/reclaims", params={"all": "true"}, headers=headers).json()["items"]
    assert [r["id"] for r in everything] == sorted(r["id"] for r in list_reclaims(school, everything=True))
    assert client.get("/api/v1/apps/reclaims", params={"all": "maybe"}, headers=headers).status_code == 422
    # a recorded error's command-line advice is in the surface's words, as an install's
    from sqlalchemy import update

    from plugins.mobile_apps.models import Reclaim

    school.db.run_write(lambda s: s.execute(update(Reclaim).where(Reclaim.id == failed["id"]).values(last_error="VPP plugin unavailable (see `mdm plugins`)")))
    page_text = html.unescape(viewer.get("/apps/reclaims").text)
    assert "see `mdm plugins`" not in page_text and "the host's operator enables it in the configuration)</td>" in page_text, page_text
    [row] = client.get("/api/v1/apps/reclaims", headers=headers).json()["items"]
    assert row["last_error"] == "VPP plugin unavailable (it is disabled or failed to load on this host: the host's operator enables it in the configuration)"
