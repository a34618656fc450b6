"""A demo that can be undone (issue 14, item 8): `make demo` runs with a short cooldown
(kill_switch.demo_cooldown_minutes, validated like the rest, paper broker only), and
`manage.py killswitch demo-reset` resumes every scope at once (audited, the cooldown
waived and said so) and restores the demo book, on a demo stack only. The drill, right
after a quick start's halt, refuses naming that halt and how to lift it, and never lifts it."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from brokers.demo import DEMO_ORDERS, DEMO_POSITIONS, seed_demo_data
from brokers.models import PAPER_WORKING, BrokerRun, PaperOrder, PaperPosition
from brokers.runs import execute_run
from killswitch import policy, services
from killswitch.drill import DrillRefused, run_drill
from killswitch.models import Event, Scope
from killswitch.runtime import clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(monkeypatch):
    """This installation as a demo stack (the policy as `make demo` gives it)."""
    demo_policy = policy.with_demo(policy.load_policy(policy.get_policy().path), paper_only=True)
    monkeypatch.setattr(policy, "get_policy", lambda: demo_policy)
    return demo_policy


def book() -> tuple[set, set]:
    positions = {(p.account.code, p.symbol, p.quantity) for p in
                 PaperPosition.objects.select_related("account").exclude(quantity=0)}
    orders = {(o.account.code, o.symbol, o.side, o.quantity, o.strategy) for o in
              PaperOrder.objects.select_related("account").filter(status__in=PAPER_WORKING)}
    return positions, orders


DEMO_BOOK = ({(a, s, Decimal(q)) for a, s, q, _ in DEMO_POSITIONS},
             {(a, s, side, Decimal(q), strat) for _, a, s, side, q, _, strat in DEMO_ORDERS})


def test_the_demo_policy_has_the_short_cooldown_and_needs_paper_only():
    base = policy.load_policy(policy.get_policy().path)
    assert base.kill_switch.cooldown_minutes == 60 and base.kill_switch.demo_cooldown_minutes == 2
    demo = policy.with_demo(base, paper_only=True)
    assert demo.demo and demo.kill_switch.cooldown_minutes == 2
    with pytest.raises(ImproperlyConfigured, match="KILLSWITCH_DEMO=1 \\(make demo\\) needs PAPER_ONLY=true"):
        policy.with_demo(base, paper_only=False)
    with pytest.raises(ImproperlyConfigured, match="kill_switch.demo_cooldown_minutes='soon' is invalid; "
                                                   "expected a number between 0.1 and 60"):
        policy.parse_policy("kill_switch:\n  demo_cooldown_minutes: soon\n", "risk_limits.yaml")


def test_demo_mode_comes_from_the_environment_or_the_running_stacks_record(monkeypatch, tmp_path, settings):
    monkeypatch.setenv("KILLSWITCH_DEMO", "1")
    assert policy.demo_requested()
    monkeypatch.setenv("KILLSWITCH_DEMO", "maybe")
    with pytest.raises(ImproperlyConfigured, match="KILLSWITCH_DEMO='maybe' is not a boolean"):
        policy.demo_requested()
    monkeypatch.delenv("KILLSWITCH_DEMO")
    settings.TESTING = False  # as a command in another terminal beside `make demo`
    record = tmp_path / "stack.json"
    monkeypatch.setenv("KILLSWITCH_STACK_FILE", str(record))
    import os

    record.write_text(json.dumps({"pid": os.getpid(), "demo": True}))
    assert policy.demo_requested()
    record.write_text(json.dumps({"pid": 2**22 + 12345, "demo": True}))  # its stack is gone
    assert not policy.demo_requested()
    record.write_text(json.dumps({"pid": os.getpid()}))  # `make run`, not a demo
    assert not policy.demo_requested()


def test_demo_reset_is_refused_and_audited_unless_the_stack_is_a_demo(capsys, trader):
    services.activate(scope="global", level="halt", reason="Market crash", actor=trader, source="api")
    with pytest.raises(SystemExit) as exit_:
        call_command("killswitch", "demo-reset")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Demo reset refused: demo-reset is for demo stacks only")
    assert "make demo" in err and "deactivate --scope S" in err
    assert Scope.objects.get(kind="global").level == "halt"
    refusal = Event.objects.get(action="refused")
    assert (refusal.source, refusal.reason, refusal.actor.startswith("cli:")) == ("cli", "demo reset", True)


def test_demo_reset_resumes_everything_at_once_and_restores_the_demo_book(demo, trader):
    seed_demo_data()
    assert book() == DEMO_BOOK
    for scope, level in (("global", "halt"), ("account:DU111111", "kill"), ("strategy:momentum", "pause")):
        result = services.activate(scope=scope, level=level, reason="demo", actor=trader, source="api")
        for run in BrokerRun.objects.filter(event_seq=result.seq):
            execute_run(run_id=run.pk)
    assert Scope.objects.get(kind="global").cooldown_remaining_seconds(clock.now()) == pytest.approx(120, abs=2)
    assert book() != DEMO_BOOK  # orders cancelled, DU111111 flattened

    out = io.StringIO()
    call_command("killswitch", "demo-reset", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "demo book restored: 2 accounts, 4 positions, 5 working orders"
    assert lines[-2] == "global is now running (was halt); cooldown waived: demo reset (demo stack, paper broker only)"
    assert {s.label: s.level for s in Scope.objects.all()} == {
        "global": "running", "account:DU111111": "running", "strategy:momentum": "running"}
    assert book() == DEMO_BOOK
    resumes = Event.objects.filter(action="deactivate", outcome="applied")
    assert resumes.count() == 3
    assert {(e.actor.endswith("(demo reset)"), e.reason, "cooldown waived" in e.detail) for e in resumes} == {
        (True, "demo reset", True)}
    assert services.verify_audit_chain().ok

    # The next demo starts a cooldown of its own (the demo's 2 minutes), none left over.
    again = services.activate(scope="global", level="halt", reason="again", actor=trader, source="api")
    assert (again.cooldown_until - again.at).total_seconds() == pytest.approx(120, abs=1)


def test_demo_reset_needs_a_risk_officer_when_run_as_a_user(demo, capsys, trader):
    services.activate(scope="global", level="halt", reason="x", actor=trader, source="api")
    with pytest.raises(SystemExit):
        call_command("killswitch", "demo-reset", "--user", trader.username)
    assert "the risk_officer role (deactivate permission) is required" in capsys.readouterr().err
    assert Scope.objects.get(kind="global").level == "halt"


def test_the_drill_after_a_global_halt_names_it_and_how_to_lift_it_and_changes_nothing(demo, trader, tmp_path):
    services.activate(scope="global", level="halt", reason="Market crash", actor=trader, source="api")
    before = Event.objects.count()
    with pytest.raises(DrillRefused) as refused:
        run_drill(accounts=None, clients=1, cooldown_seconds=10, report_dir=tmp_path, start_services=False,
                  actor="cli:test (drill)", progress=lambda _: None)
    text = str(refused.value)
    assert "read halt, set on global by tom_trader" in text and "(Market crash)" in text
    assert "never lifts a level somebody else set" in text
    assert 'manage.py killswitch deactivate --reason "..."' in text and "demo-reset" in text
    assert Event.objects.count() == before and Scope.objects.get(kind="global").level == "halt"
