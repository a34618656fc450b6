"""Property: for any sequence of activations, deactivations, out-of-band writes and clock
advances, the event log replays to the stored state, the hash chain verifies, and no
resume (or de-escalation) ever lands inside a cooldown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from killswitch import services
from killswitch.domain import SEVERITY
from killswitch.models import AuditHead, Event, Scope
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock

SCOPES = ["global", "account:DU1", "strategy:momo"]
operations = st.one_of(
    st.tuples(st.just("activate"), st.sampled_from(SCOPES), st.sampled_from(["pause", "halt", "kill"])),
    st.tuples(st.just("deactivate"), st.sampled_from(SCOPES), st.none()),
    st.tuples(st.just("redis"), st.just("global"),
              st.sampled_from(["running", "pause", "halt", "kill", " Kill ", "bogus", ""])),
    st.tuples(st.just("advance"), st.none(), st.integers(min_value=0, max_value=90)),
)


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operations, max_size=25))
def test_log_replays_to_state_chain_verifies_and_cooldown_holds(ops, risk_officer):
    clock.reset()
    try:
        with transaction.atomic():
            _run(ops, risk_officer)
            _check_invariants()
            raise _Rollback  # each example starts from a clean database
    except _Rollback:
        pass


def _run(ops, actor):
    for kind, scope, arg in ops:
        try:
            if kind == "activate":
                services.activate(scope=scope, level=arg, reason="prop", actor=actor, source="api")
            elif kind == "deactivate":
                services.deactivate(scope=scope, actor=actor, source="api")
            elif kind == "redis":
                version = AuditHead.objects.get(pk=1).state_version
                services.reconcile_out_of_band(observed=arg, expected_version=version)
            else:
                clock.advance(minutes=arg)
        except services.CooldownActive:
            pass


def _check_invariants():
    cooldown = timedelta(minutes=kill_switch_policy().cooldown_minutes)
    replayed: dict[str, str] = {}
    cooldown_until: dict[str, object] = {}
    for event in Event.objects.order_by("seq"):
        if event.outcome != "applied" or event.action not in ("activate", "deactivate", "out_of_band"):
            continue
        scope = event.scope_label
        before = replayed.get(scope, "running")
        assert event.previous_level == before, f"event #{event.seq} lost an update"
        if SEVERITY[event.new_level] > SEVERITY[before]:
            cooldown_until[scope] = event.created_at + cooldown
        else:
            until = cooldown_until.get(scope)
            assert until is None or event.created_at >= until, f"event #{event.seq} resumed inside cooldown"
        replayed[scope] = event.new_level
    stored = {row.label: row.level for row in Scope.objects.all()}
    for scope, level in stored.items():
        assert replayed.get(scope, "running") == level
    report = services.verify_audit_chain()
    assert report.ok, report.problem
