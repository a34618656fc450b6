"""The Risk page and the audit pages in a real browser (issue 14, items 4, 5 and 6):
each Resume counts down its own scope and is disabled during it; a no-op reads as
information and an unknown scope as a warning; the Kill dialog suggests only known
scopes; the event list fits 1366 px; the Risk page and the audit list work on a phone;
and no page loads anything from another host (every other request is blocked and none
may even be attempted), the API docs included."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from brokers.demo import seed_demo_data
from killswitch import services
from killswitch.models import Scope
from tests.conftest import wait_for
from tests.killswitch.web.test_browser import global_row, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCAL = {"127.0.0.1", "localhost"}


def test_each_resume_counts_down_its_own_scope_and_is_disabled_meanwhile(
        browser, daphne_server, risk_officer, set_policy):
    services.activate(scope="global", level="halt", reason="Flash crash", actor=risk_officer, source="api")
    set_policy(cooldown_minutes=0.1)  # this account's halt: a 6 s cooldown of its own
    services.activate(scope="account:DU111111", level="halt", reason="Runaway", actor=risk_officer, source="api")
    page = login(browser, daphne_server, risk_officer)
    account = page.locator('button[data-resume="account:DU111111"]')
    glob = page.locator('button[data-resume="global"]')
    assert account.is_disabled() and glob.is_disabled() and page.is_disabled("#resume-button")
    assert account.inner_text().startswith("Resume (cooldown 0:0")   # its own 6 s, not global's hour
    shown = glob.inner_text()  # read once: the countdown may tick from 1:00:00 to 59:59 between two reads
    assert shown.startswith("Resume (cooldown 59:") or shown.endswith("1:00:00)")
    top = page.inner_text("#resume-button")  # the top button resumes global and counts global down
    assert top.startswith("Resume Trading (cooldown 59:") or top == "Resume Trading (cooldown 1:00:00)"

    page.wait_for_function("!document.querySelector('button[data-resume=\"account:DU111111\"]').disabled",
                           timeout=15_000)
    assert account.inner_text() == "Resume" and glob.is_disabled() and page.is_disabled("#resume-button")
    account.click()
    page.wait_for_selector("#resume-modal:not([hidden])")
    assert page.input_value("#resume-scope") == "account:DU111111" and page.is_hidden("#resume-cooldown")
    page.select_option("#resume-scope", "global")  # the dialog follows the scope chosen
    page.fill("#resume-confirm", "RESUME")
    assert page.is_disabled("#resume-submit") and "cooldown" in page.inner_text("#resume-submit")
    assert page.inner_text("#resume-cooldown").startswith("Kill switch cooldown active. 60 minutes remaining")
    page.select_option("#resume-scope", "account:DU111111")
    assert page.is_enabled("#resume-submit")
    page.click("#resume-submit")
    page.wait_for_selector('tr[data-scope="account:DU111111"][data-level="running"]')
    assert page.get_attribute("#risk-flash", "data-kind") == "ok"
    assert Scope.objects.get(kind="account").level == "running" and Scope.objects.get(kind="global").level == "halt"
    page.context.close()


def kill(page, scope: str, level: str = "halt") -> None:
    page.click("#kill-button")
    page.wait_for_selector("#kill-modal:not([hidden])")
    page.fill("#kill-scope", scope)
    page.select_option("#kill-level", level)
    page.fill("#kill-reason", "browser test")
    page.fill("#kill-confirm", "KILL")
    page.click("#kill-submit")
    page.wait_for_selector("#kill-modal", state="hidden")


def test_a_no_op_is_information_an_unknown_scope_a_warning_and_only_known_scopes_are_suggested(
        browser, daphne_server, risk_officer, trader):
    seed_demo_data()
    services.activate(scope="account:DU123", level="halt", reason="an old typo", actor=trader, source="api")
    page = login(browser, daphne_server, risk_officer)
    options = page.eval_on_selector_all("#kill-scope-options option", "os => os.map(o => o.value)")
    assert options[:4] == ["global", "account:DRILL01", "account:DU111111", "account:DU222222"]
    assert "symbol:AAPL" in options and "account:DU123" not in options

    kill(page, "global")
    page.wait_for_selector(global_row("halt"))
    assert page.get_attribute("#risk-flash", "data-kind") == "ok"
    kill(page, "global")
    page.wait_for_function("document.getElementById('risk-flash').dataset.kind === 'info'")
    assert page.inner_text("#risk-flash") == "global is already at halt"

    kill(page, "account:X")
    page.wait_for_function("document.getElementById('risk-flash').dataset.kind === 'warning'")
    flash = page.inner_text("#risk-flash")
    assert flash.startswith("account:X is now halt (was running)")
    assert "is not an account of any configured broker" in flash and "closest match: account:" in flash
    page.wait_for_selector('tr[data-scope="account:X"][data-level="halt"]')  # applied all the same
    page.context.close()


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_the_event_list_fits_1366_px_with_times_to_the_second(browser, daphne_server, risk_officer, trader):
    for n in range(3):
        services.activate(scope=f"strategy:a-rather-long-strategy-name-{n}", level="halt",
                          reason="A reason long enough to need more than one line in the audit list " * 2,
                          actor=trader, source="api")
    page = login(browser, daphne_server, risk_officer)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{daphne_server}/admin/killswitch/event/")
    assert no_horizontal_overflow(page)
    width = page.evaluate("window.innerWidth")
    for column in ("created_at", "actor", "source", "short_reason"):
        right = page.evaluate(f"document.querySelector('#result_list td.field-{column}').getBoundingClientRect().right")
        assert right <= width, column
        visible = page.evaluate(f"""(() => {{ const cell = document.querySelector('#result_list td.field-{column}');
            const box = cell.closest('.results').getBoundingClientRect();
            return cell.getBoundingClientRect().right <= box.right + 1; }})()""")
        assert visible, f"{column} is cut off"
    stamp = page.inner_text("#result_list td.field-created_at")
    assert stamp.endswith(" UTC") and len(stamp) == len("2026-12-01 06:20:13 UTC")
    page.context.close()


def test_the_risk_page_and_the_audit_list_work_on_a_phone(browser, daphne_server, risk_officer, trader):
    services.activate(scope="account:DU111111", level="halt", reason="Runaway orders on the phone",
                      actor=trader, source="api")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(f"{daphne_server}/admin/login/?next=/admin/risk/")
    page.fill("#id_username", risk_officer.username)
    page.fill("#id_password", f"{risk_officer.username}-pass")
    page.click("input[type=submit]")
    page.wait_for_function("window.riskPage && window.riskPage.connected")
    assert no_horizontal_overflow(page)
    for selector in ("#kill-button", 'button[data-resume="account:DU111111"]'):
        # Measured once drawn: the page redraws its rows when its socket connects, and an
        # element replaced between being found and being measured has no box (None).
        box = wait_for(lambda s=selector: page.locator(s).bounding_box())
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 30, selector
    assert "Runaway orders on the phone" in page.inner_text('tr[data-scope="account:DU111111"]')
    page.tap("#kill-button")
    page.wait_for_selector("#kill-modal:not([hidden])")
    assert page.locator("#kill-submit").bounding_box()["x"] + page.locator("#kill-submit").bounding_box()["width"] <= 390
    page.goto(f"{daphne_server}/admin/killswitch/event/")
    assert no_horizontal_overflow(page)
    assert page.locator("#result_list").is_visible()
    context.close()


def test_no_page_loads_anything_from_another_host(browser, daphne_server, risk_officer, trader):
    services.activate(scope="global", level="halt", reason="offline check", actor=trader, source="api")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    attempted: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL:
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(f"{daphne_server}/admin/login/?next=/admin/")
    page.fill("#id_username", risk_officer.username)
    page.fill("#id_password", f"{risk_officer.username}-pass")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    for path in ("/admin/", "/admin/risk/", "/admin/killswitch/event/", "/admin/killswitch/scope/",
                 "/api/docs/"):
        page.goto(f"{daphne_server}{path}")
        page.wait_for_load_state("networkidle")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)  # Swagger UI rendered, offline
    assert "Kill switch API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/risk/kill-switch']")
    assert attempted == []
    context.close()
