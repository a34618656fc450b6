"""Scenario files for the standalone gateway (demos, manual drills).

A scenario is a JSON object::

    {
      "accounts": ["DU111111", "DU222222"],
      "implicitStocks": false,                 # optional; default false: only listed contracts exist
      "contracts": {"495512563": {"symbol": "ES", "secType": "FUT", "exchange": "CME",
                                  "currency": "USD", "multiplier": "50",
                                  "lastTradeDateOrContractMonth": "20261218", ...}},
      "positions": [{"account": "DU111111", "conId": 495512563, "quantity": 5,
                     "avgCost": 250000.0}],   # avgCost as IB reports it: price x multiplier
      "orders": [{"account": "DU111111", "conId": 495512563, "action": "SELL", "quantity": 1,
                  "orderType": "LMT", "lmtPrice": 5100, "orderRef": "momo", "clientId": 7}],
      "prices": {"495512563": 5010.25, "265598": {"last": 195.1, "bid": 195.0, "ask": 195.2,
                                                  "close": 193.0}}
    }

Contract fields use IB's names (:data:`.contracts.IB_NAMES`); ``orders`` and
``prices`` are optional.  Every problem is reported as a :class:`ScenarioError`
naming where it is and what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contracts import IB_NAMES, ContractSpec, make_contract

if TYPE_CHECKING:
    from .gateway import FakeGateway

_TOP = {"accounts", "implicitStocks", "contracts", "positions", "orders", "prices"}
_POSITION = {"account", "conId", "quantity", "avgCost"}
_ORDER = {"account", "conId", "action", "quantity", "orderType", "lmtPrice", "auxPrice",
          "orderRef", "clientId", "exchange"}
_PRICE = {"last", "bid", "ask", "close"}


class ScenarioError(ValueError):
    """A scenario file is not valid; the message says where and what is expected."""


@dataclass
class Scenario:
    accounts: list[str]
    implicit_stocks: bool = False
    contracts: list[ContractSpec] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    prices: dict[int, dict[str, float]] = field(default_factory=dict)

    def apply(self, gateway: FakeGateway) -> None:
        """Load contracts, prices, positions and working orders into ``gateway`` (in that
        order, so positions open at the listed prices).  The gateway's accounts must be
        the scenario's.  Raises ValueError if the gateway refuses something."""
        gateway.implicit_stocks = self.implicit_stocks
        for spec in self.contracts:
            fields = {k: v for k, v in spec.as_dict().items() if k not in ("implicit",)}
            gateway.add_contract(**fields)
        for con_id, quote in self.prices.items():
            gateway.set_price(con_id, quote["last"], bid=quote.get("bid"), ask=quote.get("ask"),
                              close=quote.get("close"))
        for p in self.positions:
            gateway.set_position(p["account"], p["conId"], p["quantity"], p["avgCost"])
        for o in self.orders:
            order_type = o.get("orderType", "LMT").upper()
            gateway.add_working_order(
                o["account"], o["conId"], o["action"], o["quantity"], o.get("lmtPrice"),
                order_ref=o.get("orderRef", ""), client_id=o.get("clientId", 0),
                order_type=order_type, stop_price=o.get("auxPrice"), exchange=o.get("exchange"),
            )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read it: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"not valid JSON: {exc}") from exc
    return parse_scenario(data)


def _keys(where: str, obj: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - set(obj)
    if missing:
        raise ScenarioError(f"{where}: missing {sorted(missing)}")
    return obj


def _mapping(where: str, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected an object keyed by conId, got {type(obj).__name__}")
    return obj


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _con_id(where: str, value: Any, known: set[int]) -> int:
    try:
        con_id = int(value)
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: conId must be an integer, got {value!r}") from None
    if con_id not in known:
        raise ScenarioError(f"{where}: conId {con_id} is not among the scenario's contracts")
    return con_id


def parse_scenario(data: Any) -> Scenario:
    """Validate a decoded scenario (see the module docstring); raises ScenarioError."""
    top = _keys("scenario", data, _TOP, {"accounts", "contracts", "positions"})
    accounts = top["accounts"]
    if not (isinstance(accounts, list) and accounts and all(isinstance(a, str) and a for a in accounts)):
        raise ScenarioError("accounts: expected a non-empty list of account codes")
    implicit = top.get("implicitStocks", False)
    if not isinstance(implicit, bool):
        raise ScenarioError("implicitStocks: expected true or false")

    specs: list[ContractSpec] = []
    for key, entry in _mapping("contracts", top["contracts"]).items():
        where = f"contracts[{key!r}]"
        entry = _keys(where, entry, set(IB_NAMES), {"symbol", "secType", "exchange", "currency"})
        if not key.isdigit():
            raise ScenarioError(f"{where}: keys are conIds (digits), got {key!r}")
        if "conId" in entry and entry["conId"] != int(key):
            raise ScenarioError(f"{where}: conId {entry['conId']!r} differs from its key")
        kw = {IB_NAMES[k]: v for k, v in entry.items()}
        kw["con_id"] = int(key)
        try:
            specs.append(make_contract(**kw))
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from exc
    known = {s.con_id for s in specs}

    if not isinstance(top["positions"], list):
        raise ScenarioError("positions: expected a list")
    positions = []
    for i, entry in enumerate(top["positions"]):
        where = f"positions[{i}]"
        entry = _keys(where, entry, _POSITION, _POSITION)
        if entry["account"] not in accounts:
            raise ScenarioError(f"{where}: account {entry['account']!r} is not in accounts {accounts}")
        positions.append({"account": entry["account"], "conId": _con_id(where, entry["conId"], known),
                          "quantity": _number(f"{where}.quantity", entry["quantity"]),
                          "avgCost": _number(f"{where}.avgCost", entry["avgCost"])})

    orders = []
    if not isinstance(top.get("orders", []), list):
        raise ScenarioError("orders: expected a list")
    for i, entry in enumerate(top.get("orders", [])):
        where = f"orders[{i}]"
        entry = dict(_keys(where, entry, _ORDER, {"account", "conId", "action", "quantity"}))
        if entry["account"] not in accounts:
            raise ScenarioError(f"{where}: account {entry['account']!r} is not in accounts {accounts}")
        if str(entry["action"]).upper() not in ("BUY", "SELL"):
            raise ScenarioError(f"{where}.action: expected BUY or SELL, got {entry['action']!r}")
        if str(entry.get("orderType", "LMT")).upper() not in ("LMT", "STP", "STP LMT"):
            raise ScenarioError(f"{where}.orderType: working orders are LMT, STP or STP LMT")
        entry["conId"] = _con_id(where, entry["conId"], known)
        entry["quantity"] = _number(f"{where}.quantity", entry["quantity"])
        for name in ("lmtPrice", "auxPrice"):
            if name in entry:
                entry[name] = _number(f"{where}.{name}", entry[name])
        orders.append(entry)

    prices: dict[int, dict[str, float]] = {}
    for key, value in _mapping("prices", top.get("prices", {})).items():
        where = f"prices[{key!r}]"
        con_id = _con_id(where, key, known)
        if isinstance(value, dict):
            quote = _keys(where, value, _PRICE, {"last"})
            prices[con_id] = {k: _number(f"{where}.{k}", v) for k, v in quote.items()}
        else:
            prices[con_id] = {"last": _number(where, value)}
    return Scenario(list(accounts), implicit, specs, positions, orders, prices)
