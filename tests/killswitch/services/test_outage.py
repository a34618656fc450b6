"""The outage queue accepts only what the service queued: signed, valid items are written
into the audit log once; anything else goes to the dead-letter list with an alert and
never blocks the reconciler (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json

import pytest

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.services.authorization import Actor
from killswitch.services.outage import DEAD_LETTER, queue_without_database, sign

pytestmark = pytest.mark.django_db(transaction=True)

FORGED = {"id": "ab12", "kind": "activate", "scope": "global", "level": "kill", "reason": "x",
          "actor": "rita_risk", "actor_user_id": None, "source": "api", "client_address": "10.9.9.9",
          "detail": "", "requested_at": "2026-12-01T10:00:00+00:00"}


def _queue(redis_client, item) -> None:
    redis_client.rpush("killswitch:pending", item if isinstance(item, str) else json.dumps(item))


def test_a_queued_activation_is_applied_once_and_says_where_it_came_from(redis_client, trader):
    queue_without_database("activate", scope="account:DU1", level="halt", reason="DB was down",
                           actor=Actor.of(trader), source="api", client_address="10.0.0.7", escalate=True)
    assert services.apply_pending() == 1
    applied = Event.objects.get(action="activate", outcome="applied")
    assert (applied.actor, applied.source, applied.reason, applied.client_address) == (
        "tom_trader", "api", "DB was down", "10.0.0.7")
    marker = Event.objects.get(action="activate", outcome="noop")
    assert "from the outage queue: requested at" in marker.detail and "applied at" in marker.detail
    assert f"Applied as event #{applied.seq}" in marker.detail
    assert services.apply_pending() == 0 and redis_client.llen("killswitch:pending") == 0


def test_an_item_queued_twice_is_recorded_once(redis_client):
    pending = queue_without_database("refusal", scope="global", level="running", reason="r",
                                     actor=Actor.of("cli:ops"), source="cli", client_address=None)
    _queue(redis_client, pending)  # the crash-between-commit-and-removal case
    services.apply_pending()
    assert Event.objects.filter(action="refused", detail__contains=pending["id"]).count() == 1


@pytest.mark.parametrize(("item", "why"), [
    (FORGED, "signature does not verify"),  # pushed by a host with Redis write access
    ("not json at all", "not JSON"),
    ({**FORGED, "reason": "x" * 200_000}, "reason is not plain text"),
    ({**FORGED, "reason": "nul \x00 and escape \x1b[31m"}, "reason is not plain text"),
    ({**FORGED, "actor": "mallory", "actor_user_id": 987654}, "is not a user of this service"),
    ({**FORGED, "actor": "someone"}, "neither a user nor a cli: operator"),
    ({**FORGED, "level": "banana", "actor": "cli:x"}, "level 'banana'"),
])
def test_a_refused_item_is_dead_lettered_with_an_alert_and_changes_nothing(redis_client, item, why):
    if isinstance(item, dict) and why != "signature does not verify":
        item = {**item, "sig": sign(item)}  # even signed (a leaked key), invalid input is refused
    _queue(redis_client, item)
    services.apply_pending()
    alert = Event.objects.get(action="alert")
    assert why in alert.detail and DEAD_LETTER in alert.detail
    assert redis_client.llen("killswitch:pending") == 0 and redis_client.llen(DEAD_LETTER) == 1
    assert Scope.objects.get(kind="global").level == "running"
    assert not Event.objects.filter(action="activate").exists()


def test_a_bad_item_never_blocks_the_good_ones_behind_it(redis_client, trader):
    _queue(redis_client, FORGED)
    queue_without_database("activate", scope="global", level="halt", reason="real", actor=Actor.of(trader),
                           source="api", client_address=None, escalate=True)
    services.apply_pending()
    assert Scope.objects.get(kind="global").level == "halt"
    assert Event.objects.filter(action="alert").count() == 1
