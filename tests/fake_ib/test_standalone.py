"""The gateway as a process with a scenario file, and the scenario file's validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ib_async import IB, Contract, ExecutionFilter, MarketOrder

from tests.fake_ib.scenario import ScenarioError, load_scenario, parse_scenario

from .support import ACC1, ACC2, wait_disconnected, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
DESK = Path(__file__).with_name("scenarios") / "desk.json"


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fake_ib.gateway", "--port", "0", *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_standalone_gateway_serves_the_desk_scenario_to_several_clients() -> None:
    proc = start("--scenario", str(DESK))
    clients: list[IB] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()  # bounded: the process prints or exits
        assert line[:1] == ["READY"], (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line[1])
        for client_id in (1, 2):
            ib = IB()
            ib.RequestTimeout = 5
            ib.connect("127.0.0.1", port, clientId=client_id, timeout=5)
            clients.append(ib)
        scenario = json.loads(DESK.read_text())
        expected = {(p["account"], p["conId"]): p["quantity"] for p in scenario["positions"]}
        for ib in clients:
            got = {(p.account, p.contract.conId): p.position for p in ib.positions()}
            assert got == expected
            sec_types = {p.contract.secType for p in ib.positions()}
            assert sec_types == {"STK", "FUT", "OPT", "FOP", "CASH", "CFD", "CRYPTO", "BOND"}
        es = next(p for p in clients[0].positions(ACC1) if p.contract.secType == "FUT")
        assert (es.contract.localSymbol, es.contract.multiplier, es.avgCost) == ("ESZ6", "50", 250000.0)
        # Working orders from the scenario are visible; only listed contracts exist.
        assert len(clients[0].reqAllOpenOrders()) == len(scenario["orders"])
        assert clients[0].qualifyContracts(Contract(symbol="IBM", secType="STK", exchange="SMART",
                                                    currency="USD")) == [None]
        # One client closes the ES long at the bid; the other sees the fill and the position.
        trade = clients[0].placeOrder(Contract(conId=495512563, exchange="CME"),
                                      MarketOrder("SELL", 5, account=ACC1))
        wait_until(clients[0], trade.isDone)
        assert trade.orderStatus.avgFillPrice == 5010.0
        wait_until(clients[1], lambda: (ACC1, 495512563) not in
                   {(p.account, p.contract.conId) for p in clients[1].positions()})
        [fill] = clients[1].reqExecutions(ExecutionFilter(acctCode=ACC1))
        assert (fill.execution.side, fill.execution.shares, fill.contract.conId) == ("SLD", 5.0, 495512563)
        assert any(p.account == ACC2 and p.contract.conId == 495512563 for p in clients[1].positions())

        os.kill(proc.pid, signal.SIGTERM)  # stopped by pid: it closes every session and exits
        for ib in clients:
            wait_disconnected(ib)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        for ib in clients:
            ib.disconnect()
        proc.kill()
        proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_bad_scenario_file_stops_the_process_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"accounts": [ACC1], "contracts": {
        "1": {"symbol": "ES", "secType": "FUT", "exchange": "CME", "currency": "USD"}}, "positions": []}))
    proc = start("--scenario", str(bad))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "READY" not in out
    assert "contracts['1']: contract 1: lastTradeDateOrContractMonth is required for FUT" in err


def desk() -> dict:
    return json.loads(DESK.read_text())


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("accounts"), r"scenario: missing \['accounts'\]"),
    (lambda d: d.update(accounts=[]), "accounts: expected a non-empty list"),
    (lambda d: d.update(extra=1), r"scenario: unknown keys \['extra'\]"),
    (lambda d: d["contracts"]["265598"].update(secType="ETF"), r"contracts\['265598'\].*secType 'ETF'"),
    (lambda d: d["contracts"]["265598"].update(colour="red"), r"contracts\['265598'\]: unknown keys \['colour'\]"),
    (lambda d: d["contracts"]["265598"].update(conId=1), "differs from its key"),
    (lambda d: d["positions"][0].update(conId=42), r"positions\[0\]: conId 42 is not among"),
    (lambda d: d["positions"][0].update(account="DU999"), r"positions\[0\]: account 'DU999'"),
    (lambda d: d["positions"][0].update(quantity="5"), r"positions\[0\].quantity: expected a number"),
    (lambda d: d["orders"][0].update(orderType="MKT"), r"orders\[0\].orderType: working orders are"),
    (lambda d: d["prices"].update({"265598": {"bid": 1.0}}), r"prices\['265598'\]: missing \['last'\]"),
    (lambda d: d.update(contracts=[]), "contracts: expected an object keyed by conId"),
])
def test_scenario_validation_names_the_problem(change, message) -> None:
    data = desk()
    change(data)
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_scenario_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(broken)
    assert len(load_scenario(DESK).contracts) == 9
