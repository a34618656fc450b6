"""What trading processes read from Redis after each transition (real Redis)."""

from __future__ import annotations

import json

import pytest

from killswitch import domain as L
from killswitch import services
from killswitch.distribution import publish as D
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_activation_publishes_seed_key_state_hash_log_and_message(redis_client, risk_officer):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(L.CHANNEL)
    wait_for(lambda: pubsub.get_message(timeout=0.1))  # subscribe confirmation

    services.activate(scope="global", level="halt", reason="Market crash", actor=risk_officer, source="api")

    assert redis_client.get("trading_switch") == "halt"
    state = redis_client.hgetall(L.KEY_STATE)
    assert state["global"] == "halt" and int(state["version"]) == 1
    entry = json.loads(redis_client.lindex("risk:kill_switch:log", 0))
    assert (entry["action"], entry["reason"]) == ("activate", "Market crash")
    assert entry["timestamp"].endswith("Z") and len(entry["timestamp"]) == 20
    message = wait_for(lambda: pubsub.get_message(timeout=0.2))
    payload = json.loads(message["data"])
    assert payload["type"] == "state" and payload["version"] == 1
    assert payload["levels"]["global"] == "halt"
    assert payload["event"]["action"] == "activate"


def test_every_scope_and_the_version_come_back_in_one_hgetall(redis_client, trader):
    services.activate(scope="account:DU123", level="pause", reason="r", actor=trader, source="cli")
    services.activate(scope="symbol:aapl", level="kill", reason="r", actor=trader, source="cli")
    state = redis_client.hgetall(L.KEY_STATE)
    assert {k: v for k, v in state.items() if k != "updated_at"} == {
        "version": "2", "global": "running", "account:DU123": "pause", "symbol:AAPL": "kill",
    }
    detail = json.loads(redis_client.hget(L.KEY_SCOPES, "symbol:AAPL"))
    assert detail["level"] == "kill" and detail["reason"] == "r" and detail["actor"] == "tom_trader"
    assert redis_client.get("trading_switch") == "running"


def test_refusals_reach_the_log_but_do_not_change_the_state(redis_client, viewer):
    with pytest.raises(services.PermissionRefused):
        services.activate(scope="global", level="halt", reason="x", actor=viewer, source="api")
    entry = json.loads(redis_client.lindex("risk:kill_switch:log", 0))
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("refused", "refused", "vera_viewer")
    assert redis_client.get("trading_switch") is None  # nothing was published as state


def test_log_is_bounded(redis_client, trader, set_policy):
    set_policy(log_max_entries=3, cooldown_minutes=0)
    for i in range(5):
        services.activate(scope=f"symbol:S{i}", level="halt", reason="r", actor=trader, source="cli")
    assert redis_client.llen("risk:kill_switch:log") == 3


def test_an_older_publish_never_overwrites_a_newer_state(redis_client, trader):
    services.activate(scope="global", level="kill", reason="r", actor=trader, source="cli")
    stale = D.Snapshot(version=0, levels={"global": "running"})
    assert D.publish_state(stale) is False
    assert redis_client.get("trading_switch") == "kill"


def test_a_publish_never_undoes_an_unaudited_out_of_band_escalation(redis_client, trader):
    """redis-cli SET trading_switch halt, then another scope changes before the reconciler
    has looked: the publish keeps the halt (and says so to clients) for the reconciler to audit."""
    services.activate(scope="account:DU1", level="pause", reason="r", actor=trader, source="api")
    redis_client.set("trading_switch", "halt")
    pubsub = redis_client.pubsub()
    pubsub.subscribe(L.CHANNEL)
    wait_for(lambda: pubsub.get_message(timeout=0.1))
    services.activate(scope="account:DU2", level="pause", reason="r", actor=trader, source="api")
    assert redis_client.get("trading_switch") == "halt"
    message = json.loads(wait_for(lambda: pubsub.get_message(timeout=0.2))["data"])
    assert message["trading_switch"] == "halt" and message["levels"]["global"] == "running"
    # an escalation through the service overwrites it as usual
    services.activate(scope="global", level="kill", reason="r", actor=trader, source="api")
    assert redis_client.get("trading_switch") == "kill"


def test_thousands_of_scopes_publish(redis_client):
    levels = {"global": "running", **{f"symbol:S{i}": "halt" for i in range(6000)}}
    assert D.publish_state(D.Snapshot(1, levels), client=redis_client)
    assert redis_client.hlen(L.KEY_STATE) == 6001 + 2  # scopes, version, updated_at


def test_a_publish_that_keeps_the_global_level_leaves_an_unjudged_resume_for_the_reconciler(redis_client, trader):
    """redis-cli SET trading_switch running right after a publish, while a reconciler round
    that read Redis before that publish republishes the same version (or another scope
    changes): the write stays for the reconciler to judge (audited), instead of vanishing
    without a trace (a CI flake of test_out_of_band_resume_after_cooldown_is_applied)."""
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    redis_client.set("trading_switch", "running")
    assert D.publish_state(D.take_snapshot()) and redis_client.get("trading_switch") == "running"
    # the reconciler's revert after judging that value overwrites it
    assert D.publish_state(D.take_snapshot(), judged="running") and redis_client.get("trading_switch") == "halt"
    # another spelling of the level published is only put right
    redis_client.set("trading_switch", "HALT ")
    D.publish_state(D.take_snapshot())
    assert redis_client.get("trading_switch") == "halt"
    # a forced republish (tampering found) overwrites it
    redis_client.set("trading_switch", "running")
    D.publish_state(D.take_snapshot(), force=True)
    assert redis_client.get("trading_switch") == "halt"
    # a change of another scope leaves it too (it decides nothing about the global level)...
    redis_client.set("trading_switch", "pause")
    services.activate(scope="account:DU1", level="pause", reason="r", actor=trader, source="api")
    assert redis_client.get("trading_switch") == "pause"
    # ...and a change of the global level is a newer decision: it overwrites it
    services.activate(scope="global", level="kill", reason="r", actor=trader, source="api")
    assert redis_client.get("trading_switch") == "kill"


def test_an_unaudited_escalation_is_kept_however_it_is_spelt(redis_client, trader):
    """The seed reads `trading_switch` trimmed and lower-cased, so `SET trading_switch HALT`
    is a stop: a person's pause of the global level published before the reconciler has
    looked must not overwrite it with the milder pause."""
    redis_client.set("trading_switch", "running")
    D.publish_state(D.take_snapshot())
    redis_client.set("trading_switch", "HALT")
    services.activate(scope="global", level="pause", reason="r", actor=trader, source="api")
    assert redis_client.get("trading_switch") == "HALT"
