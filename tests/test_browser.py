"""The dashboard in a real headless Chromium: log in, see a failed job, replay it, see it succeed —
and customer data crafted as markup never runs.

Chromium and its driver come from Debian (`chromium`, `chromium-driver`); the fixture installs them
with apt-get when they are missing and it runs as root, and fails (never skips) when it cannot.
Set UPDATE_SCREENSHOT=1 to refresh docs/dashboard.png (the overview), docs/dashboard-failed.png and
docs/dashboard-customer.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from crmsync.core.counters import current_minute
from crmsync.core.keys import job_minute_counter_key, minute_counter_key
from crmsync.core.settings import Settings
from tests.support import DASHBOARD_PASSWORD, DASHBOARD_USER, Deliver, event, fail, work

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Would run if a page rendered it as markup: an alert, and a global the test looks for.
NAME = "<img src=x onerror=alert(1)>"
EXTERNAL_ID = "crm-<svg onload=window.__xss=1>"


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when missing (as root, with apt-get)."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(
            # Without recommends: the browser and its driver, not fonts, themes and desktop services.
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"],
            env=env, check=False, capture_output=True,
        )  # fmt: skip
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver (apt-get install them)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """A headless Chromium driven over WebDriver, with a throwaway profile."""
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1500,900",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def navigate(browser: webdriver.Chrome, element: WebElement) -> None:
    """Click `element` and wait until the next page has replaced this one: a new document has a new
    window, without the mark set on this one's. (Selenium's `staleness_of` asks the old page's
    element, which ChromeDriver 156.0.8078.114 answers with an "unknown error", not "stale".)"""
    browser.execute_script("window.__leaving = true")
    element.click()
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda driver: driver.execute_script("return window.__leaving === undefined")
    )


def assert_nothing_ran(browser: webdriver.Chrome) -> None:
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (reading it is what raises)
    assert browser.execute_script("return window.__xss === undefined") is True


def test_an_operator_replays_a_failed_job_and_crafted_markup_never_runs(
    browser: webdriver.Chrome,
    dashboard: str,
    deliver: Deliver,
    settings: Settings,
    redis: Redis,
    tmp_path: Path,
) -> None:
    fail(
        deliver, settings, redis,
        event("created", EXTERNAL_ID, name=NAME, description=f"<script>window.__xss=1</script>{NAME}",
              labels=[NAME]),
        event("deleted", "crm-2041"),
        event("updated", "crm-1077", at="2026-11-22T11:30:00Z", labels=["gold"]),
    )  # fmt: skip
    deliver(event("erasure_requested", "crm-3310", purchase_ids=[999]))
    work(settings, redis)  # an unknown purchase: a GraphQL error

    # Log in (HTTP Basic, credentials in the URL) and find the failures on the overview.
    parts = urlsplit(dashboard)
    browser.get(f"http://{DASHBOARD_USER}:{DASHBOARD_PASSWORD}@{parts.netloc}/dashboard/")
    assert browser.find_element(By.ID, "failed").text == "4"

    navigate(browser, browser.find_element(By.LINK_TEXT, "Failed jobs"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#failed-jobs tbody tr")
    assert len(rows) == 4
    row = next(row for row in rows if EXTERNAL_ID in row.text)
    assert "api_rejected" in row.text and "HTTP 401" in row.text
    # The hostile external id is shown as text; the name, description and labels are not shown at all.
    assert row.find_element(By.CSS_SELECTOR, ".external-id").text == EXTERNAL_ID
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main svg, main script") == []
    assert "alert(1)" not in browser.page_source
    assert_nothing_ran(browser)
    screenshot = (
        ROOT / "docs" / "dashboard-failed.png"
        if os.environ.get("UPDATE_SCREENSHOT")
        else tmp_path / "shot.png"
    )
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    # Replay it, let a worker run it, and see it applied.
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    navigate(browser, browser.find_element(By.ID, "replay-selected"))
    assert browser.find_element(By.ID, "notice-replayed").text == "1 replayed"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#failed-jobs tbody tr")) == 3
    work(settings, redis)
    navigate(browser, browser.find_element(By.LINK_TEXT, "Replays"))
    (replayed,) = browser.find_elements(By.CSS_SELECTOR, "#replays tbody tr")
    assert EXTERNAL_ID in replayed.text
    assert replayed.find_element(By.CSS_SELECTOR, ".status").text == "finished"
    assert replayed.find_element(By.CSS_SELECTOR, ".outcome").text == "applied"
    assert_nothing_ran(browser)


def seed_two_hours_of_activity(redis: Redis) -> dict[str, int]:
    """Per-minute counters as the intake and the workers would have left them over two hours (a busy
    spell, a burst of retries while the API was down), written to the keys they write; their totals."""
    now = current_minute()
    totals = dict.fromkeys(("accepted", "applied", "stale", "retried", "failed"), 0)
    with redis.pipeline(transaction=False) as pipe:
        for ago in range(1, 120):
            accepted = 20 + (ago * 7) % 13 + (25 if 40 <= ago <= 55 else 0)
            retried = 9 if 70 <= ago <= 76 else ago % 11 == 0
            counts = {"accepted": accepted, "applied": accepted * 6 // 10, "stale": accepted * 3 // 10,
                      "retried": int(retried), "failed": int(ago == 73)}  # fmt: skip
            for name, count in counts.items():
                key = (
                    minute_counter_key("accepted", now - ago)
                    if name == "accepted"
                    else job_minute_counter_key("succeeded" if name == "applied" else name, now - ago)
                )
                pipe.set(key, count, ex=3600 * 3)
                totals[name] += count
        pipe.execute()
    return totals


def test_the_overview_chart_and_a_customers_page_render_without_script(
    browser: webdriver.Chrome,
    dashboard: str,
    deliver: Deliver,
    settings: Settings,
    redis: Redis,
    tmp_path: Path,
) -> None:
    totals = seed_two_hours_of_activity(redis)
    deliver(event("created", EXTERNAL_ID, name=NAME), webhook_id="msg_first")
    deliver(event("updated", EXTERNAL_ID, at="2026-11-22T11:00:00Z", labels=[NAME]), webhook_id="msg_second")
    work(settings, redis)
    totals["accepted"] += 2
    totals["applied"] += 2

    parts = urlsplit(dashboard)
    browser.get(f"http://{DASHBOARD_USER}:{DASHBOARD_PASSWORD}@{parts.netloc}/dashboard/")
    chart = browser.find_element(By.ID, "activity-chart")
    assert chart.tag_name == "svg" and chart.size["width"] > 600 and chart.size["height"] > 100
    lines = chart.find_elements(By.CSS_SELECTOR, "polyline.series")
    assert {
        line.get_attribute("data-series"): int(line.get_attribute("data-total") or -1) for line in lines
    } == totals
    assert all(len((line.get_attribute("points") or "").split()) == 120 for line in lines)
    # The stylesheet colours each series (an inline style would be refused by the CSP).
    strokes = {line.value_of_css_property("stroke") for line in lines}
    assert len(strokes) == 5 and "none" not in strokes
    legend = browser.find_element(By.ID, "legend-failed").text
    assert legend == f"failed {totals['failed']}"
    assert browser.find_elements(By.CSS_SELECTOR, "script") == []
    screenshot = (
        ROOT / "docs" / "dashboard.png" if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "shot.png"
    )
    assert browser.save_screenshot(str(screenshot))

    # One customer: found by its external id, ledger and jobs shown, values never.
    navigate(browser, browser.find_element(By.LINK_TEXT, "Customer"))
    browser.find_element(By.NAME, "external_id").send_keys(EXTERNAL_ID)
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert browser.find_element(By.CSS_SELECTOR, ".summary .external-id").text == EXTERNAL_ID
    assert "msg_second" in browser.find_element(By.ID, "ledger-labels").text
    assert "msg_first" in browser.find_element(By.ID, "ledger-name").text
    outcomes = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#customer-jobs .outcome")]
    assert outcomes == ["coalesced", "applied"]  # the update rode in the create's write, queued with it
    assert NAME not in browser.page_source and "alert(1)" not in browser.page_source
    assert_nothing_ran(browser)
    if os.environ.get("UPDATE_SCREENSHOT"):
        assert browser.save_screenshot(str(ROOT / "docs" / "dashboard-customer.png"))
