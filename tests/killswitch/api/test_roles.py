"""The role matrix: anonymous, no role, viewer, trader, risk officer, superuser x every
endpoint x every action. Each refusal is answered in the one error shape and leaves
exactly one audit event naming the actor (when known), the client address and why."""

from __future__ import annotations

import pytest

from killswitch import services
from killswitch.models import Event, Scope

from .conftest import HISTORY_URL, URL

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "nobody", "viewer", "trader", "risk_officer", "superuser"]
USERNAMES = {"nobody": "nina_nobody", "viewer": "vera_viewer", "trader": "tom_trader",
             "risk_officer": "rita_risk", "superuser": "sam_super"}

# operation -> (method, url, body, global level before, level after when allowed)
OPERATIONS = {
    "read status": ("get", URL, None, "running", "running"),
    "read history": ("get", HISTORY_URL, None, "running", "running"),
    "activate": ("post", URL, {"action": "activate", "reason": "Market crash"}, "running", "halt"),
    "activate kill": ("post", URL, {"action": "activate", "reason": "Runaway orders", "level": "kill"},
                      "halt", "kill"),
    "lower halt to pause": ("post", URL, {"action": "activate", "reason": "calmer", "level": "pause"},
                            "halt", "pause"),
    "deactivate": ("post", URL, {"action": "deactivate", "reason": "All clear"}, "halt", "running"),
}

ALLOWED = {
    "read status": {"viewer", "trader", "risk_officer", "superuser"},
    "read history": {"viewer", "trader", "risk_officer", "superuser"},
    "activate": {"trader", "risk_officer", "superuser"},
    "activate kill": {"trader", "risk_officer", "superuser"},
    "lower halt to pause": {"risk_officer", "superuser"},
    "deactivate": {"risk_officer", "superuser"},
}

# What the refusal message says, by (role kind, operation).
def expected_refusal(role: str, operation: str) -> tuple[int, str, str]:
    if role == "anonymous":
        return 401, "not_authenticated", "Authentication required"
    if operation.startswith("read"):
        return 403, "forbidden", "viewer role"
    if operation.startswith("activate") or (operation.startswith("lower") and role != "trader"):
        return 403, "forbidden", "trader role is required"
    return 403, "forbidden", "risk_officer role"


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(role, operation, request, client_for, set_policy, superuser):
    set_policy(cooldown_minutes=0)  # the matrix is about roles; cooldowns are tested apart
    method, url, body, before, after = OPERATIONS[operation]
    if before != "running":
        services.activate(scope="global", level=before, reason="setup", actor="cli:test", source="cli")
    user = None if role == "anonymous" else request.getfixturevalue(role) if role != "superuser" else superuser
    client = client_for(user)
    last_seq = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0

    response = getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)

    new_events = list(Event.objects.filter(seq__gt=last_seq).order_by("seq"))
    level = Scope.objects.get(kind="global").level
    if role in ALLOWED[operation]:
        assert response.status_code == 200, response.json()
        assert level == after
        if method == "post":
            assert [(e.action, e.outcome, e.actor) for e in new_events] == [
                ("activate" if body["action"] == "activate" else "deactivate", "applied", USERNAMES[role])]
            assert new_events[0].client_address == "127.0.0.1"
        else:
            assert new_events == []
        return
    status, code, words = expected_refusal(role, operation)
    body_out = response.json()
    assert response.status_code == status, body_out
    assert (body_out["code"], body_out["field"]) == (code, None)
    assert words in body_out["error"]
    assert level == before  # no state change
    assert len(new_events) == 1, [str(e) for e in new_events]
    event = new_events[0]
    assert (event.action, event.outcome, event.source) == ("refused", "refused", "api")
    assert event.actor == ("anonymous" if role == "anonymous" else USERNAMES[role])
    assert event.client_address == "127.0.0.1"
    assert words in event.detail
    attempted = "read status" if operation == "read status" else "read history" \
        if operation == "read history" else body["action"]
    assert event.detail.startswith(f"{attempted}: ")
    if body:
        assert event.reason == body["reason"]


def test_session_login_with_csrf_may_act_and_without_csrf_is_refused_and_audited(risk_officer):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(risk_officer)
    refused = client.post(URL, {"action": "activate", "reason": "Market crash"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    event = Event.objects.get()
    assert (event.action, event.actor, event.client_address) == ("refused", "rita_risk", "127.0.0.1")
    assert "CSRF" in event.detail
    assert Scope.objects.get(kind="global").level == "running"

    client.get("/admin/login/")  # sets the csrftoken cookie, as the dashboard page does
    token = client.cookies["csrftoken"].value
    accepted = client.post(URL, {"action": "activate", "reason": "Market crash"}, format="json",
                           HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200, accepted.json()
    assert Scope.objects.get(kind="global").level == "halt"
    assert Event.objects.order_by("-seq").first().actor == "rita_risk"
    # Reads by session need no CSRF token.
    assert client.get(URL).json()["level"] == "halt"
