"""The reconciler's decision table, case by case: database state × Redis state → one
named case and its action (killswitch/distribution/decisions.py). Pure: no I/O."""

from __future__ import annotations

import pytest

from killswitch.distribution.decisions import Case, Do, decide
from killswitch.distribution.publish import RedisView, Snapshot

DB = Snapshot(version=7, levels={"global": "halt", "account:DU1": "kill"})


def view(*, switch: str | None = "halt", version: str | None = "7", levels: dict | None = None,
         log: bool = True, wrong: tuple[str, ...] = (), pending: int = 0) -> RedisView:
    state = dict(DB.levels if levels is None else levels)
    if version is not None:
        state["version"] = version
    state["updated_at"] = "2026-12-01T00:00:00Z"
    return RedisView(switch, state, log, wrong, pending)


@pytest.mark.parametrize(("redis", "case", "do"), [
    (view(), Case.IN_SYNC, Do.NOTHING),
    (view(wrong=("killswitch:state",)), Case.WRONG_TYPE, Do.ALERT_AND_FORCE),
    (view(version=None, levels={}), Case.LOST, Do.JUDGE_LOSS),
    (view(version="not-a-number"), Case.LOST, Do.JUDGE_LOSS),
    (view(pending=1, levels={"global": "kill", "account:DU1": "kill"}), Case.OUTAGE_PENDING, Do.NOTHING),
    (view(version="99999999999"), Case.AHEAD, Do.ALERT_AND_FORCE),
    (view(version="6"), Case.BEHIND, Do.REPUBLISH),
    (view(levels={"global": "running", "account:DU1": "kill"}), Case.LEVELS_EDITED, Do.ALERT_AND_FORCE),
    (view(levels={"global": "halt"}), Case.LEVELS_EDITED, Do.ALERT_AND_FORCE),
    (view(switch=None), Case.SWITCH_DELETED, Do.RESTORE),
    (view(switch="HALT "), Case.SWITCH_SPELLING, Do.REPUBLISH),
    (view(switch="running"), Case.SWITCH_OUT_OF_BAND, Do.JUDGE_SWITCH),
    (view(switch="kill"), Case.SWITCH_OUT_OF_BAND, Do.JUDGE_SWITCH),
    (view(switch="banana"), Case.SWITCH_OUT_OF_BAND, Do.JUDGE_SWITCH),
    (view(log=False), Case.LOG_MISSING, Do.REBUILD_LOG),
])
def test_each_case_of_the_table(redis, case, do):
    decision = decide(DB, redis)
    assert (decision.case, decision.do) == (case, do)


def test_every_case_of_the_table_is_reachable():
    """A case nobody can reach is dead code in the decision table."""
    reached = {decide(DB, v).case for v in (
        view(), view(wrong=("x",)), view(version=None, levels={}), view(pending=1), view(version="8"),
        view(version="6"), view(levels={}), view(switch=None), view(switch="HALT "), view(switch="kill"),
        view(log=False))}
    assert reached == set(Case)


def test_tampering_findings_name_what_was_found():
    ahead = decide(DB, view(version="99999999999"))
    assert "99999999999" in ahead.finding and "7" in ahead.finding
    edited = decide(DB, view(levels={"global": "running", "account:DU1": "kill"}))
    assert "global=running" in edited.finding and "global=halt" in edited.finding
    wrong = decide(DB, view(wrong=("trading_switch", "killswitch:state")))
    assert "trading_switch" in wrong.finding and "killswitch:state" in wrong.finding


def test_a_lost_redis_wins_over_pending_items():
    """An emptied Redis is restored first, whatever else it holds."""
    assert decide(DB, view(version=None, levels={}, pending=3)).case is Case.LOST
