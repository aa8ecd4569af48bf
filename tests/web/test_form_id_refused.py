"""A console form whose one-time id (``form_id``) is not one the console made (a form saved from
an old page, a hand-edited one) is refused with a 422 that names the page to open again, and
does nothing: on the Apple Volume Purchase Program pages and on an application's page."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from mdm_core import inventory
from mdm_core.host import Host

from .conftest import csrf
from .test_apps_console import _app_with_holders, _held, _ios_app

BAD_IDS = ["not an id", "<x>", "short", "a" * 65, "abc/def.ghi+jkl=mno"]
VPP_SAID = "the form's id is not valid: open the Apple Volume Purchase Program page again and fill in the form there"
APP_SAID = "the form's id is not valid: open the application's page again and fill in the form there"


def _refusal(response: Any) -> str:
    """The one line of an error page."""
    found = re.search(r'<p class="flash error" id="error">([^<]*)</p>', response.text)
    assert found, response.text[:500]
    return html.unescape(found.group(1))


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_form_id_on_the_vpp_pages_is_a_422_naming_the_page(school: Host, admin: Any, simulator: Any, project_dir: Path, bad: str) -> None:
    from plugins.vpp.accounts import list_accounts

    token = simulator.write_token(project_dir / "t.vpptoken").read_bytes()
    before = simulator.requests["client/config"]
    sent = [
        admin.post(
            "/vpp/add",
            data={"csrftoken": csrf(admin), "name": "other", "service_url": simulator.base_url, "form_id": bad},
            files={"token_file": ("t.vpptoken", token)},
        ),
        admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "form_id": bad}, files={"token_file": ("t.vpptoken", token)}),
        admin.post("/vpp/accounts/school/rename", data={"csrftoken": csrf(admin), "new_name": "school2", "form_id": bad}),
        admin.post("/vpp/accounts/school/remove", data={"csrftoken": csrf(admin), "confirm": "school", "form_id": bad}),
    ]
    assert [(r.status_code, _refusal(r)) for r in sent] == [(422, VPP_SAID)] * len(sent)
    assert [a["name"] for a in list_accounts(school)] == ["school"] and simulator.requests["client/config"] == before  # nothing done, Apple not asked


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_form_id_on_an_apps_page_is_a_422_naming_the_page(school: Host, admin: Any, simulator: Any, bad: str) -> None:
    inventory.add_device(school, "WEBDEV000001", "iOS", model="iPhone15,2")
    app_id, _ = _ios_app(school, simulator)
    held_app, key, holders = _app_with_holders(school, simulator, revocable=True, kind="serialNumber")
    sent = [
        admin.post(f"/apps/{app_id}/install", data={"devices": ["WEBDEV000001"], "csrftoken": csrf(admin), "form_id": bad}),
        admin.post(f"/apps/{held_app}/reclaim", data={"serials": holders[0], "confirm": "yes", "csrftoken": csrf(admin), "form_id": bad}),
    ]
    assert [(r.status_code, _refusal(r)) for r in sent] == [(422, APP_SAID)] * len(sent)
    assert inventory.list_commands(school, "WEBDEV000001") == [] and _held(simulator, key, holders[0])  # nothing done
    assert simulator.requests["assets/associate"] == simulator.requests["assets/disassociate"] == 0
