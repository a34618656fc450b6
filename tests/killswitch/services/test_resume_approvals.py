"""Resuming is a decision: the matrix of one and two approvals, through the API and the
CLI, on whichever database the suite runs on (SQLite, PostgreSQL in CI)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from rest_framework.test import APIClient

from killswitch import services
from killswitch.models import Event, ResumeRequest, Scope
from killswitch.runtime import clock
from killswitch.services.tokens import issue_token

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/risk/kill-switch"


@pytest.fixture
def second_officer(django_user_model):
    user = django_user_model.objects.create_user(username="otto_officer", password="otto_officer-pass")
    user.groups.add(Group.objects.get(name="risk_officer"))
    return user


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(username=user.username).key}")
    return client


def halted(trader, scope="global"):
    services.activate(scope=scope, level="halt", reason="crash", actor=trader, source="api")
    clock.advance(minutes=61)


def level(scope="global"):
    kind, _, key = scope.partition(":")
    return Scope.objects.get(kind=kind, key=key).level


def test_one_approval_is_the_default_and_the_resume_says_what_is_open(trader, risk_officer):
    halted(trader)
    response = api(risk_officer).post(URL, {"action": "deactivate"}, format="json")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "kill_switch_deactivated"
    assert body["deactivated_at"].endswith("Z") and level() == "running"
    assert {"processes", "broker", "runs"} <= set(body["open"])


def test_two_officers_resume_and_the_event_names_both(trader, risk_officer, second_officer, set_policy):
    set_policy(resume_approvals=2)
    halted(trader)
    first = api(risk_officer).post(URL, {"action": "deactivate", "reason": "fixed"}, format="json")
    body = first.json()
    assert first.status_code == 202 and body["status"] == "resume_requested"
    assert body["requested_by"] == "rita_risk" and body["expires_at"].endswith("Z") and "open" in body
    assert level() == "halt"
    requested = Event.objects.get(action="resume_request")
    assert "requested by rita_risk" in requested.detail
    second = api(second_officer).post(URL, {"action": "deactivate"}, format="json")
    assert second.status_code == 200 and second.json()["status"] == "kill_switch_deactivated"
    assert level() == "running"
    resumed = Event.objects.get(action="deactivate", outcome="applied")
    assert resumed.actor == "otto_officer" and f"request #{body['request']} of rita_risk" in resumed.detail
    assert ResumeRequest.objects.get().state == "approved"


def test_the_requester_cannot_approve_their_own_request(trader, risk_officer, set_policy):
    set_policy(resume_approvals=2)
    halted(trader)
    request = api(risk_officer).post(URL, {"action": "deactivate"}, format="json").json()["request"]
    again = api(risk_officer).post(URL, {"action": "deactivate"}, format="json")
    assert again.status_code == 409 and "a different risk officer must approve" in again.json()["error"]
    by_number = api(risk_officer).post(URL, {"action": "approve", "request": request}, format="json")
    assert by_number.status_code == 409
    assert level() == "halt"
    assert Event.objects.filter(action="refused", actor="rita_risk").count() == 2


def test_a_trader_can_neither_request_nor_approve(trader, risk_officer, set_policy):
    set_policy(resume_approvals=2)
    halted(trader)
    request = api(risk_officer).post(URL, {"action": "deactivate"}, format="json").json()["request"]
    for body in ({"action": "deactivate"}, {"action": "approve", "request": request}):
        response = api(trader).post(URL, body, format="json")
        assert response.status_code == 403
    assert level() == "halt" and Event.objects.filter(action="refused", actor="tom_trader").count() == 2


def test_an_expired_request_cannot_be_approved_and_a_new_deactivate_asks_again(
        trader, risk_officer, second_officer, set_policy):
    set_policy(resume_approvals=2, resume_request_minutes=15)
    halted(trader)
    request = api(risk_officer).post(URL, {"action": "deactivate"}, format="json").json()["request"]
    clock.advance(minutes=16)
    late = api(second_officer).post(URL, {"action": "approve", "request": request}, format="json")
    assert late.status_code == 409 and "expired" in late.json()["error"]
    assert level() == "halt"
    fresh = api(second_officer).post(URL, {"action": "deactivate"}, format="json")
    assert fresh.status_code == 202 and fresh.json()["requested_by"] == "otto_officer"


def test_an_approval_for_another_scope_is_refused(trader, risk_officer, second_officer, set_policy):
    set_policy(resume_approvals=2)
    halted(trader, "account:DU1")
    services.activate(scope="account:DU2", level="halt", reason="crash", actor=trader, source="api")
    clock.advance(minutes=61)
    request = api(risk_officer).post(URL, {"action": "deactivate", "scope": "account:DU1"}, format="json").json()
    wrong = api(second_officer).post(URL, {"action": "approve", "request": request["request"], "scope": "account:DU2"},
                                     format="json")
    assert wrong.status_code == 409 and "is for account:DU1, not account:DU2" in wrong.json()["error"]
    assert level("account:DU1") == level("account:DU2") == "halt"


def test_a_request_is_withdrawn_when_the_scope_changes(trader, risk_officer, second_officer, set_policy):
    set_policy(resume_approvals=2, resume_request_minutes=180)
    halted(trader)
    api(risk_officer).post(URL, {"action": "deactivate"}, format="json")
    services.activate(scope="global", level="kill", reason="worse", actor=trader, source="api")
    clock.advance(minutes=61)
    response = api(second_officer).post(URL, {"action": "deactivate"}, format="json")
    assert response.status_code == 202  # a new request: the old one was for the halt
    assert ResumeRequest.objects.filter(state="withdrawn").count() == 1


def test_two_approvals_at_once_resume_once(trader, risk_officer, second_officer, django_user_model, set_policy):
    set_policy(resume_approvals=2)
    third = django_user_model.objects.create_user(username="tess_third")
    third.groups.add(Group.objects.get(name="risk_officer"))
    halted(trader)
    api(risk_officer).post(URL, {"action": "deactivate"}, format="json")
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def approve(user) -> None:
        client = api(user)
        barrier.wait()
        answers.append(client.post(URL, {"action": "deactivate"}, format="json").status_code)

    threads = [threading.Thread(target=approve, args=(u,)) for u in (second_officer, third)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [200, 200]  # one resumed, the other found it running (a no-op)
    assert Event.objects.filter(action="deactivate", outcome="applied").count() == 1
    assert level() == "running"


def test_the_cli_requests_and_approves(trader, risk_officer, second_officer, set_policy, capsys):
    set_policy(resume_approvals=2)
    halted(trader)
    call_command("killswitch", "deactivate", "--user", "rita_risk", "--reason", "fixed")
    assert "waiting for a second risk officer" in capsys.readouterr().out
    call_command("killswitch", "requests")
    listing = capsys.readouterr().out
    request = ResumeRequest.objects.get()
    assert "REQUEST" in listing and "rita_risk" in listing and str(request.pk) in listing
    call_command("killswitch", "approve", "--request", str(request.pk), "--user", "otto_officer")
    assert "global is now running" in capsys.readouterr().out
    assert level() == "running"


def test_clean_runs_are_required_when_the_policy_says_so(trader, risk_officer, set_policy):
    from brokers.models import BrokerRun

    set_policy(resume_requires_clean_runs=True)
    halted(trader, "account:DU111111")
    run = BrokerRun.objects.filter(account="DU111111").first()
    if run is None:
        run = BrokerRun.objects.create(kind="switch", account="DU111111", scope_kind="account",
                                       scope_key="DU111111", level="halt", broker="paper",
                                       created_at=clock.now() - timedelta(minutes=60),
                                       updated_at=clock.now())
    BrokerRun.objects.filter(pk=run.pk).update(state="failed", error="not flat")
    refused = api(risk_officer).post(URL, {"action": "deactivate", "scope": "account:DU111111"}, format="json")
    assert refused.status_code == 409 and f"run {run.pk}" in refused.json()["error"]
    assert level("account:DU111111") == "halt"
