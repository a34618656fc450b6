"""The Risk page and the admin through Django's test client: who sees what, and the
server refusing (and auditing) what the page would not even offer."""

from __future__ import annotations

import pytest
from django.urls import reverse

from killswitch import services
from killswitch.models import Event, Scope

pytestmark = pytest.mark.django_db

RISK = "/admin/risk/"
JSON = {"HTTP_ACCEPT": "application/json"}


def global_level() -> str:
    return Scope.objects.get(kind="global", key="").level


def test_risk_page_is_at_admin_risk_and_shows_buttons_by_role(client, viewer, trader, risk_officer):
    assert reverse("admin:killswitch_risk") == RISK
    client.force_login(viewer)
    page = client.get(RISK).content.decode()
    assert 'id="scopes-table"' in page and 'id="view-history"' in page
    assert 'id="kill-button"' not in page and 'id="resume-button"' not in page
    client.force_login(trader)
    page = client.get(RISK).content.decode()
    assert 'id="kill-button"' in page and 'id="resume-button"' not in page
    client.force_login(risk_officer)
    page = client.get(RISK).content.decode()
    assert 'id="kill-button"' in page and 'id="resume-button"' in page


def test_staff_without_a_role_and_anonymous_cannot_see_the_risk_page(client, nobody):
    assert client.get(RISK).status_code == 302  # to the admin login
    client.force_login(nobody)
    assert client.get(RISK).status_code == 403
    assert client.get(reverse("admin:killswitch_risk_state")).status_code == 403


def test_viewer_direct_post_is_refused_by_the_service_and_audited(client, viewer):
    client.force_login(viewer)
    answer = client.post(reverse("admin:killswitch_risk_activate"),
                         {"scope": "global", "level": "halt", "reason": "try", "confirm": "KILL"},
                         REMOTE_ADDR="10.1.2.3", **JSON)
    assert answer.status_code == 403
    assert "trader role is required" in answer.json()["error"]
    assert global_level() == "running"
    event = Event.objects.get()
    assert (event.action, event.outcome, event.actor, event.source, event.client_address) == (
        "refused", "refused", "vera_viewer", "admin", "10.1.2.3")


@pytest.mark.parametrize("typed", ["", "kill", "Kill", "KILL ", " KILL", "KIL"])
def test_activation_without_the_exact_word_kill_is_refused_and_audited(client, risk_officer, typed):
    client.force_login(risk_officer)
    answer = client.post(reverse("admin:killswitch_risk_activate"),
                         {"scope": "global", "level": "halt", "reason": "crash", "confirm": typed}, **JSON)
    assert answer.status_code == 400
    assert answer.json()["error"] == "Type KILL (uppercase, exactly) to confirm."
    assert global_level() == "running"
    assert Event.objects.get().action == "refused"


def test_risk_officer_activates_with_kill_and_the_event_says_admin(client, risk_officer):
    client.force_login(risk_officer)
    answer = client.post(reverse("admin:killswitch_risk_activate"),
                         {"scope": "account:DU123", "level": "kill", "reason": "Runaway orders", "confirm": "KILL"},
                         REMOTE_ADDR="10.0.0.9", **JSON)
    assert answer.status_code == 200, answer.content
    assert answer.json()["level"] == "kill"
    assert Scope.objects.get(kind="account", key="DU123").level == "kill"
    event = Event.objects.get(action="activate")
    assert (event.source, event.actor, event.reason, event.client_address) == (
        "admin", "rita_risk", "Runaway orders", "10.0.0.9")


def test_resume_during_cooldown_shows_the_seeds_message_and_changes_nothing(client, risk_officer):
    services.activate(scope="global", level="halt", reason="crash", actor=risk_officer, source="api")
    client.force_login(risk_officer)
    answer = client.post(reverse("admin:killswitch_risk_resume"), {"scope": "global", "confirm": "RESUME"}, **JSON)
    assert answer.status_code == 409
    assert answer.json()["error"] == "Kill switch cooldown active. 60 minutes remaining (cooldown: 60 minutes)."
    assert global_level() == "halt"
    assert Event.objects.filter(action="cooldown_violation", source="admin").count() == 1


def test_resume_needs_the_word_resume_and_works_after_the_cooldown(client, risk_officer, set_policy):
    set_policy(cooldown_minutes=0)
    services.activate(scope="global", level="halt", reason="crash", actor=risk_officer, source="api")
    client.force_login(risk_officer)
    url = reverse("admin:killswitch_risk_resume")
    assert client.post(url, {"scope": "global", "confirm": "resume"}, **JSON).status_code == 400
    assert global_level() == "halt"
    answer = client.post(url, {"scope": "global", "confirm": "RESUME"}, **JSON)
    assert answer.status_code == 200 and answer.json()["level"] == "running"
    assert global_level() == "running"


def test_form_post_without_javascript_redirects_with_the_message(client, risk_officer):
    client.force_login(risk_officer)
    answer = client.post(reverse("admin:killswitch_risk_activate"),
                         {"scope": "global", "reason": "crash", "confirm": "KILL"}, follow=True)
    assert answer.redirect_chain[-1][0] == RISK
    assert "global is now halt (was running)" in answer.content.decode()


def test_state_json_has_scopes_history_and_permissions(client, viewer, trader):
    services.activate(scope="symbol:aapl", level="pause", reason="halted stock", actor=trader, source="cli")
    client.force_login(viewer)
    state = client.get(reverse("admin:killswitch_risk_state")).json()
    assert [s["scope"] for s in state["scopes"]] == ["global", "symbol:AAPL"]
    assert state["scopes"][1]["level"] == "pause" and state["scopes"][1]["cooldown_remaining_seconds"] > 0
    assert state["history"][0]["reason"] == "halted stock"
    assert state["permissions"] == {"activate": False, "deactivate": False}


def test_audit_events_are_read_only_even_for_a_superuser(client, superuser, trader):
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    event = Event.objects.get()
    client.force_login(superuser)
    changelist = client.get(reverse("admin:killswitch_event_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    assert client.get(reverse("admin:killswitch_event_add")).status_code == 403
    assert client.post(reverse("admin:killswitch_event_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    change = client.post(reverse("admin:killswitch_event_change", args=[event.pk]), {"reason": "edited"})
    assert change.status_code == 403
    assert Event.objects.get().reason == "crash"
    assert services.verify_audit_chain().ok


def test_history_is_filterable_in_the_admin(client, viewer, trader):
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    services.activate(scope="global", level="halt", reason="again", actor=trader, source="api")
    client.force_login(viewer)
    page = client.get(reverse("admin:killswitch_event_changelist"), {"outcome__exact": "noop"})
    assert page.status_code == 200
    assert "again" in page.content.decode() and "crash" not in page.content.decode()


def test_scope_activate_action_has_a_confirmation_page_then_applies(client, trader):
    services.activate(scope="account:DU1", level="pause", reason="x", actor=trader, source="api")
    scopes = list(Scope.objects.order_by("kind"))
    client.force_login(trader)
    url = reverse("admin:killswitch_scope_changelist")
    ids = [str(s.pk) for s in scopes]
    confirm = client.post(url, {"action": "activate_selected", "_selected_action": ids})
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "are you sure" in body.lower() and 'name="post" value="yes"' in body
    assert Scope.objects.get(kind="global").level == "running"  # nothing happened yet
    done = client.post(url, {"action": "activate_selected", "_selected_action": ids, "post": "yes",
                             "level": "halt", "reason": "desk-wide stop"}, follow=True)
    assert done.status_code == 200
    assert {s.label: s.level for s in Scope.objects.all()} == {"global": "halt", "account:DU1": "halt"}
    assert set(Event.objects.filter(action="activate", outcome="applied", source="admin")
               .values_list("reason", flat=True)) == {"desk-wide stop"}


def test_viewer_is_not_offered_the_activate_action_and_cannot_edit_scopes(client, viewer):
    client.force_login(viewer)
    url = reverse("admin:killswitch_scope_changelist")
    page = client.get(url)
    assert page.status_code == 200 and "activate_selected" not in page.content.decode()
    scope = Scope.objects.get(kind="global")
    client.post(url, {"action": "activate_selected", "_selected_action": [scope.pk], "post": "yes",
                      "level": "halt", "reason": "x"})
    assert Scope.objects.get(kind="global").level == "running"
    assert client.post(reverse("admin:killswitch_scope_change", args=[scope.pk]), {"level": "halt"}).status_code == 403


def test_behind_a_proxy_the_risk_page_records_the_forwarded_address_as_the_api_does(client, trader, settings):
    settings.NUM_PROXIES = 1
    client.force_login(trader)
    answer = client.post(reverse("admin:killswitch_risk_activate"),
                         {"scope": "global", "level": "halt", "reason": "crash", "confirm": "KILL"},
                         REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7", **JSON)
    assert answer.status_code == 200, answer.content
    assert Event.objects.get(action="activate").client_address == "203.0.113.7"
