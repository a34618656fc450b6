"""The Risk page in a real browser (Debian chromium, headless) against a real daphne:
typed KILL, live updates on a second page, resume refused during the cooldown, and a
viewer who sees no buttons and whose direct POST is refused.

Screenshots of each state go to artifacts/screenshots/.
"""

from __future__ import annotations

import pytest

from killswitch import services
from killswitch.models import Event, Scope

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(browser, base_url: str, user):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/?next=/admin/risk/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"{user.username}-pass")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/risk/")
    page.wait_for_function("window.riskPage && window.riskPage.connected")  # the WebSocket is open
    return page


def global_row(level: str) -> str:
    return f'tr[data-scope="global"][data-level="{level}"]'


def test_risk_officer_activates_by_typing_kill_and_a_second_page_follows_live(
        browser, daphne_server, risk_officer, viewer, screenshot):
    officer = login(browser, daphne_server, risk_officer)
    watcher = login(browser, daphne_server, viewer)
    officer.wait_for_selector(global_row("running"))
    screenshot(officer, "1-running")

    officer.click("#kill-button")
    officer.wait_for_selector("#kill-modal:not([hidden])")
    officer.select_option("#kill-level", "kill")
    officer.fill("#kill-reason", "Market crash detected, VIX spike to 47")
    officer.fill("#kill-confirm", "kill")  # lowercase: not accepted
    assert officer.is_disabled("#kill-submit")
    officer.fill("#kill-confirm", "KILL")
    assert officer.is_enabled("#kill-submit")
    screenshot(officer, "2-kill-modal")
    officer.click("#kill-submit")

    officer.wait_for_selector(global_row("kill"))
    officer.wait_for_selector("#kill-modal", state="hidden")
    # The second page changes without a reload: same document, new row.
    watcher_marker = watcher.evaluate("window.__loadedOnce = 'still here'")
    watcher.wait_for_selector(global_row("kill"))
    assert watcher.evaluate("window.__loadedOnce") == "still here" and watcher_marker == "still here"
    assert "Market crash detected" in watcher.inner_text(global_row("kill") + " td.reason")
    assert watcher.inner_text("#risk-global-level") == "KILL"
    watcher.wait_for_selector('#history-body tr.action-activate')
    screenshot(officer, "3-killed")
    screenshot(watcher, "4-second-page-live")

    scope = Scope.objects.get(kind="global")
    assert (scope.level, scope.actor, scope.source) == ("kill", "rita_risk", "admin")
    assert Event.objects.get(action="activate").client_address == "127.0.0.1"
    officer.context.close()
    watcher.context.close()


def test_resume_during_cooldown_is_disabled_and_a_forced_request_gets_the_seeds_message(
        browser, daphne_server, risk_officer, screenshot):
    services.activate(scope="global", level="halt", reason="Flash crash", actor=risk_officer, source="api")
    page = login(browser, daphne_server, risk_officer)
    page.wait_for_selector(global_row("halt"))
    button = page.locator("#resume-button")
    assert button.is_disabled()
    first = button.inner_text()
    assert first.startswith("Resume Trading (cooldown 59:") or first == "Resume Trading (cooldown 1:00:00)"
    assert button.get_attribute("title").startswith(
        "Kill switch cooldown active. 60 minutes remaining (cooldown: 60 minutes).")
    page.wait_for_function(f"document.getElementById('resume-button').innerText !== {first!r}")  # it counts down
    assert page.locator('button[data-resume="global"]').is_disabled()
    screenshot(page, "1-cooldown-countdown")

    # Sent anyway (by hand, past the disabled button): the server refuses with the seed's
    # message, changes nothing and records the violation, which the page then shows.
    answer = page.evaluate("""async () => {
        const csrf = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const body = new URLSearchParams({scope: 'global', confirm: 'RESUME'});
        const r = await fetch('/admin/risk/resume/', {method: 'POST', body, credentials: 'same-origin',
            headers: {'X-CSRFToken': csrf, 'Accept': 'application/json'}});
        return {status: r.status, body: await r.json()};
    }""")
    assert answer["status"] == 409
    assert answer["body"]["error"] == "Kill switch cooldown active. 60 minutes remaining (cooldown: 60 minutes)."
    assert Scope.objects.get(kind="global").level == "halt"
    assert Event.objects.filter(action="cooldown_violation", source="admin").count() == 1
    page.wait_for_selector("#history-body tr.action-cooldown_violation")  # the refusal is on the page too
    page.context.close()


def test_viewer_sees_no_buttons_and_a_direct_post_is_refused(browser, daphne_server, viewer, trader, screenshot):
    services.activate(scope="account:DU123", level="halt", reason="Broker glitch", actor=trader, source="api")
    page = login(browser, daphne_server, viewer)
    page.wait_for_selector('tr[data-scope="account:DU123"][data-level="halt"]')
    assert page.locator("#kill-button").count() == 0
    assert page.locator("#resume-button").count() == 0
    assert page.locator("button[data-resume]").count() == 0
    screenshot(page, "1-viewer")
    answer = page.evaluate("""async () => {
        const csrf = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const body = new URLSearchParams({scope: 'global', level: 'kill', reason: 'x', confirm: 'KILL'});
        const r = await fetch('/admin/risk/activate/', {method: 'POST', body, credentials: 'same-origin',
            headers: {'X-CSRFToken': csrf, 'Accept': 'application/json'}});
        return {status: r.status, body: await r.json()};
    }""")
    assert answer["status"] == 403
    assert "trader role is required" in answer["body"]["error"]
    assert Scope.objects.get(kind="global").level == "running"
    assert Event.objects.filter(action="refused", actor="vera_viewer", source="admin").count() == 1
    page.context.close()
