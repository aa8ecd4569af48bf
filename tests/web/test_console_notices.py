"""A console page given a query parameter it does not take, or a sort, direction or tab it does
not know, says so in one line naming the valid ones, where it showed the page as if they were
not there (an unknown sort fell back on sorting by name without a word). The API refuses them
(422); a page still shows, with the line above it."""

from __future__ import annotations

import html
import re
from typing import Any

from mdm_core.host import Host


def _notices(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<p class="flash error notice">(.*?)</p>', page)]


def test_an_unknown_parameter_or_sort_is_said_in_one_line(school: Host, viewer: Any) -> None:
    assets = "/vpp/accounts/school/assets"
    page = viewer.get(assets, params={"sort": "bogus", "dir": "down"})
    assert page.status_code == 200
    assert _notices(page.text) == [
        "sort 'bogus' is not one this page takes (name, adamId, productType, pricingParam, assigned, available, retired, total): shown by name",
        "dir 'down' is not one this page takes (asc, desc): shown by asc",
    ]
    page = viewer.get(assets, params={"sotr": "total"})
    assert page.status_code == 200 and _notices(page.text) == ["query parameter sotr ignored: this page takes dir, page, q, sort"]
    page = viewer.get("/devices", params={"serial": "X", "qq": "y"})
    assert _notices(page.text) == ["query parameters qq, serial ignored: this page takes page, q"]
    adam = viewer.get("/api/v1/vpp/assets").json()["items"][0]["adamId"]
    page = viewer.get(f"{assets}/{adam}/STDQ", params={"tab": "devices"})
    assert page.status_code == 200 and _notices(page.text) == ["tab 'devices' is not one this page takes (user, device): shown by user"]
    assert viewer.get("/api/v1/vpp/assets", params={"sotr": "total"}).status_code == 422  # the API refuses them


def test_known_parameters_show_no_notice(school: Host, viewer: Any) -> None:
    for path, params in [("/vpp/accounts/school/assets", {"sort": "total", "dir": "desc", "q": "a", "page": "1"}), ("/devices", {"q": "x"}), ("/vpp", {})]:
        page = viewer.get(path, params=params)
        assert page.status_code == 200 and _notices(page.text) == [], (path, page.text)


def test_an_unknown_parameter_is_named_in_at_most_50_characters(school: Host, viewer: Any) -> None:
    """A 4,000-character parameter name was echoed whole in the notice (and in the API's 422)."""
    name = "x" * 4000
    page = viewer.get("/devices", params={name: "1"})
    assert page.status_code == 200 and _notices(page.text) == [f"query parameter {'x' * 50} ignored: this page takes page, q"]
    answer = viewer.get("/api/v1/vpp/assets", params={name: "1"})
    assert answer.status_code == 422 and "x" * 51 not in answer.text and "x" * 50 in answer.text
