"""Every MT5 trade return code, end to end: the fake terminal answers the first removal
and the first closing deal of a kill with it, and the run (a real Celery worker, the
real mt5linux client) does what the code calls for, with the code's name on record."""

from __future__ import annotations

import pytest

from brokers.adapters.mt5.retcodes import REQUOTES, SUCCESS, TERMINAL_WIDE, TRADE_RETCODES
from brokers.models import BrokerAction

from ..conftest import wait_runs_finished
from .mt5_stack import ACCOUNT, activate, closing_deals, orders, positions

pytestmark = pytest.mark.django_db(transaction=True)

DEAL, REMOVE = 1, 8
# Answers about the closing deal that the adapter resolves before it reports: a fresh
# quote (requotes), the next filling mode (10030), the ticket's volume re-read (10038).
SOLVED_IN_PLACE = REQUOTES | {10030, 10038}
CODES = sorted(set(TRADE_RETCODES) - SUCCESS)


@pytest.mark.parametrize("code", CODES, ids=[f"{c}-{TRADE_RETCODES[c].name}" for c in CODES])
def test_the_first_removal_and_the_first_closing_deal_answered_with_the_code(terminal, code):
    rc = TRADE_RETCODES[code]
    order = terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07)
    ticket = terminal.add_position("EURUSD", "buy", 0.10)
    terminal.fail_next(code, count=1, actions=[REMOVE])
    terminal.fail_next(code, count=1, actions=[DEAL])
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished(timeout=60)

    if code in TERMINAL_WIDE and not rc.retryable:
        # AutoTrading off: nothing can be done at this terminal; the run fails at once, naming it.
        assert (run.state, run.attempts) == ("failed", 1)
        assert rc.name in run.error and run.alert_event_seq
        assert set(orders(terminal)) == {order} and set(positions(terminal)) == {ticket}
        return

    assert run.state == "completed"
    assert orders(terminal) == {} and positions(terminal) == {}
    assert [d["position_id"] for d in closing_deals(terminal)] == [ticket]  # closed once
    [cancel] = run.actions.filter(action="cancel")
    # The first removal did not remove it; a later one did (an attempt cut short by a
    # terminal-wide code left its row pending: that removal is counted by the next).
    assert (cancel.outcome, cancel.attempts) == ("cancelled", 1 if code in TERMINAL_WIDE else 2)
    closes = list(BrokerAction.objects.filter(action="close").order_by("id"))
    if code in SOLVED_IN_PLACE:
        assert [a.outcome for a in closes] == ["filled"]
        assert str(code) in closes[0].detail
    elif code in TERMINAL_WIDE:
        # No link to the trade server: the attempt stops and is retried; the deal it did not
        # execute is found nowhere by its reference and is sent again.
        assert [a.outcome for a in closes] == ["error", "filled"] and run.attempts >= 2
    else:
        # 10036 answered while the ticket is in fact open: sent again, like a retryable code.
        expected = "cancelled" if rc.retryable or code == 10036 else "rejected"
        assert [a.outcome for a in closes] == [expected, "filled"]
        assert f"{code} {rc.name}" in closes[0].detail and "nothing executed" in closes[0].detail
