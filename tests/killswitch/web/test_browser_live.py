"""The Risk page stays live in a real browser against the real processes (issue 14, item 5):
daphne and the reconciler as separate processes on their own Redis (tests/stack.py), a
Celery worker started when the test wants the run to go on, a trading process on the
client library. Changes are made as a person would, over the API.

- open 30 s on a healthy server: never reconnects, the pings keep coming;
- then a new broker run (pending, then each order's outcome) and a process's
  acknowledgement appear without a reload;
- the server goes away: a banner over the state says so and the controls are marked
  possibly stale; back, the page catches up on what happened meanwhile; the reconciler
  stops: the page says no heartbeat comes.

Screenshots for the README: `UPDATE_SCREENSHOTS=1 make test PYTEST_ARGS=tests/killswitch/web/test_browser_live.py`
writes them into docs/screenshots/ (committed); otherwise into artifacts/screenshots/, so
that a test run leaves the committed pictures alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from killswitch_client import KillSwitch

from brokers.demo import seed_demo_data
from brokers.models import BrokerRun
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for
from tests.stack import ROOT, Stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

DOCS = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else ROOT / "artifacts" / "screenshots"


def docs_screenshot(page, name: str) -> Path:
    """A README screenshot: the page as it is now, 1280 px wide."""
    DOCS.mkdir(parents=True, exist_ok=True)
    path = DOCS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


@pytest.fixture
def stack(tmp_path) -> Stack:
    s = Stack(tmp_path).start("web", "reconciler")
    yield s
    s.stop()


def open_risk_page(browser, base_url: str, user):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/")  # `/` goes to the Risk page (through the login)
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"{user.username}-pass")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/risk/")
    page.wait_for_function("window.riskPage && window.riskPage.connected && window.riskPage.lastPingAt > 0")
    page.evaluate("window.__loadedOnce = 'still here'")
    return page


def api(stack: Stack, user, body: dict) -> dict:
    key = issue_token(username=user.username, name="browser test").key
    response = requests.post(f"{stack.base_url}/api/risk/kill-switch", json=body, timeout=10,
                             headers={"Authorization": f"Token {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def not_reloaded(page) -> bool:
    return page.evaluate("window.__loadedOnce") == "still here"


def test_open_30_s_without_a_reconnect_then_a_new_run_and_an_acknowledgement_arrive_live(
        browser, stack, risk_officer, trader):
    seed_demo_data()
    page = open_risk_page(browser, stack.base_url, risk_officer)
    page.wait_for_timeout(30_000)  # a healthy server for 30 s: the socket must simply stay open
    live = page.evaluate("({opens: riskPage.opens, closes: riskPage.closes, sincePing: Date.now() - riskPage.lastPingAt,"
                         " banner: document.getElementById('risk-banner').hidden})")
    assert (live["opens"], live["closes"], live["banner"]) == (1, 0, True), live
    assert live["sincePing"] < 3000  # the reconciler's pings keep coming

    process = KillSwitch(stack.redis.url, account="DU111111", strategy="momentum", name="momo-1",
                         exit_on_kill=False, backstop_interval=0.1)
    try:
        row = f'#clients tr[data-client="{process.identity.client_id}"]'
        page.wait_for_selector(row, timeout=15_000)  # the process joined: pushed, not reloaded

        result = api(stack, trader, {"action": "activate", "reason": "Runaway orders", "scope": "account:DU111111"})
        run = wait_for(lambda: BrokerRun.objects.filter(scope_kind="account", scope_key="DU111111").first())
        page.wait_for_selector(f'details.run[data-run="{run.pk}"][data-state="pending"]', timeout=10_000)
        page.wait_for_selector(f'{row} td.acked-version:text-is("{result["version"]}")', timeout=10_000)
        docs_screenshot(page, "risk-run-in-progress")  # halted account, its run waiting for a worker

        stack.start_process("worker")  # the run goes on: each order's outcome arrives as it happens
        done = page.wait_for_selector(f'details.run[data-run="{run.pk}"][data-state="completed"]', timeout=60_000)
        assert "3 actions (3 cancelled)" in done.inner_text()
        assert done.eval_on_selector_all("td.outcome", "cells => cells.map(c => c.textContent)") == ["cancelled"] * 3
        assert not_reloaded(page) and page.evaluate("riskPage.opens") == 1

        api(stack, trader, {"action": "activate", "reason": "Market crash detected, VIX spike to 47"})
        page.wait_for_selector('tr[data-scope="global"][data-level="halt"]')
        page.wait_for_function("document.getElementById('risk-global-level').innerText === 'HALT'")
        page.wait_for_timeout(1500)  # the global run's outcome, then the picture
        docs_screenshot(page, "risk-halted")
    finally:
        process.close()
    page.context.close()


def test_a_lost_server_is_said_loudly_and_the_page_catches_up_when_it_is_back(
        browser, stack, risk_officer):
    page = open_risk_page(browser, stack.base_url, risk_officer)
    assert page.is_hidden("#risk-banner")

    stack.kill("web", signal.SIGTERM)
    page.wait_for_selector('#risk-banner[data-kind="down"]', timeout=15_000)
    assert "Connection to the kill switch server lost" in page.inner_text("#risk-banner")
    assert "may be out of date" in page.inner_text("#risk-banner")
    assert page.evaluate("document.getElementById('risk-root').classList.contains('is-stale')")
    assert page.inner_text("#risk-live") == "reconnecting…"
    # The Kill Switch still works (a stop is never blocked), marked as acting on a stale picture.
    assert page.is_enabled("#kill-button")
    assert page.get_attribute("#kill-button", "data-stale") == "the state shown may be out of date"
    docs_screenshot(page, "risk-disconnected")

    # Meanwhile, somebody halts from the CLI on the server (the database and Redis are up).
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "manage.py", "killswitch", "activate", "--reason",
                    "halted while the dashboard was down"], cwd=ROOT, env=stack.env, check=True, timeout=60,
                   capture_output=True)
    stack.start_process("web")
    stack.wait_http()
    page.wait_for_selector('tr[data-scope="global"][data-level="halt"]', timeout=30_000)  # caught up
    page.wait_for_selector("#risk-banner", state="hidden", timeout=15_000)
    assert "halted while the dashboard was down" in page.inner_text('tr[data-scope="global"] td.reason')
    assert not_reloaded(page) and page.evaluate("riskPage.opens") == 2
    assert not page.evaluate("document.getElementById('risk-root').classList.contains('is-stale')")
    assert page.get_attribute("#kill-button", "data-stale") is None

    stack.kill("reconciler", signal.SIGTERM)  # the socket is up but the service's heartbeat stops
    page.wait_for_selector('#risk-banner[data-kind="quiet"]', timeout=20_000)
    assert "No heartbeat from the kill switch service" in page.inner_text("#risk-banner")
    stack.start_process("reconciler")
    page.wait_for_selector("#risk-banner", state="hidden", timeout=30_000)
    page.context.close()
