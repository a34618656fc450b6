"""Unknown scopes never look like success (issue 14, item 4): an activation on an account
no configured broker has, or on a strategy no trading process has reported, is applied
all the same (a stop is never refused) and answered with a warning that names the known
ones and the closest match, in the service's result, the API, the CLI and the Risk page;
the Kill dialog suggests the configured accounts, the strategies seen and the symbols held.
"""

from __future__ import annotations

import ast

import pytest
from django.conf import settings
from django.core.management import call_command
from killswitch_client import KillSwitch
from rest_framework.test import APIClient

from brokers.config import brokers_config
from killswitch import services
from killswitch.models import Event, Scope
from killswitch.services.known_scopes import closest, suggestions
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for
from tests.stack import ROOT

CONFIGURED = "Known accounts: DRILL01, DU111111, DU222222"


def level(label: str) -> str:
    kind, _, key = label.partition(":")
    return Scope.objects.get(kind=kind, key=key).level


@pytest.mark.django_db
@pytest.mark.parametrize(("scope", "match"), [
    ("account:DU123", "DU111111"),      # the README's old example
    ("account:du222222", "DU222222"),   # case-insensitive
    ("account:DU-PAPER", None),         # the trading loop's old default: some closest match is named
])
def test_an_unknown_account_is_halted_and_the_warning_names_the_known_ones(scope, match, trader):
    assert brokers_config().paper_accounts == ("DU111111", "DU222222", "DRILL01")
    result = services.activate(scope=scope, level="halt", reason="typo?", actor=trader, source="api")
    assert result.changed and level(scope) == "halt"  # applied: never refuse a stop
    assert Event.objects.get(action="activate").outcome == "applied"
    [warning] = result.warnings
    assert warning.startswith(f"{scope} is not an account of any configured broker")
    assert CONFIGURED in warning and warning.endswith("The switch is applied all the same.")
    assert "closest match: account:" in warning
    if match:
        assert f"closest match: account:{match}." in warning


@pytest.mark.django_db
def test_a_configured_account_global_and_symbol_scopes_have_no_warning(trader):
    for scope in ("account:DU111111", "global", "symbol:ZZZZ"):
        assert services.activate(scope=scope, level="pause", reason="x", actor=trader, source="api").warnings == ()


def test_closest_match_is_case_insensitive_and_none_when_nothing_is_known():
    assert closest("momentum", ["Momentum", "mean_reversion"]) == "Momentum"
    assert closest("mean-reversion", ["momentum", "mean_reversion"]) == "mean_reversion"
    assert closest("x", []) is None


@pytest.mark.django_db(transaction=True)
def test_strategies_are_known_once_a_trading_process_reported_them(reconciler, redis_client, trader):
    first = services.activate(scope="strategy:momo", level="pause", reason="x", actor=trader, source="api")
    assert first.warnings == ("strategy:momo is a strategy no trading process has reported. No process has "
                              "reported a strategy yet. The switch is applied all the same.",)
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    client = KillSwitch(settings.REDIS_URL, account="DU111111", strategy="momo", name="momo-1",
                        exit_on_kill=False, backstop_interval=0.1)
    try:
        from killswitch.models import TradingClient

        wait_for(lambda: TradingClient.objects.filter(strategy="momo").exists(), timeout=10)
        assert services.activate(scope="strategy:momo", level="halt", reason="x", actor=trader,
                                 source="api").warnings == ()
        [warning] = services.activate(scope="strategy:Momo_", level="halt", reason="x", actor=trader,
                                      source="api").warnings
        assert warning == ("strategy:Momo_ is a strategy no trading process has reported. Strategies seen: momo; "
                           "closest match: strategy:momo. The switch is applied all the same.")
        assert "strategy:momo" in suggestions()
    finally:
        client.close()


@pytest.mark.django_db
def test_the_api_adds_warnings_and_keeps_the_seeds_fields(trader):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(username=trader.username, name='t').key}")
    body = api.post("/api/risk/kill-switch", {"action": "activate", "reason": "Runaway orders", "level": "kill",
                                              "scope": "account:X"}, format="json").json()
    assert body["status"] == "kill_switch_activated" and body["reason"] == "Runaway orders"
    assert body["activated_at"].endswith("Z") and body["level"] == "kill" and level("account:X") == "kill"
    assert len(body["warnings"]) == 1 and CONFIGURED in body["warnings"][0]
    known = api.post("/api/risk/kill-switch", {"action": "activate", "reason": "ok", "scope": "account:DU111111"},
                     format="json").json()
    assert known["warnings"] == []


@pytest.mark.django_db
def test_the_cli_prints_the_result_then_the_warning(capsys):
    call_command("killswitch", "activate", "--scope", "account:DU123", "--reason", "typo")
    out, err = capsys.readouterr()
    assert out == "account:DU123 is now halt (was running)\n"
    assert err.startswith("warning: account:DU123 is not an account of any configured broker")
    assert len(err.splitlines()) == 1


def test_the_trading_loop_example_defaults_to_a_configured_demo_account():
    tree = ast.parse((ROOT / "examples" / "trading_loop.py").read_text())
    defaults = {node.args[0].value: kw.value.value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                for kw in node.keywords if kw.arg == "default" and isinstance(kw.value, ast.Constant)}
    assert defaults["--account"] in ("DU111111", "DU222222")
