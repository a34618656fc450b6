"""Tokens (minted by the CLI, hashed at rest, revocable), http_enabled, the failed-attempt
limit that never touches a permitted user, cooldown and idempotent answers, history."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from killswitch import services
from killswitch.models import ApiToken, Event, Scope
from killswitch.runtime import clock
from tests.conftest import wait_for

from .conftest import HISTORY_URL, URL

pytestmark = pytest.mark.django_db

ACTIVATE = {"action": "activate", "reason": "Market crash"}


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("killswitch", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


def _client(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_cli_token_is_printed_once_stored_only_as_hash_and_works(trader):
    code, out, err = _cli("token", "tom_trader", "--name", "desk 3")
    key = out.strip()
    assert code == 0 and key.startswith("ks_") and len(key) == 43
    assert "shown only this once" in err
    row = ApiToken.objects.get()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {row.prefix, row.name, row.key_hash}
    assert row.prefix == key[:11]
    response = _client(key).post(URL, ACTIVATE, format="json")
    assert response.status_code == 200
    assert Event.objects.get(action="activate").actor == "tom_trader"
    row.refresh_from_db()
    assert row.last_used_at is not None
    # What the database holds is not itself a usable token.
    assert _client(row.key_hash).get(URL).status_code == 401
    code, out, _ = _cli("token", "--list")
    assert row.prefix in out and "desk 3" in out and "live" in out and key not in out


def test_revoked_token_is_refused_401_and_the_attempt_audited(trader):
    key = _cli("token", "tom_trader")[1].strip()
    code, out, _ = _cli("token", "--revoke", key[:11])
    assert code == 0 and "Revoked" in out
    response = _client(key).post(URL, ACTIVATE, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "revoked" in response.json()["error"]
    assert Scope.objects.get(kind="global").level == "running"
    event = Event.objects.get()
    # The refusal names whose token it was, not "anonymous".
    assert (event.action, event.actor, event.actor_user_id, event.client_address) == (
        "refused", "tom_trader", trader.pk, "127.0.0.1")
    assert "revoked" in event.detail and event.reason == "Market crash"
    assert _cli("token", "--revoke", key[:11])[0] == 1  # nothing left to revoke


def test_unknown_user_and_short_prefix_are_cli_errors(trader):
    assert _cli("token", "ghost")[0] == 1
    assert _cli("token", "--revoke", "ks_")[0] == 1


def test_http_disabled_refuses_changes_naming_the_setting_but_reads_work(trader, client_for, set_policy):
    set_policy(http_enabled=False)
    client = client_for(trader)
    response = client.post(URL, ACTIVATE, format="json")
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "disabled"
    assert "kill_switch.http_enabled is false" in body["error"]
    assert Scope.objects.get(kind="global").level == "running"
    event = Event.objects.get()
    assert (event.action, event.actor, event.client_address) == ("refused", "tom_trader", "127.0.0.1")
    assert "http_enabled" in event.detail
    status = client.get(URL)
    assert status.status_code == 200 and status.json()["http_enabled"] is False
    assert client.get(HISTORY_URL).json()["events"][0]["seq"] == event.seq


def test_failed_attempts_are_rate_limited_but_a_permitted_activation_never_is(
        settings, trader, viewer, client_for):
    settings.KILLSWITCH_FAILED_ATTEMPTS_LIMIT = 3
    anonymous, forbidden = client_for(None), client_for(viewer)
    statuses = [anonymous.post(URL, ACTIVATE, format="json").status_code for _ in range(2)]
    statuses.append(forbidden.post(URL, ACTIVATE, format="json").status_code)
    assert statuses == [401, 401, 403]
    limited = [anonymous.post(URL, ACTIVATE, format="json"), forbidden.post(URL, {"action": "deactivate"}, format="json"),
               _client("ks_not-a-real-token").post(URL, ACTIVATE, format="json")]
    assert [r.status_code for r in limited] == [429, 429, 429]
    assert limited[0].json()["code"] == "rate_limited" and int(limited[0]["Retry-After"]) >= 1
    assert "permitted users are never rate limited" in limited[0].json()["error"]
    # One audit event for the throttled address per window, not one per request.
    assert Event.objects.filter(action="refused").count() == 4
    assert Event.objects.order_by("-seq").first().detail.find("Too many failed attempts") >= 0
    # The same address, a permitted user: answered at once.
    response = client_for(trader).post(URL, ACTIVATE, format="json")
    assert response.status_code == 200
    assert Scope.objects.get(kind="global").level == "halt"
    assert client_for(viewer).get(URL).status_code == 200  # a viewer reading is permitted too


def test_cooldown_409_keeps_the_seed_error_and_adds_details(trader, risk_officer, client_for):
    client_for(trader).post(URL, ACTIVATE, format="json")
    clock.advance(minutes=23)
    response = client_for(risk_officer).post(URL, {"action": "deactivate"}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "Kill switch cooldown active. 37 minutes remaining."
    assert body["message"] == "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes)."
    assert (body["code"], body["field"], body["scope"]) == ("cooldown_active", None, "global")
    assert 36 * 60 < body["remaining_seconds"] <= 37 * 60
    assert body["cooldown_until"].endswith("Z")
    assert Scope.objects.get(kind="global").level == "halt"
    event = Event.objects.order_by("-seq").first()
    assert (event.action, event.actor, event.client_address) == ("cooldown_violation", "rita_risk", "127.0.0.1")


def test_activating_again_is_200_unchanged_saying_it_is_already_there(trader, risk_officer, client_for):
    first = client_for(trader).post(URL, ACTIVATE, format="json").json()
    again = client_for(risk_officer).post(URL, {**ACTIVATE, "reason": "me too"}, format="json")
    assert again.status_code == 200
    body = again.json()
    assert (body["status"], body["changed"], body["level"]) == ("kill_switch_activated", False, "halt")
    assert body["message"] == "global is already at halt"
    # When and why the scope got there, not the repeat.
    assert (body["activated_at"], body["reason"]) == (first["activated_at"], "Market crash")
    assert Event.objects.filter(outcome="applied").count() == 1


def test_scoped_activation_and_status_show_every_scope(trader, client_for):
    client = client_for(trader)
    body = client.post(URL, {"action": "activate", "reason": "Runaway orders", "level": "kill",
                             "scope": "account:DU123"}, format="json").json()
    assert (body["scope"], body["level"], body["previous_level"]) == ("account:DU123", "kill", "running")
    status = client.get(URL).json()
    assert (status["level"], status["active"]) == ("running", False)
    by_scope = {s["scope"]: s for s in status["scopes"]}
    assert by_scope["account:DU123"]["level"] == "kill"
    assert by_scope["account:DU123"]["reason"] == "Runaway orders"
    assert by_scope["account:DU123"]["cooldown_remaining_seconds"] == 3600
    assert by_scope["account:DU123"]["version"] == status["version"] == 1
    assert by_scope["global"]["cooldown_until"] is None


def test_history_is_newest_first_filtered_and_keyset_paginated(trader, viewer, client_for, set_policy):
    set_policy(cooldown_minutes=0)
    for i in range(5):
        services.activate(scope=f"symbol:S{i}", level="halt", reason=f"r{i}", actor=trader, source="api")
    services.activate(scope="global", level="pause", reason="cli one", actor="cli:ops", source="cli")
    client = client_for(viewer)
    page = client.get(f"{HISTORY_URL}?limit=2").json()
    assert [e["seq"] for e in page["events"]] == [6, 5]
    assert page["next_before"] == 5
    seqs = [6, 5]
    while page["next"]:
        page = client.get(page["next"]).json()
        seqs += [e["seq"] for e in page["events"]]
    assert seqs == [6, 5, 4, 3, 2, 1]
    assert [e["scope"] for e in client.get(f"{HISTORY_URL}?source=cli").json()["events"]] == ["global"]
    assert [e["reason"] for e in client.get(f"{HISTORY_URL}?scope=symbol:s3").json()["events"]] == ["r3"]
    assert len(client.get(f"{HISTORY_URL}?actor=tom_trader&action=activate").json()["events"]) == 5
    event = client.get(f"{HISTORY_URL}?limit=1").json()["events"][0]
    assert list(event)[:3] == ["action", "reason", "timestamp"]  # the seed's log entry first
    assert event["timestamp"].endswith("Z")
    future = client.get(f"{HISTORY_URL}?since=2999-01-01T00:00:00Z").json()
    assert future == {"events": [], "next": None, "next_before": None}


def test_reads_reuse_a_token_briefly_but_writes_always_check_the_database(trader, settings):
    """Revoked in another process (here: straight in the database, which is all another
    process can do): writes are refused at once; reads stop within the cache lifetime."""
    settings.KILLSWITCH_READ_AUTH_CACHE_SECONDS = 1
    key = _cli("token", "tom_trader")[1].strip()
    client = _client(key)
    assert client.get(URL).status_code == 200  # authenticated and kept for reads
    ApiToken.objects.update(revoked_at=clock.now())
    refused = client.post(URL, ACTIVATE, format="json")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert Scope.objects.get(kind="global").level == "running"
    wait_for(lambda: client.get(URL).status_code == 401, timeout=10)
    # Revoking in this process (the CLI, the admin) forgets the token at once.
    other = _cli("token", "tom_trader")[1].strip()
    assert _client(other).get(URL).status_code == 200
    assert _cli("token", "--revoke", other[:11])[0] == 0
    assert _client(other).get(URL).status_code == 401


def test_a_role_removed_stops_writes_at_once(trader, settings):
    settings.KILLSWITCH_READ_AUTH_CACHE_SECONDS = 60
    key = _cli("token", "tom_trader")[1].strip()
    client = _client(key)
    assert client.get(URL).status_code == 200
    trader.groups.clear()
    response = client.post(URL, ACTIVATE, format="json")
    assert response.status_code == 403
    assert Scope.objects.get(kind="global").level == "running"


def test_read_cache_off_looks_every_read_up(trader, settings):
    settings.KILLSWITCH_READ_AUTH_CACHE_SECONDS = 0
    key = _cli("token", "tom_trader")[1].strip()
    client = _client(key)
    assert client.get(URL).status_code == 200
    ApiToken.objects.update(revoked_at=clock.now())
    assert client.get(URL).status_code == 401


def test_status_read_shows_every_change_at_once(trader, risk_officer, client_for):
    """The status keeps the scope rows between reads; every change, from any process
    (here: the services directly), must show on the next read."""
    reader = client_for(trader)
    assert reader.get(URL).json()["level"] == "running"
    before = reader.get(URL).json()
    services.activate(scope="account:DU1", level="kill", reason="runaway", actor=trader, source="cli")
    # (on_commit hooks do not run inside the test transaction; the status reads the rows.)
    after = reader.get(URL).json()
    assert after["version"] > before["version"]
    assert {s["scope"]: s["level"] for s in after["scopes"]}["account:DU1"] == "kill"
    # A row created without a version change (a scope first seen) shows too.
    Scope.objects.create(kind="symbol", key="ZZZ")
    assert "symbol:ZZZ" in {s["scope"] for s in reader.get(URL).json()["scopes"]}
    # A row whose id was handed out before a higher one but committed after it (PostgreSQL
    # sequences allow it): neither the version nor the highest id changes, the count does.
    Scope.objects.create(id=Scope.objects.order_by("-id").first().id + 100, kind="symbol", key="HIGH")
    assert "symbol:HIGH" in {s["scope"] for s in reader.get(URL).json()["scopes"]}
    Scope.objects.create(id=Scope.objects.order_by("-id").first().id - 50, kind="symbol", key="LATE")
    assert "symbol:LATE" in {s["scope"] for s in reader.get(URL).json()["scopes"]}
    # Cooldown remaining is computed per read, not kept.
    first = {s["scope"]: s for s in reader.get(URL).json()["scopes"]}["account:DU1"]
    assert first["cooldown_remaining_seconds"] > 0 and first["cooldown_until"]


def test_identical_refusals_are_one_event_per_window_with_their_count(settings, viewer, client_for):
    """A viewer hammering the history with a bad parameter (1,500 refusal events in 10 s
    before): the first three on record, one more with the count when the window is over."""
    import time

    from killswitch import services

    settings.KILLSWITCH_FAILED_ATTEMPTS_WINDOW = 1
    api = client_for(viewer)
    time.sleep(1 - time.time() % 1)  # start at the beginning of a window
    answers = {api.get(HISTORY_URL, {"limit": "lots"}).status_code for _ in range(40)}
    assert answers == {400}
    assert Event.objects.filter(action="refused").count() == 3  # a person repeating: each on record
    time.sleep(1.1)
    assert services.flush_repeated_refusals() == 1
    counted = Event.objects.filter(action="refused").order_by("-seq").first()
    assert "and 37 more identical refusal(s)" in counted.detail and counted.actor == "vera_viewer"
    assert services.flush_repeated_refusals() == 0  # recorded once
