"""Two approvals on the Risk page (kill_switch.resume_approvals: 2), in a real browser
against a daphne running that policy: one risk officer asks, sees what is still open and
cannot approve their own request; a second one sees the request with who asked and
when, approves it behind the typed RESUME, and both pages follow live."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from django.contrib.auth.models import Group

from killswitch import services
from killswitch.models import Event, ResumeRequest, Scope
from tests.killswitch.web.conftest import start_daphne
from tests.killswitch.web.test_browser import global_row, login
from tests.stack import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def two_approvals_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    policy = yaml.safe_load((ROOT / "config" / "risk_limits.yaml").read_text())
    policy["kill_switch"].update(resume_approvals=2, cooldown_minutes=0)
    path = tmp_path_factory.mktemp("policy") / "risk_limits.yaml"
    path.write_text(yaml.safe_dump(policy))
    yield from start_daphne(django_db_blocker, tmp_path_factory, RISK_LIMITS_PATH=str(path))


@pytest.fixture
def second_officer(django_user_model):
    user = django_user_model.objects.create_user(username="otto_officer", password="otto_officer-pass",
                                                 is_staff=True)
    user.groups.add(Group.objects.get(name="risk_officer"))
    return user


def resume_in_dialog(page, scope: str = "global") -> None:
    page.click(f'button[data-resume="{scope}"], button[data-approve="{scope}"]')
    page.wait_for_selector("#resume-modal:not([hidden])")
    page.wait_for_selector("#resume-open li")  # what is still open, before the confirmation
    page.fill("#resume-confirm", "RESUME")
    page.click("#resume-submit")


def test_one_officer_asks_a_second_approves_and_the_page_shows_what_is_open(
        browser, two_approvals_server, risk_officer, second_officer, trader, set_policy, screenshot):
    set_policy(cooldown_minutes=0, resume_approvals=2)  # this process activates under the same policy
    services.activate(scope="global", level="halt", reason="Runaway strategy", actor=trader, source="api")
    asker = login(browser, two_approvals_server, risk_officer)
    approver = login(browser, two_approvals_server, second_officer)
    asker.wait_for_selector(global_row("halt"))

    asker.click('button[data-resume="global"]')
    asker.wait_for_selector("#resume-modal:not([hidden])")
    assert "Two approvals are required" in asker.inner_text("#resume-request-note")
    asker.wait_for_selector("#resume-open li")
    assert "trading process(es) connected" in asker.inner_text("#resume-open")
    asker.fill("#resume-confirm", "RESUME")
    asker.click("#resume-submit")
    asker.wait_for_selector("#resume-modal", state="hidden")
    assert "requested by rita_risk" in asker.inner_text("#risk-flash")
    assert "Still open in global" in asker.inner_text("#risk-flash")
    asker.wait_for_selector("#requests-table tr[data-request] >> text=waiting for a second risk officer")
    screenshot(asker, "1-asked")
    request = ResumeRequest.objects.get()
    assert Scope.objects.get(kind="global").level == "halt"

    # The requester's own approval is refused by the server, shown in the dialog, audited.
    asker.click('button[data-resume="global"]')
    assert "You asked for this resume" in asker.inner_text("#resume-request-note")
    asker.wait_for_selector("#resume-open li")
    asker.fill("#resume-confirm", "RESUME")
    asker.click("#resume-submit")
    asker.wait_for_selector("#resume-error:not([hidden])")
    assert "a different risk officer must approve it" in asker.inner_text("#resume-error")
    asker.click('#resume-modal [data-close="resume-modal"]')
    assert Event.objects.filter(action="refused", actor="rita_risk").count() == 1

    # The second officer sees the request live, with who asked and when, and approves it.
    row = f'#requests-table tr[data-request="{request.pk}"]'
    approver.wait_for_selector(row)
    assert "rita_risk" in approver.inner_text(row)
    screenshot(approver, "2-request-waiting")
    approver.click(f'{row} button[data-approve="global"]')
    approver.wait_for_selector("#resume-modal:not([hidden])")
    assert approver.inner_text("#resume-modal-title") == "Approve Resume"
    assert f"request #{request.pk} of rita_risk" in approver.inner_text("#resume-request-note")
    approver.wait_for_selector("#resume-open li")
    approver.fill("#resume-confirm", "resume")  # lowercase: not accepted
    assert approver.is_disabled("#resume-submit")
    approver.fill("#resume-confirm", "RESUME")
    approver.click("#resume-submit")
    approver.wait_for_selector(global_row("running"))
    asker.wait_for_selector(global_row("running"))
    asker.wait_for_selector("#resume-requests >> text=No resume request is waiting")
    screenshot(approver, "3-approved")

    resumed = Event.objects.get(action="deactivate", outcome="applied")
    assert resumed.actor == "otto_officer" and "rita_risk" in resumed.detail
    assert ResumeRequest.objects.get().state == "approved"
    asker.context.close()
    approver.context.close()
