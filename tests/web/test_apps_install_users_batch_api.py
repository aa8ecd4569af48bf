"""``POST /api/v1/apps/{app}/install`` with ``"users"`` (a class's students at once) is all or
nothing, as a batch of devices is: with 3 licenses left for 5 students it licensed the first 3
and refused the other 2; now each of the 5 is refused and Apple is asked nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mdm_core.host import Host
from mdm_core.inventory import add_device, add_user

from .conftest import PASSWORD, WEB_CONFIG, token_for

STUDENTS = [f"kid-{n}" for n in range(5)]


@pytest.fixture
def class_sim() -> Any:
    """A simulator whose VPP users ``kid-0``..``kid-4`` accepted their invitation."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=5, assets=2, devices=10, users=3, async_delay=0) as sim:
        for kid in STUDENTS:
            sim.create_user(client_user_id=kid)
            sim.accept_invite(kid)
        yield sim


def _school(make_host: Any, database_url: str, sim: Any, project_dir: Any) -> Host:
    from mdm_core.web.access import add_admin
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_simulated_account(host, sim, project_dir)
    for n, kid in enumerate(STUDENTS):
        add_user(host, kid, email=f"{kid}@school.example")
        add_device(host, f"KIDIPAD{n:05d}", "iPadOS", owner=kid)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def test_too_few_licenses_for_the_students_refuses_each_of_them(make_host: Any, database_url: str, class_sim: Any, project_dir: Any) -> None:
    from mdm_core.web.app import create_app

    adam_id, _ = class_sim.purchase(count=3)
    host = _school(make_host, database_url, class_sim, project_dir)
    with TestClient(create_app(host)) as client:
        url, auth = f"/api/v1/apps/{adam_id}/install", token_for(host, "admin")
        refused = client.post(url, headers=auth, json={"users": STUDENTS})
        assert refused.status_code == 409, refused.text
        assert [(r["target"], r["status"]) for r in refused.json()["results"]] == [(kid, "refused") for kid in STUDENTS]
        assert all("3 available in account 'school', 5 needed" in r["message"] for r in refused.json()["results"])
        assert not [a for a in class_sim.snapshot()["assignments"] if a[0] == adam_id]  # Apple asked nothing

        done = client.post(url, headers=auth, json={"users": STUDENTS[:3]})  # as many as there are: licensed
        assert done.status_code == 200, done.text
        assert {(r["target"], r["status"]) for r in done.json()["results"]} >= {(kid, "licensed") for kid in STUDENTS[:3]}
        again = client.post(url, headers=auth, json={"users": STUDENTS[:4]})  # 3 hold one already, 1 needs one of 0 left
        assert again.status_code == 409
        assert [(r["target"], r["status"]) for r in again.json()["results"] if r["status"] in ("refused", "licensed")] == [
            ("kid-3", "refused"),
            *[(kid, "licensed") for kid in STUDENTS[:3]],
        ]


CLASS = [f"pupil-{n:03d}" for n in range(25)]


def test_a_class_is_licensed_in_one_request_per_chunk_and_one_read_of_the_users(
    make_host: Any, database_url: str, project_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 students took 25 requests to Apple and 26 reads of the whole VPP user list (100 took
    21.7 s on PostgreSQL); now Apple's associate takes them by its limit (10 here: 3 requests)
    and the users are read once, with the same lines, install rows and commands as before:
    a student who holds the license already, one invited, one who is not an MDM user."""
    from sqlmodel import select

    from mdm_core.inventory import add_user
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.models import Install
    from plugins.mobile_apps.vpp_port import VppPort
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    with Simulator(seed=6, assets=1, devices=0, users=0, async_delay=0, limits={"maxClientUserIds": 10}) as sim:
        for kid in [*CLASS, "pupil-late"]:
            sim.create_user(client_user_id=kid)
        for kid in CLASS:
            sim.accept_invite(kid)
        adam_id, pricing = sim.purchase(count=len(CLASS) + 5)
        from mdm_core.web.access import add_admin

        host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
        add_admin(host, "alice", PASSWORD, "admin")
        add_simulated_account(host, sim, project_dir)
        for n, kid in enumerate([*CLASS, "pupil-late"]):
            add_user(host, kid, email=f"{kid}@school.example")
            add_device(host, f"CLASSPAD{n:04d}", "iPadOS", owner=kid)
        assert sync_account(host, "school")["status"] == "ok"
        url, auth = f"/api/v1/apps/{adam_id}/install", token_for(host, "admin")
        with TestClient(create_app(host)) as client:
            assert client.post(url, headers=auth, json={"users": CLASS[:1]}).status_code == 200  # pupil-000 holds one already

            reads: list[str | None] = []
            users = VppPort.users

            def counted(self: VppPort, account: str | None, client_user_ids: Any = None) -> Any:
                reads.append(account)
                return users(self, account, client_user_ids)

            monkeypatch.setattr(VppPort, "users", counted)
            before = sim.requests["assets/associate"]
            answer = client.post(url, headers=auth, json={"users": [*CLASS, "pupil-late", "nobody"]})
            asked = sim.requests["assets/associate"] - before
        assert answer.status_code == 409, answer.text  # "nobody" is refused
        lines = [(r["target"], r["status"]) for r in answer.json()["results"]]
        expected = []
        for n, kid in enumerate(CLASS):
            expected += [(kid, "licensed"), (f"CLASSPAD{n:04d}", "queued")]
        assert lines == [*expected, ("pupil-late", "waiting"), ("nobody", "refused")]
        assert "user license already held" in answer.json()["results"][0]["message"]
        assert (asked, len(reads)) == (3, 1)  # 24 new licenses by 10; was (24, 27)
        held = {a[3] for a in sim.snapshot()["assignments"] if tuple(a[:3]) == (adam_id, pricing, "clientUserId")}
        assert held >= set(CLASS)
        with host.db.session() as session:
            rows = list(session.exec(select(Install).where(Install.kind == "user")))
        assert sorted((r.target, r.status, len(r.command_uuids)) for r in rows) == sorted(
            [(kid, "queued", 1) for kid in CLASS] + [("pupil-late", "invited", 0)]
        )


def test_apple_refusing_the_batch_says_so_for_each_student_and_queues_nothing(make_host: Any, database_url: str, class_sim: Any, project_dir: Any) -> None:
    """The mirror says 3 licenses left, Apple has none (taken in the portal since): the one
    request for the 3 students comes back 9709 for each, each is 'failed' with Apple's reason,
    its install is recorded failed, and no command is queued."""
    from sqlmodel import select

    from mdm_core.web.app import create_app
    from plugins.mobile_apps.models import Install

    adam_id, _ = class_sim.purchase(count=3)
    host = _school(make_host, database_url, class_sim, project_dir)
    for n in range(3):
        class_sim.assign_in_portal(adam_id, serial_number=f"PORTAL{n:06d}")
    before = class_sim.requests["assets/associate"]
    with TestClient(create_app(host)) as client:
        answer = client.post(f"/api/v1/apps/{adam_id}/install", headers=token_for(host, "admin"), json={"users": STUDENTS[:3]})
    assert answer.status_code == 409, answer.text
    results = answer.json()["results"]
    assert [(r["target"], r["status"]) for r in results] == [(kid, "failed") for kid in STUDENTS[:3]]
    assert all("9709" in r["message"] for r in results)
    assert class_sim.requests["assets/associate"] - before == 1
    with host.db.session() as session:
        rows = list(session.exec(select(Install)))
    assert sorted((r.target, r.status, r.command_uuids) for r in rows) == [(kid, "failed", []) for kid in STUDENTS[:3]]
    assert "9709" in (rows[0].error or "")


def test_a_refused_batch_still_says_which_devices_of_a_student_were_skipped(make_host: Any, database_url: str, class_sim: Any, project_dir: Any) -> None:
    """A student with a Mac and an iPad, an iOS-only app, too few licenses: the refusal dropped
    the student's other lines, so the answer never said the Mac was skipped; now it does."""
    from mdm_core.web.app import create_app

    adam_id, _ = class_sim.purchase(count=3)  # iOS only
    host = _school(make_host, database_url, class_sim, project_dir)
    add_device(host, "KIDMAC00000", "macOS", owner="kid-0")
    with TestClient(create_app(host)) as client:
        refused = client.post(f"/api/v1/apps/{adam_id}/install", headers=token_for(host, "admin"), json={"users": STUDENTS})
        assert refused.status_code == 409, refused.text
        results = [(r["target"], r["status"]) for r in refused.json()["results"]]
        assert results == [*[(kid, "refused") for kid in STUDENTS], ("KIDMAC00000", "skipped")]
        mac = next(r for r in refused.json()["results"] if r["target"] == "KIDMAC00000")
        assert "platform mismatch: the device runs macOS" in mac["message"]
