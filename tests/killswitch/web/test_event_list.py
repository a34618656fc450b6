"""The admin's event list ("View History") and the history's time filters, as built to
stay fast on millions of events (bench/bench_history.py): what the search finds, the
capped count, the recorded-within filter, and time ranges that stay exact when clocks
disagree a little."""

from __future__ import annotations

from datetime import timedelta

import pytest

from killswitch import selectors, services
from killswitch.models import Event
from killswitch.runtime import clock
from killswitch.web import admin as event_admin

pytestmark = pytest.mark.django_db

LIST = "/admin/killswitch/event/"


def seqs(page: str) -> list[int]:
    """The event numbers the list shows, in order (their links' text)."""
    import re

    return [int(n) for n in re.findall(r'<th class="field-seq"><a href="[^"]+">(\d+)</a>', page)]


@pytest.fixture
def log(trader, risk_officer):
    """Five events: two activations by tom_trader, one by the CLI, a resume refused, a noop."""
    services.activate(scope="account:DU123", level="halt", reason="Runaway orders on the desk", actor=trader,
                      source="api")
    services.activate(scope="symbol:AAPL", level="pause", reason="halted news", actor=trader, source="admin")
    services.activate(scope="strategy:momo", level="kill", reason="bug", actor="cli:ops", source="cli")
    with pytest.raises(services.KillSwitchError):
        services.deactivate(scope="account:DU123", reason="too soon", actor=risk_officer, source="api")
    services.activate(scope="symbol:AAPL", level="pause", reason="again", actor=trader, source="api")
    return {e.seq: e for e in Event.objects.all()}


def test_the_search_finds_an_actor_a_scope_or_an_event_number(client, risk_officer, log):
    client.force_login(risk_officer)
    by_trader = [s for s, e in log.items() if e.actor == "tom_trader"]
    assert seqs(client.get(LIST, {"q": "tom_trader"}).content.decode()) == sorted(by_trader, reverse=True)
    du123 = sorted((s for s, e in log.items() if e.scope_key == "DU123"), reverse=True)
    assert seqs(client.get(LIST, {"q": "account:DU123"}).content.decode()) == du123
    assert seqs(client.get(LIST, {"q": "DU123"}).content.decode()) == du123
    aapl = sorted((s for s, e in log.items() if e.scope_key == "AAPL"), reverse=True)
    assert seqs(client.get(LIST, {"q": "aapl"}).content.decode()) == aapl  # symbols are upper case
    assert seqs(client.get(LIST, {"q": "#2"}).content.decode()) == [2]
    # Reasons are not searched (a substring search reads every event): filter or search by who/where.
    assert seqs(client.get(LIST, {"q": "Runaway"}).content.decode()) == []
    page = client.get(LIST).content.decode()
    assert "An actor (exact, e.g. rita_risk)" in page


def test_the_count_stops_at_the_cap_and_says_more_than(client, risk_officer, log, monkeypatch):
    client.force_login(risk_officer)
    assert f"{len(log)} events" in client.get(LIST).content.decode()
    monkeypatch.setattr(event_admin.CappedCountPaginator, "CAP", 3)
    page = client.get(LIST).content.decode()
    assert "more than 3 events" in page
    assert len(seqs(page)) == len(log)  # the cap limits the counting, never the page
    assert "date_hierarchy" not in page and 'class="xfull"' not in page  # no drill-down by date


def test_recorded_within_shows_only_recent_events(client, risk_officer, trader):
    services.activate(scope="account:OLD", level="halt", reason="old", actor=trader, source="api")
    clock.advance(days=3)
    services.activate(scope="account:NEW", level="halt", reason="new", actor=trader, source="api")
    client.force_login(risk_officer)
    recent = seqs(client.get(LIST, {"within": "24h"}).content.decode())
    assert [Event.objects.get(seq=s).scope_key for s in recent] == ["NEW"]
    assert len(seqs(client.get(LIST, {"within": "7d"}).content.decode())) == 2


def test_time_ranges_are_exact_across_days_and_with_clocks_a_little_out_of_order(trader):
    def at(label: str) -> Event:
        result = services.activate(scope=f"symbol:{label}", level="pause", reason=label, actor=trader,
                                   source="api")
        return Event.objects.get(seq=result.seq)

    day0 = at("DAYZERO")
    clock.advance(days=1)
    day1 = at("DAYONE")
    clock.advance(minutes=-30)  # another host's clock, half an hour behind: stamped before day1
    behind = at("BEHIND")
    clock.advance(days=1, minutes=30)
    day2 = at("DAYTWO")

    def keys(**bounds) -> list[str]:
        return [e.scope_key for e in selectors.history(**bounds)]

    assert keys(until=day1.created_at) == ["BEHIND", "DAYZERO"]  # seq order, newest first
    assert keys(since=day1.created_at) == ["DAYTWO", "DAYONE"]
    assert keys(since=behind.created_at, until=day2.created_at) == ["BEHIND", "DAYONE"]
    assert keys(until=day0.created_at + timedelta(seconds=1)) == ["DAYZERO"]
    assert keys(since=day2.created_at) == ["DAYTWO"]


def test_the_new_level_filter_lists_the_levels_without_reading_the_events(client, risk_officer, log):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(risk_officer)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(LIST).content.decode()
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert "?new_level=kill" in page
    kills = sorted((s for s, e in log.items() if e.new_level == "kill"), reverse=True)
    assert seqs(client.get(LIST, {"new_level": "kill"}).content.decode()) == kills
