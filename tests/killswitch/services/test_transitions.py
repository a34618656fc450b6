from __future__ import annotations

import pytest

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.selectors import effective_level

pytestmark = pytest.mark.django_db


def test_activation_moves_global_to_halt_and_records_one_event(risk_officer):
    result = services.activate(scope="global", level=None, reason="Market crash", actor=risk_officer,
                               source="api", client_address="10.0.0.7")
    assert (result.changed, result.previous_level, result.level) == (True, "running", "halt")
    assert Scope.objects.get(kind="global").level == "halt"
    event = Event.objects.get()
    assert (event.action, event.outcome, event.actor, event.source) == ("activate", "applied", "rita_risk", "api")
    assert (event.previous_level, event.new_level, event.client_address) == ("running", "halt", "10.0.0.7")
    assert event.reason == "Market crash"


def test_same_request_twice_is_a_noop_that_says_already_there(trader):
    services.activate(scope="account:DU123", level="halt", reason="r", actor=trader, source="cli")
    again = services.activate(scope="account:DU123", level="halt", reason="r", actor=trader, source="cli")
    assert not again.changed
    assert again.message == "account:DU123 is already at halt"
    assert Event.objects.filter(outcome="applied").count() == 1
    assert Event.objects.filter(outcome="noop").count() == 1


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_activation_without_reason_is_refused_and_audited(trader, reason):
    with pytest.raises(services.InvalidRequest, match="reason is required") as info:
        services.activate(scope="global", level="halt", reason=reason, actor=trader, source="api")
    assert info.value.field == "reason"
    assert Scope.objects.get(kind="global").level == "running"
    event = Event.objects.get()
    assert (event.action, event.outcome) == ("refused", "refused")
    assert "reason is required" in event.detail


def test_unknown_level_and_scope_are_refused_with_what_is_allowed(trader):
    with pytest.raises(services.InvalidRequest, match="expected one of pause, halt, kill"):
        services.activate(scope="global", level="nuke", reason="x", actor=trader, source="api")
    with pytest.raises(services.InvalidRequest, match="expected 'global', 'account:ID'"):
        services.activate(scope="desk", level="halt", reason="x", actor=trader, source="api")
    with pytest.raises(services.InvalidRequest, match="unknown scope kind"):
        services.activate(scope="planet:mars", level="halt", reason="x", actor=trader, source="api")
    assert list(Event.objects.values_list("action", flat=True)) == ["refused"] * 3
    assert Event.objects.get(seq=3).scope_key == "planet:mars"
    assert not Scope.objects.exclude(kind="global").exists()


def test_oversize_reason_is_refused(trader, set_policy):
    set_policy(max_reason_length=10)
    with pytest.raises(services.InvalidRequest, match="11 characters long; at most 10"):
        services.activate(scope="global", level="halt", reason="x" * 11, actor=trader, source="api")
    assert Scope.objects.get(kind="global").level == "running"


def test_roles_viewer_cannot_activate_trader_cannot_resume(viewer, trader, nobody):
    with pytest.raises(services.PermissionRefused, match="trader role is required"):
        services.activate(scope="global", level="halt", reason="x", actor=viewer, source="api")
    with pytest.raises(services.PermissionRefused):
        services.activate(scope="global", level="halt", reason="x", actor=nobody, source="api")
    services.activate(scope="global", level="halt", reason="x", actor=trader, source="api")
    with pytest.raises(services.PermissionRefused, match="risk_officer role is required"):
        services.deactivate(scope="global", actor=trader, source="api")
    refused = Event.objects.filter(action="refused").order_by("seq")
    assert [e.actor for e in refused] == ["vera_viewer", "nina_nobody", "tom_trader"]
    assert Scope.objects.get(kind="global").level == "halt"


def test_trader_cannot_weaken_a_kill_by_activating_a_lower_level(trader, set_policy):
    set_policy(cooldown_minutes=0)
    services.activate(scope="global", level="kill", reason="x", actor=trader, source="api")
    with pytest.raises(services.PermissionRefused, match="may not lower global from kill to pause"):
        services.activate(scope="global", level="pause", reason="x", actor=trader, source="api")
    assert Scope.objects.get(kind="global").level == "kill"


def test_effective_level_is_the_most_severe_matching_scope(trader):
    services.activate(scope="account:DU1", level="pause", reason="r", actor=trader, source="api")
    services.activate(scope="strategy:momo", level="halt", reason="r", actor=trader, source="api")
    services.activate(scope="symbol:aapl", level="kill", reason="r", actor=trader, source="api")
    assert effective_level(account="DU1") == ("pause", "account:DU1")
    assert effective_level(account="DU1", strategy="momo") == ("halt", "strategy:momo")
    assert effective_level(account="DU1", strategy="momo", symbol="AAPL") == ("kill", "symbol:AAPL")
    assert effective_level(account="DU2", strategy="other", symbol="MSFT") == ("running", "global")


def test_refused_input_with_control_characters_is_recorded_escaped(trader):
    with pytest.raises(services.InvalidRequest):
        services.activate(scope="account:DU\x001", level="halt", reason="a\x00b\x1b[31m", actor=trader, source="api")
    event = Event.objects.get()
    assert event.reason == "a\\x00b\\x1b[31m"
    assert "\x00" not in event.scope_key
    assert services.verify_audit_chain().ok
