"""The drill's figures as pure functions of what it recorded (killswitch/drill/measure.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from killswitch.drill.hooks import BrokerObservation
from killswitch.drill.measure import ClientRecord, Recording, figures, pct
from killswitch.drill.plan import Bounds

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SEED = "Kill switch cooldown active. 9 seconds remaining (cooldown: 10 seconds)."


def recording(**changes) -> Recording:
    rec = Recording(
        accounts=["DRILL01"], activated_at={"DRILL01": T0},
        clients=[ClientRecord("c1", "DRILL01", 1, T0.timestamp() + 0.02, 0.010, 5),
                 ClientRecord("c2", "DRILL01", 1, T0.timestamp() + 0.03, 0.015, 5)],
        broker=BrokerObservation(runs=[{"id": 1, "account": "DRILL01", "state": "completed", "error": "",
                                        "finished_at": T0 + timedelta(seconds=1.5)}],
                                 finished=True, orders_left=0, positions_left=[], seeded_orders=6),
        refusals=[("DRILL01", SEED, 12)], violation_events=1, resumed={"DRILL01": "account:DRILL01 is now running"},
        running_after=["DRILL01"], cooldown_seconds=10, policy_cooldown_minutes=60, audit_ok=True, audit_checked=40)
    for key, value in changes.items():
        setattr(rec, key, value)
    return rec


def by_key(rec: Recording, bounds: Bounds | None = None) -> dict:
    return {f.key: f for f in figures(rec, bounds or Bounds(), ack_timeout=5.0)}


def test_a_clean_drill_passes_every_figure():
    result = by_key(recording())
    assert all(f.ok for f in result.values()), [f for f in result.values() if not f.ok]
    assert result["propagation"].value == "15 ms"
    assert result["run_completed"].detail.startswith("activation to verified flat: 1.50 s")


def test_propagation_misses_its_bound_and_an_unacknowledged_client_is_incomplete():
    assert not by_key(recording(), Bounds(max_propagation_ms=10))["propagation"].ok
    missing = recording(clients=[ClientRecord("c1", "DRILL01", 1, None, None)])
    figure = by_key(missing)["propagation"]
    assert (figure.ok, figure.value) == (False, "incomplete")
    assert not by_key(missing)["acknowledgements"].ok


def test_a_client_that_did_not_exit_on_kill_fails_the_exit_figure():
    rec = recording(clients=[ClientRecord("c1", "DRILL01", 1, T0.timestamp(), 0.01),
                             ClientRecord("c2", "DRILL01", 3, None, 0.01)])
    figure = by_key(rec)["client_exits"]
    assert not figure.ok and figure.value == "1/2 (50%)"


def test_orders_or_positions_left_fail_their_figures():
    rec = recording(broker=BrokerObservation(runs=[], finished=True, orders_left=2,
                                             positions_left=["DRILL01 AAPL 100"], seeded_orders=6))
    result = by_key(rec)
    assert not result["orders_left"].ok and not result["positions_left"].ok and not result["run_completed"].ok
    assert "DRILL01 AAPL 100" in result["positions_left"].detail


def test_a_resume_accepted_inside_the_cooldown_fails():
    figure = by_key(recording(accepted_early=["DRILL01"], refusals=[], violation_events=0))["resume_refused"]
    assert not figure.ok and "ACCEPTED inside the cooldown" in figure.detail


def test_a_refusal_not_in_the_seeds_words_fails():
    rec = recording(refusals=[("DRILL01", "cooldown, wait", 12)])
    assert not by_key(rec)["resume_refused"].ok


def test_a_broken_audit_chain_fails():
    figure = by_key(recording(audit_ok=False, audit_problem="event #3 was changed"))["audit_chain"]
    assert not figure.ok and "event #3" in figure.detail


def test_percentile_is_nearest_rank():
    assert pct([5, 1, 3, 2, 4], 50) == 3 and pct([1, 2], 100) == 2 and pct([7], 1) == 7
