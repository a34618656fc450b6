"""Oversized bodies and deeply nested JSON answer 413/400 in the API's error shape,
change nothing, and are audited; never a 500."""

from __future__ import annotations

import json

import pytest

from killswitch.models import Event, Scope

from .conftest import URL

pytestmark = pytest.mark.django_db


def test_a_3_mb_body_answers_413(client_for, trader):
    body = json.dumps({"action": "activate", "reason": "x" * 3_000_000})
    response = client_for(trader).generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 413, response.content[:200]
    assert response.json()["code"] == "payload_too_large" and "larger than" in response.json()["error"]
    assert Scope.objects.get(kind="global").level == "running"
    assert Event.objects.filter(action="refused").exists()


@pytest.mark.parametrize("depth", [50, 100_000])
def test_deeply_nested_json_answers_400(client_for, trader, depth):
    body = '{"action": "activate", "reason": "r", "scope": ' + "[" * depth + "]" * depth + "}"
    response = client_for(trader).generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json()["code"] == "malformed_json" and "nested too deeply" in response.json()["error"]
    assert Scope.objects.get(kind="global").level == "running"
