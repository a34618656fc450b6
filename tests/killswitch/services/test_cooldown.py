from __future__ import annotations

import pytest

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.runtime import clock
from tests.events import event_of

pytestmark = pytest.mark.django_db


def test_resume_inside_cooldown_is_refused_with_the_seed_message(trader, risk_officer):
    services.activate(scope="global", level="halt", reason="Market crash", actor=trader, source="api")
    clock.advance(minutes=23)
    with pytest.raises(services.CooldownActive) as info:
        services.deactivate(scope="global", actor=risk_officer, source="api")
    assert info.value.message == "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes)."
    assert info.value.short_message == "Kill switch cooldown active. 37 minutes remaining."
    violation = info.value.event
    assert (violation.action, violation.outcome, violation.actor) == ("cooldown_violation", "refused", "rita_risk")
    assert Scope.objects.get(kind="global").level == "halt"


def test_resume_after_cooldown_is_applied(trader, risk_officer):
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    clock.advance(minutes=60, seconds=1)
    result = services.deactivate(scope="global", actor=risk_officer, source="api", reason="investigated")
    assert (result.changed, result.level) == (True, "running")
    assert Event.objects.filter(action="deactivate", outcome="applied").count() == 1


def test_escalation_is_allowed_any_time_and_restarts_the_cooldown(trader, risk_officer):
    services.activate(scope="global", level="pause", reason="r", actor=trader, source="api")
    clock.advance(minutes=50)
    services.activate(scope="global", level="kill", reason="worse", actor=trader, source="api")
    clock.advance(minutes=20)  # 70 min after the first, 20 after the escalation
    with pytest.raises(services.CooldownActive, match="40 minutes remaining"):
        services.deactivate(scope="global", actor=risk_officer, source="api")


def test_de_escalation_inside_cooldown_is_refused(trader, risk_officer):
    services.activate(scope="global", level="kill", reason="r", actor=trader, source="api")
    with pytest.raises(services.CooldownActive):
        services.activate(scope="global", level="pause", reason="calmer", actor=risk_officer, source="api")
    assert Scope.objects.get(kind="global").level == "kill"


def test_each_scope_has_its_own_cooldown(trader, risk_officer):
    services.activate(scope="account:DU1", level="halt", reason="r", actor=trader, source="api")
    clock.advance(minutes=45)
    services.activate(scope="account:DU2", level="halt", reason="r", actor=trader, source="api")
    clock.advance(minutes=16)
    assert services.deactivate(scope="account:DU1", actor=risk_officer, source="api").changed
    with pytest.raises(services.CooldownActive, match="44 minutes remaining"):
        services.deactivate(scope="account:DU2", actor=risk_officer, source="api")


def test_last_minute_reads_one_minute(trader, risk_officer, set_policy):
    set_policy(cooldown_minutes=30)
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    clock.advance(minutes=29, seconds=30)
    with pytest.raises(services.CooldownActive) as info:
        services.deactivate(scope="global", actor=risk_officer, source="api")
    assert info.value.message == "Kill switch cooldown active. 1 minute remaining (cooldown: 30 minutes)."


def test_deactivating_a_running_scope_is_a_noop(risk_officer):
    result = services.deactivate(scope="global", actor=risk_officer, source="api")
    assert not result.changed and result.message == "global is already at running"


def test_a_drill_may_shorten_the_cooldown_and_says_so(trader, risk_officer):
    result = services.activate(scope="account:DRILL", level="kill", reason="annual drill", actor=trader,
                               source="cli", drill_cooldown_minutes=0.5)
    assert "drill cooldown 0.5 minutes" in event_of(result).detail
    clock.advance(seconds=31)
    assert services.deactivate(scope="account:DRILL", actor=risk_officer, source="cli").changed


def test_a_drill_cannot_lengthen_the_cooldown(trader):
    with pytest.raises(services.InvalidRequest, match="expected 0 to the policy's 60 minutes"):
        services.activate(scope="global", level="halt", reason="x", actor=trader, source="cli",
                          drill_cooldown_minutes=600)
    assert Scope.objects.get(kind="global").level == "running"
