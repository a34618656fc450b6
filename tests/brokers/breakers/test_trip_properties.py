"""Property (hypothesis): whatever people do to the scope and however two breaker
processes' rounds interleave — one after the other or at the same moment, both believing
they lead — a round never lowers a level, a breaker never resumes, one breach trips
once (between two resumes at most one activation), and a breach is never left standing
on a running scope."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.feeds import BrokerFeed
from killswitch import domain as L
from killswitch import services as ks
from killswitch.breakers import config as breaker_config
from killswitch.breakers.engine import Engine
from killswitch.distribution.connection import get_redis
from killswitch.models import Event, Scope

from ..conftest import use_config

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}}
SCOPE = "account:DU111111"
BREAKER = {"name": "prop-loss", "kind": "max_loss", "scope": SCOPE, "level": "halt", "limit": 500}
ACTOR = "breaker:prop-loss"

steps = st.lists(st.one_of(
    st.tuples(st.just("price"), st.booleans()),  # breached (AAPL 184: -600) or not (190)
    st.tuples(st.just("person"), st.sampled_from(["running", "pause", "halt", "kill"])),
    st.tuples(st.just("round"), st.sampled_from(["a", "b", "both"])),
), min_size=1, max_size=14)


def level() -> str:
    row = Scope.objects.filter(kind=L.ACCOUNT, key="DU111111").first()
    return row.level if row else L.RUNNING


def person(target: str) -> None:
    if target == L.RUNNING:
        ks.deactivate(scope=SCOPE, actor="cli:rita", source="cli", reason="reviewed")
    elif L.SEVERITY[target] > L.SEVERITY[level()]:
        ks.activate(scope=SCOPE, level=target, actor="cli:rita", source="cli", reason="by hand")
    elif target != level():  # lowering, e.g. halt -> pause: a person's decision the breaker leaves alone
        ks.deactivate(scope=SCOPE, actor="cli:rita", source="cli", reason="reviewed")
        ks.activate(scope=SCOPE, level=target, actor="cli:rita", source="cli", reason="by hand")


def reset(engine: Engine) -> None:
    client = get_redis()
    keys = list(client.scan_iter("killswitch:breakers:*"))
    if keys:
        client.delete(*keys)
    if level() != L.RUNNING:
        ks.deactivate(scope=SCOPE, actor="cli:rita", source="cli", reason="reset")
    paper.set_price("AAPL", "190")
    engine.round()  # the day's first reading: AAPL is marked at 190


@pytest.fixture
def engines(monkeypatch, redis_client, set_policy):
    set_policy(cooldown_minutes=0)  # people may resume at once; the breakers still may not
    use_config(monkeypatch, BROKERS)
    demo_data.seed_demo_data()
    parsed = breaker_config.parse_breakers([BREAKER])
    monkeypatch.setattr(breaker_config, "_cached", lambda: parsed)
    # No lease: both believe they lead (a leader frozen past its lease and woken up),
    # so only the latch stands between them and a double trip.
    made = [Engine(breakers=parsed, feeds=[BrokerFeed()]) for _ in range(2)]
    yield made
    for engine in made:
        engine.close()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps)
def test_trips_never_lower_never_resume_and_happen_once_per_breach(engines, plan):
    reset(engines[0])
    first = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    breached, trips_since_resume = False, 0
    for op, arg in plan:
        if op == "price":
            breached = arg
            paper.set_price("AAPL", "184" if arg else "190")
            continue
        if op == "person":
            person(arg)
            if level() == L.RUNNING:
                trips_since_resume = 0
            continue
        before = level()
        seen = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        chosen = {"a": engines[:1], "b": engines[1:], "both": engines}[arg]
        threads = [threading.Thread(target=e.round) for e in chosen]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        after = level()
        assert L.SEVERITY[after] >= L.SEVERITY[before], f"a round lowered {SCOPE}: {before} -> {after}"
        mine = list(Event.objects.filter(seq__gt=seen, actor=ACTOR).values_list("action", "outcome"))
        assert all(action == "activate" for action, _ in mine), f"a breaker did something else: {mine}"
        assert all(outcome == "applied" for _, outcome in mine), f"a breaker repeated itself: {mine}"
        trips_since_resume += len(mine)
        assert trips_since_resume <= 1, "one breach tripped twice"
        if breached:
            assert after != L.RUNNING, "a breach was left standing on a running scope"
    assert not Event.objects.filter(seq__gt=first, actor=ACTOR, action="deactivate").exists()
