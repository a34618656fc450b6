"""Bad input: each a 400 in the one error shape, naming the field and what is allowed,
with no state change and one audit event."""

from __future__ import annotations

import json

import pytest

from killswitch.models import Event, Scope

from .conftest import HISTORY_URL, URL

pytestmark = pytest.mark.django_db

CASES = {
    "malformed json": ('{"action": "activate", "reason": ', None, "not valid JSON"),
    "body is a list": ('["activate"]', None, "Expected a dictionary"),
    "unknown action": ({"action": "explode", "reason": "x"}, "action", 'expected "activate", "deactivate" or "approve"'),
    "missing action": ({"reason": "x"}, "action", "required"),
    "unknown level": ({"action": "activate", "reason": "x", "level": "nuke"}, "level",
                      "expected one of pause, halt, kill"),
    "running is not an activation level": ({"action": "activate", "reason": "x", "level": "running"},
                                           "level", "expected one of pause, halt, kill"),
    "unknown scope kind": ({"action": "activate", "reason": "x", "scope": "planet:mars"}, "scope",
                           "expected one of global, account, strategy, symbol"),
    "scope without kind": ({"action": "activate", "reason": "x", "scope": "desk"}, "scope",
                           "'account:ID'"),
    "scope without key": ({"action": "activate", "reason": "x", "scope": "account:"}, "scope", "needs a key"),
    "missing reason": ({"action": "activate"}, "reason", "reason is required"),
    "blank reason": ({"action": "activate", "reason": "   "}, "reason", "reason is required"),
    "oversize reason": ({"action": "activate", "reason": "x" * 501}, "reason",
                        "501 characters long; at most 500"),
    "reason with control characters": ({"action": "activate", "reason": "a\x07b"}, "reason",
                                       "control characters"),
    "reason with a NUL": ({"action": "activate", "reason": "a\x00b"}, "reason", "Null characters are not allowed"),
    "reason is a number": ({"action": "activate", "reason": 42}, "reason", "Must be a string"),
    "action is a boolean": ({"action": True, "reason": "x"}, "action", "not a valid action"),
    "level is a list": ({"action": "activate", "reason": "x", "level": ["halt"]}, "level", "not a valid level"),
    "scope is null": ({"action": "activate", "reason": "x", "scope": None}, "scope", "may not be null"),
    "unknown field": ({"action": "activate", "reasn": "typo"}, "reasn", "allowed fields are action, reason"),
    "level with deactivate": ({"action": "deactivate", "level": "halt"}, "level", "only to action activate"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_400_naming_the_field_with_no_state_change(name, trader, client_for):
    body, field, words = CASES[name]
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client_for(trader).post(URL, raw, content_type="application/json")
    out = response.json()
    assert response.status_code == 400, out
    assert out["field"] == field
    assert out["code"] == ("malformed_json" if name == "malformed json" else "invalid")
    assert words in out["error"]
    assert Scope.objects.get(kind="global").level == "running"
    assert not Scope.objects.exclude(kind="global").exists()
    event = Event.objects.get()
    assert (event.action, event.outcome, event.actor, event.client_address) == (
        "refused", "refused", "tom_trader", "127.0.0.1")
    assert words in event.detail


def test_form_encoded_body_is_415_with_how_to_send_json(trader, client_for):
    response = client_for(trader).post(URL, "action=activate&reason=x",
                                       content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json()["error"]
    assert Scope.objects.get(kind="global").level == "running"
    assert Event.objects.get().action == "refused"


@pytest.mark.parametrize("query, field, words", [
    ("action=explode", "action", "not a valid choice"),
    ("source=fax", "source", "not a valid choice"),
    ("scope=planet:mars", "scope", "unknown scope kind"),
    ("since=yesterday", "since", "Datetime has wrong format"),
    ("limit=0", "limit", "greater than or equal to 1"),
    ("limit=501", "limit", "less than or equal to 500"),
    ("before=abc", "before", "valid integer"),
    ("before=99999999999999999999999", "before", "less than or equal to"),
    ("actor=a%07b", "actor", "control characters"),
    ("actor=a%00b", "actor", "Null characters are not allowed"),
])
def test_bad_history_filters_are_400_naming_the_parameter(query, field, words, viewer, client_for):
    response = client_for(viewer).get(f"{HISTORY_URL}?{query}")
    out = response.json()
    assert response.status_code == 400, out
    assert (out["code"], out["field"]) == ("invalid", field)
    assert words in out["error"]
