"""Two of every singleton loop: two reconcilers and two sweeps as real processes, the
leader frozen (SIGSTOP), woken (SIGCONT) and stopped (SIGTERM). A follower takes over
within 3 s, and nothing is done twice."""

from __future__ import annotations

import re
import signal
import time

import pytest
import redis
from django.db import connection

from brokers import demo as demo_data
from brokers import runs as broker_runs
from brokers.adapters import paper
from brokers.models import BrokerAction, BrokerRun, PaperOrder, RunKind
from killswitch import services
from killswitch.models import Event
from killswitch.runtime.leadership import KEY_PREFIX
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure

pytestmark = pytest.mark.fault

TAKEOVER_BOUND = 3.0  # seconds: the bound for a follower to take over


def leader(client: redis.Redis, loop: str, stack) -> str | None:
    """The label of the stack process holding `loop`'s lease (its token is host:pid:random)."""
    token = client.get(KEY_PREFIX + loop)
    return stack.label_of(int(token.split(":")[1])) if token else None


def test_a_frozen_reconciler_is_replaced_within_3_s_and_nothing_is_recorded_twice(stack, probes, settings):
    stack.start("reconciler")
    stack.start_process("reconciler", label="reconciler-b")
    settings.REDIS_URL = stack.redis.url
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    first = wait_for(lambda: leader(client, "reconciler", stack), timeout=10)
    other = "reconciler-b" if first == "reconciler" else "reconciler"
    # The leader restored the empty Redis once at start-up (one `restored` event); a
    # leader that went on after losing its lease would restore or alert again.
    findings = Event.objects.filter(action__in=["restored", "alert"]).count()

    seen_before = len(probe.views())
    stack.signal(first, signal.SIGSTOP)  # hangs: no renewals, no rounds, no heartbeat
    t_stop = time.monotonic()
    wait_for(lambda: leader(client, "reconciler", stack) == other, timeout=TAKEOVER_BOUND)
    figure("reconciler frozen", "follower took over after", f"{(time.monotonic() - t_stop) * 1000:.0f} ms")

    # The new leader does the work: an out-of-band halt becomes one audited event.
    client.set("trading_switch", "halt")
    applied = lambda: Event.objects.filter(action="out_of_band", outcome="applied").exists()  # noqa: E731
    try:
        wait_for(applied, timeout=5)
    except AssertionError:
        # SQLite has one write lock per database file: a leader frozen inside a write
        # transaction keeps it, and no other process writes until it runs again (the
        # halt is in Redis all along; the README's production database is PostgreSQL).
        if connection.vendor != "sqlite":
            raise
        stack.signal(first, signal.SIGCONT)
        wait_for(applied, timeout=10)
        figure("reconciler frozen", "event recorded once the frozen leader let go of SQLite's lock", "yes")
    stack.signal(first, signal.SIGCONT)  # wakes up; must find its lease gone and follow
    time.sleep(2)  # several rounds of the woken process, had it gone on leading
    assert leader(client, "reconciler", stack) == other
    assert Event.objects.filter(action="out_of_band").count() == 1
    assert Event.objects.filter(action__in=["restored", "alert"]).count() == findings
    # Clients never saw the reconciler change hands: the heartbeat never went stale. On
    # SQLite a leader frozen inside a write transaction keeps the database's one write
    # lock, the new leader's round waits for it and its heartbeat stops: clients then
    # fail closed (halt, the safe side) until the lock is let go.
    failed_closed = [v for v in probe.views()[seen_before:] if v["cause"] is not None]
    if connection.vendor == "sqlite":
        assert all(v["level"] != "running" for v in failed_closed)
    else:
        assert failed_closed == []
    # Either way the clients come back to fresh heartbeats, at the audited halt.
    wait_for(lambda: (v := probe.current() or {}).get("level") == "halt" and v.get("cause") is None, timeout=10)
    figure("reconciler frozen", "client fail-closed during the takeover", f"{len(failed_closed)} times")

    t_term = time.monotonic()
    stack.kill(other, signal.SIGTERM)  # a clean stop releases the lease at once
    wait_for(lambda: leader(client, "reconciler", stack) == first, timeout=TAKEOVER_BOUND)
    figure("reconciler stopped cleanly", "follower took over after",
           f"{(time.monotonic() - t_term) * 1000:.0f} ms")
    client.set("trading_switch", "kill")
    wait_for(lambda: Event.objects.filter(action="out_of_band", new_level="kill").exists(), timeout=5)
    assert Event.objects.filter(action="out_of_band").count() == 2
    figure("reconciler frozen", "events recorded twice", 0)


def test_two_sweeps_cancel_each_rogue_order_once_across_a_takeover(stack, trader):
    demo_data.seed_demo_data()
    services.activate(scope="account:DU111111", level="halt", reason="rogue desk", actor=trader, source="api")
    [run] = BrokerRun.objects.filter(kind=RunKind.SWITCH)
    broker_runs.execute_run(run_id=run.pk)  # the switch run is done: the account is the sweep's now
    stack.start("sweep")
    stack.start_process("sweep", label="sweep-b")
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    first = wait_for(lambda: leader(client, "sweep", stack), timeout=20)
    other = "sweep-b" if first == "sweep" else "sweep"

    def rogue(n: int) -> list[int]:
        return [paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=1, limit_price=100,
                                  strategy="rogue").pk for _ in range(n)]

    def cancelled(ids: list[int]) -> bool:
        return PaperOrder.objects.filter(pk__in=ids, status="cancelled").count() == len(ids)

    before = rogue(10)
    wait_for(lambda: cancelled(before), timeout=10)
    stack.signal(first, signal.SIGSTOP)
    t_stop = time.monotonic()
    wait_for(lambda: leader(client, "sweep", stack) == other, timeout=TAKEOVER_BOUND)
    figure("sweep frozen", "follower took over after", f"{(time.monotonic() - t_stop) * 1000:.0f} ms")
    after = rogue(10)
    wait_for(lambda: cancelled(after), timeout=10)
    woken_log = stack.logs[first]
    mark = woken_log.stat().st_size
    last_run = BrokerRun.objects.order_by("-pk").values_list("pk", flat=True).first()
    stack.signal(first, signal.SIGCONT)  # the woken sweep must follow, not sweep beside the leader
    for _ in range(5):
        batch = rogue(10)
        wait_for(lambda batch=batch: cancelled(batch), timeout=10)
        after += batch
        time.sleep(0.5)
    assert leader(client, "sweep", stack) == other
    with woken_log.open("rb") as log:
        log.seek(mark)
        # The woken one swept nothing: no run of its after the wake (a line about a run
        # from before the freeze may still come out of its output buffer).
        runs = [int(n) for n in re.findall(rb"sweep run (\d+):", log.read())]
        assert [n for n in runs if n > last_run] == []
    actions = list(BrokerAction.objects.filter(run__kind=RunKind.SWEEP).values_list("broker_order_id", flat=True))
    assert sorted(actions) == sorted(str(pk) for pk in before + after)  # each order once, none twice
    figure("sweep frozen", "orders cancelled twice", len(actions) - len(set(actions)))
