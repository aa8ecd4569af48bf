"""The seed's path in a real browser: headless Chromium (Debian's package) driven by
Selenium with Debian's chromedriver, against a real ``mdm run`` on a free port and the
simulator. Nothing is downloaded at test time; where Chromium cannot be had the module is
skipped, saying why (``.ci/run`` installs it).

Set ``MDM_UPDATE_SCREENSHOTS=1`` to refresh ``docs/img/asset-page.png`` from this run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core import inventory

from .artwork import ArtworkServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="Chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does it)"
    ),
    pytest.mark.slow,  # a browser and an mdm run process
    pytest.mark.xdist_group("browser"),  # the module's browser and console are shared: its tests stay on one worker
]
PASSWORD = "correct horse battery staple"
WAIT = 30


@pytest.fixture(scope="module")
def artwork() -> Iterator[ArtworkServer]:
    """Apple's artwork host, served on loopback (see ``artwork.py``)."""
    with ArtworkServer() as server:
        yield server


@pytest.fixture(scope="module")
def browser(artwork: ArtworkServer) -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile; Apple's artwork host is
    resolved to the loopback stand-in, whose throw-away certificate it accepts."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mdm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
        artwork.resolver_rule,
        "--ignore-certificate-errors",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ``mdm run --listen 127.0.0.1:0`` on its own SQLite database, the simulator,
    enrolled devices and users, and an admin."""
    from mdm_core.host import create_host
    from mdm_core.web.access import add_admin
    from plugins.vpp.simulator import Simulator

    from .conftest import MdmRun, run_env

    folder = tmp_path_factory.mktemp("console")
    (folder / "conf").mkdir()
    conf = folder / "conf" / "mdm.toml"
    conf.write_text("[vpp]\nmax_attempts = 1\nmax_total_wait = 1.0\n\n[mobile_apps]\ninstall_wait = 10.0\n")
    env = run_env(f"sqlite:///{folder / 'mdm.sqlite3'}", conf)
    with Simulator(seed=5, assets=8, devices=12, users=8, page_size=50, async_delay=0) as sim:
        host = create_host(conf, environ=env, database_url=env["MDM_DATABASE_URL"])
        try:
            add_admin(host, "alice", PASSWORD)
            serials = sim.state.device_serials()
            inventory.add_devices(host, [inventory.DeviceRow(s, "iOS", None, "iPhone15,2", None) for s in serials])
            inventory.add_users(host, [inventory.UserRow(u["clientUserId"], u.get("email"), u.get("managedAppleId"), None) for u in sim.state.user_records()])
        finally:
            host.close()
        token = sim.write_token(folder / "school.vpptoken")
        process = MdmRun(folder, env, "run", "--listen", "127.0.0.1:0")
        try:
            assert process.url, f"mdm run did not start its web console: {process.lines}"
            yield {"url": process.url, "sim": sim, "token": token, "serials": serials}
        finally:
            assert process.stop() == 0  # SIGTERM stops the scheduler and the web server cleanly


def _wait_text(driver: Any, css: str, text: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
    return driver.find_element(By.CSS_SELECTOR, css)


def _wait(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def test_the_seed_path_in_a_browser(browser: Any, console: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, sim = console["url"], console["sim"]
    # anonymous: sent to sign in
    browser.get(url + "/vpp")
    _wait(browser, "#login-form")
    assert "/login?next=" in browser.current_url
    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "sign-in").click()
    _wait_text(browser, "h1", "Apple Volume Purchase Program")
    _wait(browser, "#no-accounts")

    # add the account by uploading its token
    browser.find_element(By.ID, "add-account").click()
    _wait(browser, "#add-form")
    browser.find_element(By.ID, "account-name").send_keys("school")
    browser.find_element(By.ID, "token-file").send_keys(str(console["token"]))
    interval = browser.find_element(By.ID, "account-interval")
    interval.clear()
    interval.send_keys("900")
    browser.find_element(By.ID, "service-url").send_keys(sim.base_url)
    browser.find_element(By.ID, "add-submit").click()
    _wait_text(browser, ".flash", "account school added")
    assert "expires in" in browser.find_element(By.ID, "token-state-school").text

    # an asset with user and device licenses, of an adamId with one pricing (Apple names an adamId)
    kinds: dict[tuple[str, str], set[str]] = {}
    for adam, pricing, kind, _ in sim.snapshot()["assignments"]:
        kinds.setdefault((adam, pricing), set()).add(kind)
    pricings = [key[0] for key in sim.state.assets]
    adam, pricing = next(k for k, v in sorted(kinds.items()) if len(v) == 2 and pricings.count(k[0]) == 1)
    name = sim.state.assets[(adam, pricing)].name

    # Synchronize: the run page follows the sync to its report
    browser.find_element(By.ID, "sync-school").click()
    _wait_text(browser, "#run-status", "ok")
    # a device license given back in Apple's portal, then Synchronize again: the asset's chart
    # gets its second point
    holder = next(a[3] for a in sim.snapshot()["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "serialNumber")
    assert sim.remove_in_portal(adam, pricing, serial_number=holder)
    browser.find_element(By.LINK_TEXT, "Apple Volume Purchase Program").click()
    browser.find_element(By.ID, "sync-school").click()
    _wait_text(browser, "#run-status", "ok")
    assert "incremental" in browser.find_element(By.ID, "run").text
    browser.find_element(By.ID, "open-assets").click()
    _wait(browser, "#assets")
    links = browser.find_elements(By.CSS_SELECTOR, "a.asset-link")
    assert len(links) == len(sim.state.assets)

    # the asset, named and drawn as the App Store does: Synchronize looked its metadata up (the
    # simulator serves Apple's lookup; the icon comes from the stand-in of Apple's artwork host)
    snap = sim.snapshot()
    deadline = time.monotonic() + WAIT
    while name not in browser.find_element(By.ID, "assets").text and time.monotonic() < deadline:
        browser.refresh()  # the names arrive with the sync's events, just after its report
        _wait(browser, "#assets")
    assert name in browser.find_element(By.ID, "assets").text
    browser.find_element(By.CSS_SELECTOR, f'a.asset-link[href$="/assets/{adam}/{pricing}"]').click()
    _wait(browser, "#user-licenses")
    assert browser.find_element(By.ID, "asset-title").text == name
    icon = browser.find_element(By.CSS_SELECTOR, "#asset-title img.icon")
    assert icon.get_attribute("src").startswith("https://is1-ssl.mzstatic.com/")
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", icon) == 64)
    users = {a[3] for a in snap["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "clientUserId"}
    shown = {row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#user-licenses tbody tr")}
    assert shown == users
    assert browser.find_element(By.ID, "chart").is_displayed()
    assert "2 recorded changes" in browser.find_element(By.TAG_NAME, "main").text
    shot = browser.get_screenshot_as_png()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MDM_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        (ROOT / "docs" / "img" / "asset-page.png").write_bytes(shot)
    browser.find_element(By.ID, "tab-device").click()
    _wait(browser, "#device-licenses")
    devices = {a[3] for a in snap["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "serialNumber"}
    shown = {row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#device-licenses tbody tr")}
    assert shown == devices

    # change the Account Synchronization Interval (sec)
    browser.find_element(By.LINK_TEXT, "Apple Volume Purchase Program").click()
    field = _wait(browser, "#interval-school")
    field.clear()
    field.send_keys("1800")
    browser.find_element(By.ID, "save-interval-school").click()
    _wait_text(browser, ".flash", "set to 1800 seconds")
    assert browser.find_element(By.ID, "interval-school").get_attribute("value") == "1800"

    # install an app on a device from Mobile Applications
    browser.find_element(By.LINK_TEXT, "Mobile Applications").click()
    _wait(browser, "#apps")
    installable = [
        a
        for a in snap["assets"].values()
        if a["deviceAssignable"] and "iOS" in a["supportedPlatforms"] and a["productType"] == "App" and a["availableCount"] > 0
    ]
    target_asset = installable[0]
    rows = browser.find_elements(By.CSS_SELECTOR, "#apps tbody tr")
    link = next(
        r.find_element(By.CSS_SELECTOR, "a.app-link")
        for r in rows
        if r.find_elements(By.TAG_NAME, "td")[6].text == target_asset["adamId"]
        and r.find_elements(By.TAG_NAME, "td")[2].text == "iOS"
        and r.find_elements(By.TAG_NAME, "td")[7].text == target_asset["pricingParam"]
    )
    link.click()
    select = Select(_wait(browser, "#install-devices"))
    holders = {a[3] for a in snap["assignments"] if (a[0], a[1]) == (target_asset["adamId"], target_asset["pricingParam"])}
    serial = next(s for s in console["serials"] if s not in holders)
    select.select_by_value(serial)
    browser.find_element(By.ID, "install-submit").click()
    _wait_text(browser, "#install-result", "queued")
    assert serial in browser.find_element(By.ID, "install-result").text
    assert serial in {a[3] for a in sim.snapshot()["assignments"] if (a[0], a[1]) == (target_asset["adamId"], target_asset["pricingParam"])}

    # sign out: the console is closed again
    browser.find_element(By.ID, "sign-out").click()
    _wait(browser, "#login-form")
    browser.get(url + "/vpp/accounts/school/assets")
    _wait(browser, "#login-form")
    assert "/login?next=" in browser.current_url
