"""The breakers: list is validated at start-up: a typo stops the service with one line
naming the file, the key, the value and what is expected."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from killswitch.breakers.config import parse_breakers
from tests.stack import ROOT

LOSS = {"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt", "limit": 5000}


def one(**changes):
    entry = {**LOSS, **changes}
    return parse_breakers([{k: v for k, v in entry.items() if v is not None}], "risk_limits.yaml")[0]


def test_every_kind_parses_with_its_keys_and_the_documented_defaults():
    found = parse_breakers([
        LOSS,
        {"name": "dd", "kind": "max_drawdown", "scope": "global", "level": "halt", "fraction": 0.3},
        {"name": "rate", "kind": "order_rate", "scope": "strategy:momo", "level": "pause", "max_orders": 100,
         "window_seconds": 1},
        {"name": "rejects", "kind": "reject_rate", "scope": "global", "level": "halt", "max_rejects": 5,
         "window_seconds": 60},
        {"name": "pos", "kind": "max_position", "scope": "symbol:ES", "level": "halt", "limit": 10},
        {"name": "notional", "kind": "max_notional", "scope": "account:DU111111", "level": "kill", "limit": 1e6},
        {"name": "link", "kind": "broker_disconnect", "scope": "global", "level": "halt", "grace_seconds": 10},
        {"name": "feed", "kind": "stale_data", "scope": "global", "level": "pause", "max_age_seconds": 5,
         "symbols": ["aapl"]},
        {"name": "loop", "kind": "dead_man", "scope": "strategy:momo", "level": "halt", "timeout_seconds": 60},
    ])
    by = {b.name: b for b in found}
    assert (by["desk-loss"].limit, by["desk-loss"].on_unknown, by["desk-loss"].trading_day.text) == (
        5000, "warn", "00:00 UTC")
    assert (by["dd"].fractional, by["dd"].limit) == (True, 0.3)
    assert (by["rate"].limit, by["rate"].window_seconds) == (100, 1)
    # Not knowing is what these two watch for: they fail closed unless told otherwise.
    assert (by["link"].on_unknown, by["loop"].on_unknown, by["feed"].on_unknown) == ("trip", "trip", "warn")
    assert (by["pos"].per, by["notional"].per) == ("symbol", "account")
    assert by["feed"].symbols == ("AAPL",)
    assert by["loop"].actor == "breaker:loop"


def test_a_trading_day_may_start_in_another_time_zone():
    breaker = one(trading_day_start="17:00 America/New_York")
    # 2026-03-12 15:00 New York (EDT, UTC-4) is before 17:00: the day began the evening before.
    start = breaker.trading_day.start_of_day(datetime(2026, 3, 12, 19, 0, tzinfo=UTC))
    assert start == datetime(2026, 3, 11, 21, 0, tzinfo=UTC)
    assert one().trading_day.start_of_day(datetime(2026, 3, 12, 19, 0, tzinfo=UTC)) == datetime(
        2026, 3, 12, tzinfo=UTC)


@pytest.mark.parametrize("changes, message", [
    ({"limit": -5}, "breakers[0] (desk-loss).limit=-5 is invalid; expected an amount in the account's currency above 0"),
    ({"limit": "lots"}, "breakers[0] (desk-loss).limit='lots' is invalid"),
    ({"limit": None}, "breakers[0] (desk-loss).limit=None is invalid; expected a value: a max_loss breaker needs limit"),
    ({"kind": "max_los"}, "breakers[0] (desk-loss).kind='max_los' is invalid; expected one of max_loss, max_drawdown"),
    ({"level": "running"}, ".level='running' is invalid; expected one of pause, halt, kill"),
    ({"scope": "acount:DU1"}, ".scope='acount:DU1' is invalid; expected 'global', 'account:ID'"),
    ({"name": "Desk Loss"}, ".name='Desk Loss' is invalid; expected a name of lower-case letters"),
    ({"warn_at": 1.5}, ".warn_at=1.5 is invalid; expected a fraction of the limit"),
    ({"warn_at": 1}, ".warn_at=1 is invalid; expected a fraction of the limit above 0 and below 1"),
    ({"on_unknown": "ignore"}, ".on_unknown='ignore' is invalid; expected one of trip, warn"),
    ({"limt": 5}, ".limt=5 is invalid; expected one of the keys of a max_loss breaker"),
    ({"trading_day_start": "25:00"}, ".trading_day_start='25:00' is invalid; expected HH:MM"),
    ({"trading_day_start": "17:00 Mars/Olympus"}, "expected a known time zone ('Mars/Olympus' is not one)"),
    ({"currency": "usd"}, ".currency='usd' is invalid; expected a three-letter currency code"),
])
def test_a_bad_entry_names_the_key_the_value_and_what_is_expected(changes, message):
    with pytest.raises(ImproperlyConfigured) as info:
        one(**changes)
    assert str(info.value).startswith("risk_limits.yaml: ")
    assert message in str(info.value)


def test_the_list_itself_and_duplicate_names_are_checked():
    with pytest.raises(ImproperlyConfigured, match=r"breakers=\{'desk-loss': 1\} is invalid; expected a list"):
        parse_breakers({"desk-loss": 1})
    with pytest.raises(ImproperlyConfigured, match=r"breakers\[1\].name='desk-loss' is invalid; expected a name "
                                                   r"not already used by breakers\[0\]"):
        parse_breakers([LOSS, LOSS])
    with pytest.raises(ImproperlyConfigured, match="either limit .* or fraction"):
        parse_breakers([{"name": "dd", "kind": "max_drawdown", "scope": "global", "level": "halt"}])


def _start(tmp_path, breakers) -> subprocess.CompletedProcess:
    base = yaml.safe_load((ROOT / "config" / "risk_limits.yaml").read_text())
    base["breakers"] = breakers
    path = tmp_path / "risk_limits.yaml"
    path.write_text(yaml.safe_dump(base))
    env = dict(os.environ, RISK_LIMITS_PATH=str(path))
    return subprocess.run([sys.executable, "manage.py", "killswitch", "breakers"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_typo_stops_start_up_with_one_line_and_exit_2(tmp_path):
    result = _start(tmp_path, [{**LOSS, "limit": "5k"}])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "risk_limits.yaml: breakers[0] (desk-loss).limit='5k' is invalid; expected an amount" in lines[0]


def test_an_account_no_broker_serves_stops_start_up(tmp_path):
    result = _start(tmp_path, [{**LOSS, "scope": "account:DU11111"}])
    assert result.returncode == 2
    assert ("breakers[0] (desk-loss).scope='account:DU11111' is invalid; expected an account configured under "
            "brokers: (DRILL01, DU111111, DU222222)") in result.stderr


def test_a_warning_notifies_once_per_trading_day_for_money_and_once_per_window_for_rates():
    now = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
    since, label = one().warn_window(now)
    assert (since, label) == (datetime(2026, 3, 12, tzinfo=UTC).timestamp(), "trading day")
    rate = parse_breakers([{"name": "r", "kind": "order_rate", "scope": "global", "level": "halt",
                            "max_orders": 5, "window_seconds": 10}])[0]
    assert rate.warn_window(now) == (now.timestamp() - 10, "10 s")
    feed = parse_breakers([{"name": "f", "kind": "stale_data", "scope": "global", "level": "halt",
                            "max_age_seconds": 5, "warn_window_seconds": 60}])[0]
    assert feed.warn_window(now) == (now.timestamp() - 60, "60 s")
