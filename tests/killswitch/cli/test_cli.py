from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from killswitch.models import Event, Scope
from killswitch.runtime import clock

pytestmark = pytest.mark.django_db


def run(capsys, *args):
    try:
        call_command("killswitch", *args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_activate_status_history_deactivate(capsys):
    code, out, _ = run(capsys, "activate", "--level", "kill", "--scope", "account:DU123", "--reason", "runaway")
    assert code == 0 and out.strip() == "account:DU123 is now kill (was running)"
    event = Event.objects.get()
    assert event.source == "cli" and event.actor.startswith("cli:")

    code, out, _ = run(capsys, "status")
    assert "account:DU123" in out and "kill" in out and "runaway" in out

    code, out, _ = run(capsys, "history", "--json")
    assert json.loads(out)["events"][0]["action"] == "activate"

    clock.advance(minutes=61)
    code, out, _ = run(capsys, "deactivate", "--scope", "account:DU123", "--reason", "fixed")
    assert code == 0 and Scope.objects.get(kind="account").level == "running"


def test_refusals_exit_non_zero_with_the_api_message(capsys, trader):
    run(capsys, "activate", "--reason", "crash")
    clock.advance(minutes=23)
    code, out, err = run(capsys, "deactivate")
    assert code == 1
    assert err.strip() == "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes)."
    code, _, err = run(capsys, "deactivate", "--user", "tom_trader")
    assert code == 1 and "risk_officer role is required" in err
    code, _, err = run(capsys, "activate", "--reason", "x", "--scope", "galaxy")
    assert code == 1 and "Invalid scope" in err
    assert Event.objects.filter(outcome="refused").count() == 3


def test_missing_reason_is_refused_and_audited(capsys):
    code, _, err = run(capsys, "activate")
    assert code == 1 and err.strip() == "A reason is required to activate the kill switch."
    assert Event.objects.get().action == "refused"
    assert Scope.objects.get(kind="global").level == "running"
