"""The no-I/O core on its own: what it tells a driver to do, and the heartbeat rules,
on a clock the test moves (no Redis needed, nothing timed)."""

from __future__ import annotations

import json

import pytest
from killswitch_client.core import RELOAD, REPORT, WAIT, Core, HeartbeatTrust
from killswitch_client.views import Identity


class Clock:
    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_core(clock: Clock, **kw) -> Core:
    return Core(identity=Identity(name="t", account="DU1", strategy="momo", client_id="h:1:x"),
                stale_after=kw.get("stale_after"), max_stale_after=kw.get("max_stale_after", 5.0),
                backstop_interval=kw.get("backstop_interval", 0.5), report_interval=1.0,
                monotonic=lambda: clock.mono, wall=lambda: clock.wall)


def heartbeat(ts: float, stale_after: float = 5.0) -> str:
    return json.dumps({"type": "heartbeat", "ts": ts, "version": 1, "stale_after": stale_after})


def load(core: Core, clock: Clock, level: str = "running", version: int = 1, **kw) -> None:
    core.loaded(level, {"version": str(version), "global": level}, heartbeat(clock.wall, **kw), {})


def settle(core: Core) -> None:
    """Write whatever report is due, as a driver would."""
    while (action := core.next_action()).kind == REPORT:
        core.reported(action.report)


def test_a_driver_reads_first_then_reports_then_waits(clock):
    core = make_core(clock)
    assert core.view.cause == "connecting"
    core.connected()
    assert core.next_action().kind == RELOAD
    load(core, clock)
    action = core.next_action()
    assert action.kind == REPORT and action.report.ack["version"] == "1"
    core.reported(action.report)
    action = core.next_action()
    assert action.kind == WAIT and 0 < action.timeout <= 0.25


def test_messages_are_never_applied_and_a_burst_costs_one_reload(clock):
    core = make_core(clock)
    core.connected()
    load(core, clock, "halt")
    settle(core)
    forged = {"type": "message", "channel": "killswitch:updates",
              "data": json.dumps({"type": "state", "version": 99, "levels": {"global": "running"}})}
    assert core.messages([forged] * 500) == 500
    assert core.view.level == "halt" and core.view.version == 1  # nothing applied
    assert core.next_action().kind == RELOAD
    load(core, clock, "halt", version=1)
    assert core.next_action().kind == WAIT  # one reload answered all 500
    assert core.messages([{"type": "subscribe", "channel": "x", "data": 1}]) == 0
    assert core.next_action().kind == WAIT


def test_the_backstop_rereads_without_any_message(clock):
    core = make_core(clock, backstop_interval=0.5)
    core.connected()
    load(core, clock)
    settle(core)
    clock.advance(0.49)
    assert core.next_action().kind == WAIT
    clock.advance(0.02)
    assert core.next_action().kind == RELOAD


def test_a_lost_connection_fails_closed_with_backoff(clock):
    core = make_core(clock)
    core.connected()
    load(core, clock)
    delay, warning = core.connection_lost(OSError("reset"))
    assert core.view.cause == "subscription_lost" and core.view.level == "halt"
    assert delay == 0.05 and "subscription_lost" in warning
    delays = [core.connection_lost(OSError("refused"))[0] for _ in range(6)]
    assert core.view.cause == "redis_unreachable"
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    core.connected()
    assert core.next_action().kind == RELOAD  # never trusts what it had before the loss


def test_only_a_known_lifted_kill_rearms_on_kill(clock):
    core = make_core(clock)
    core.connected()
    load(core, clock, "kill")
    assert core.view.is_kill and core.claim_kill() and not core.claim_kill()
    core.connection_lost(OSError("blip"))
    core.connected()
    load(core, clock, "kill")
    assert not core.claim_kill()  # the blip's fail-closed halt did not re-arm it
    load(core, clock, "running", version=2)
    load(core, clock, "kill", version=3)
    assert core.claim_kill()


def test_a_renewed_dead_mans_switch_is_reported_before_the_refresh(clock):
    core = make_core(clock)
    core.connected()
    load(core, clock)
    settle(core)
    assert core.next_action().kind == WAIT
    core.renew("engine")
    core.note_market_data("aapl", clock.wall - 2)
    action = core.next_action()
    assert action.kind == REPORT and action.report.ack is None
    entry = json.loads(action.report.registration)
    assert entry["deadman"] == {"engine": clock.wall} and entry["market_data"] == {"AAPL": clock.wall - 2}
    core.reported(action.report)
    assert core.next_action().kind == WAIT  # market data alone waits for the refresh


# --- heartbeat trust -------------------------------------------------------------------------


def test_heartbeat_age_and_bound(clock):
    trust = HeartbeatTrust(cap=5.0, override=None)
    assert trust.read(heartbeat(clock.wall - 1, 3.0), mono=clock.mono, wall=clock.wall) == clock.mono + 2
    assert trust.bound == 3.0
    assert trust.read(None, mono=clock.mono, wall=clock.wall) is None
    assert trust.read("{", mono=clock.mono, wall=clock.wall) == float("-inf")


@pytest.mark.parametrize("claimed", [1e9, float("inf"), -1, 0, "x", None])
def test_a_bound_above_the_cap_or_unreadable_is_the_cap(clock, claimed):
    trust = HeartbeatTrust(cap=5.0, override=None)
    raw = json.dumps({"ts": clock.wall, "stale_after": claimed})
    assert trust.read(raw, mono=clock.mono, wall=clock.wall) == clock.mono + 5.0


def test_a_heartbeat_that_does_not_advance_expires_one_bound_after_it_was_first_seen(clock):
    trust = HeartbeatTrust(cap=5.0, override=None)
    frozen = heartbeat(clock.wall, 5.0)
    first = trust.read(frozen, mono=clock.mono, wall=clock.wall)
    clock.advance(4.0)
    # Read again (and again): the age rule alone would still allow 1 s; the value has not
    # advanced, so it keeps its first deadline.
    assert trust.read(frozen, mono=clock.mono, wall=clock.wall) == first
    clock.advance(0.5)
    assert trust.read(heartbeat(clock.wall), mono=clock.mono, wall=clock.wall) == clock.mono + 5.0


def test_a_far_future_heartbeat_renews_nothing(clock):
    trust = HeartbeatTrust(cap=5.0, override=None)
    real = trust.read(heartbeat(clock.wall), mono=clock.mono, wall=clock.wall)
    for step in range(20):
        clock.advance(0.5)
        forged = heartbeat(1e12 + step, 1e9)
        assert trust.read(forged, mono=clock.mono, wall=clock.wall) == real
    # The next real heartbeat renews at once (the forged values were not remembered).
    assert trust.read(heartbeat(clock.wall), mono=clock.mono, wall=clock.wall) == clock.mono + 5.0


def test_a_small_clock_skew_still_renews(clock):
    trust = HeartbeatTrust(cap=5.0, override=None)
    trust.read(heartbeat(clock.wall), mono=clock.mono, wall=clock.wall)
    clock.advance(1.0)
    ahead = heartbeat(clock.wall + 0.5)  # the service's clock is 0.5 s ahead
    assert trust.read(ahead, mono=clock.mono, wall=clock.wall) == clock.mono + 5.0


def test_an_override_replaces_the_heartbeats_bound(clock):
    trust = HeartbeatTrust(cap=60.0, override=30.0)
    assert trust.read(heartbeat(clock.wall, 2.0), mono=clock.mono, wall=clock.wall) == clock.mono + 30.0
