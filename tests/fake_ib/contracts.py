"""Contracts the fake gateway knows, keyed by conId, and how a request finds one.

Every instrument is a :class:`ContractSpec`.  Stocks may be registered
implicitly by symbol (``set_price("AAPL", ...)``, or an order on
``Stock("AAPL", "SMART", "USD")`` for a symbol no explicit contract uses), with
the deterministic conId :func:`con_id_for`; everything else is registered
explicitly.  A request that names no known contract is answered like IB does,
with error 200 "No security definition has been found for the request".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .protocol import Reader

#: Security types the fake trades.
SEC_TYPES = ("STK", "FUT", "OPT", "FOP", "CASH", "CFD", "CRYPTO", "BOND")
#: Listing exchange of implicit stocks; positions report it in ``exchange`` like TWS does.
IMPLICIT_PRIMARY = "NASDAQ"
#: Exchanges an implicit stock may be routed to.
IMPLICIT_ROUTES = ("SMART", "NASDAQ", "ISLAND")
#: IB's field names (scenario files, error messages) -> ContractSpec attribute.
IB_NAMES = {
    "conId": "con_id", "symbol": "symbol", "secType": "sec_type", "exchange": "exchange",
    "primaryExchange": "primary_exchange", "currency": "currency", "multiplier": "multiplier",
    "lastTradeDateOrContractMonth": "last_trade_date", "strike": "strike", "right": "right",
    "localSymbol": "local_symbol", "tradingClass": "trading_class", "longName": "long_name",
    "marketName": "market_name", "minTick": "min_tick", "priceMagnifier": "price_magnifier",
    "validExchanges": "valid_exchanges", "underConId": "under_con_id",
}
_DERIVATIVES = ("FUT", "OPT", "FOP")


class NoSecurityDefinition(LookupError):
    """No contract (or more than one) matches a request; IB answers error 200."""


def con_id_for(symbol: str) -> int:
    """Deterministic contract id of an implicit stock symbol (stable across processes)."""
    return 1_000_000 + zlib.crc32(symbol.encode()) % 90_000_000


@dataclass(frozen=True)
class ContractSpec:
    """One instrument; build it with :func:`make_contract`, which validates and fills defaults."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    primary_exchange: str = ""
    multiplier: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    long_name: str = ""
    market_name: str = ""
    min_tick: float = 0.01
    price_magnifier: int = 1
    valid_exchanges: tuple[str, ...] = ()
    under_con_id: int = 0
    implicit: bool = field(default=False, compare=False)

    @property
    def factor(self) -> float:
        """Currency value of one unit of quantity per unit of price.

        The multiplier for futures and options; 10 for bonds (quoted in percent of a
        1,000 face value, quantity in bonds); 1 otherwise (FX quantities are in the
        base currency, prices in the quote currency).
        """
        if self.multiplier:
            return float(self.multiplier)
        return 10.0 if self.sec_type == "BOND" else 1.0

    def describe(self) -> str:
        return f"{self.local_symbol or self.symbol} {self.sec_type} (conId {self.con_id})"

    def as_dict(self) -> dict[str, Any]:
        """Snapshot with snake_case keys (valid_exchanges as a list)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["valid_exchanges"] = list(self.valid_exchanges)
        return d


def _normalize_right(right: str) -> str:
    return {"CALL": "C", "PUT": "P"}.get(right.upper(), right.upper())


def _normalize_multiplier(value: Any) -> str:
    if value in (None, "", 0):
        return ""
    number = float(value)
    if number <= 0:
        raise ValueError(f"multiplier must be positive, not {value!r}")
    return str(int(number)) if number == int(number) else str(number)


def make_contract(**kw: Any) -> ContractSpec:
    """A validated ContractSpec from snake_case fields (see :data:`IB_NAMES`).

    Required: ``con_id`` (> 0), ``symbol``, ``sec_type`` (one of SEC_TYPES),
    ``exchange``, ``currency``; futures and options also need
    ``last_trade_date`` and ``multiplier``, options ``strike`` and ``right``.
    Raises ValueError naming the field (by its IB name) and what is expected.
    """
    unknown = set(kw) - set(IB_NAMES.values())
    if unknown:
        raise ValueError(f"unknown contract fields {sorted(unknown)}; expected some of "
                         f"{sorted(IB_NAMES.values())}")
    con_id = kw.get("con_id")
    if not isinstance(con_id, int) or isinstance(con_id, bool) or con_id <= 0:
        raise ValueError(f"conId must be a positive integer, not {con_id!r}")
    where = f"contract {con_id}"
    for name in ("symbol", "sec_type", "exchange", "currency"):
        if not isinstance(kw.get(name), str) or not kw[name]:
            ib = next(k for k, v in IB_NAMES.items() if v == name)
            raise ValueError(f"{where}: {ib} is required (a non-empty string)")
    sec_type = kw["sec_type"].upper()
    if sec_type not in SEC_TYPES:
        raise ValueError(f"{where}: secType {kw['sec_type']!r} is not one of {', '.join(SEC_TYPES)}")
    try:
        multiplier = _normalize_multiplier(kw.get("multiplier"))
        strike = float(kw.get("strike") or 0.0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: multiplier and strike must be positive numbers ({exc})") from exc
    right = _normalize_right(str(kw.get("right") or ""))
    last = str(kw.get("last_trade_date") or "")
    if sec_type in _DERIVATIVES:
        if not (last.isdigit() and len(last) in (6, 8)):
            raise ValueError(f"{where}: lastTradeDateOrContractMonth is required for {sec_type} "
                             f"(yyyymmdd or yyyymm), got {last!r}")
        if not multiplier:
            raise ValueError(f"{where}: multiplier is required for {sec_type} (e.g. '50')")
    if sec_type in ("OPT", "FOP"):
        if strike <= 0 or right not in ("C", "P"):
            raise ValueError(f"{where}: {sec_type} needs strike > 0 and right C/P (or CALL/PUT), "
                             f"got strike={strike!r} right={kw.get('right')!r}")
    elif strike or right:
        raise ValueError(f"{where}: strike and right are only for OPT and FOP, not {sec_type}")
    currency = kw["currency"].upper()
    local = kw.get("local_symbol") or (f"{kw['symbol']}.{currency}" if sec_type == "CASH" else kw["symbol"])
    trading_class = kw.get("trading_class") or (local if sec_type == "CASH" else kw["symbol"])
    primary = kw.get("primary_exchange") or ""
    routes = kw.get("valid_exchanges") or ()
    if isinstance(routes, str):
        routes = tuple(r for r in routes.split(",") if r)
    if not routes:
        routes = tuple(dict.fromkeys(
            r for r in (kw["exchange"], "SMART" if sec_type in ("STK", "OPT", "CFD") else "", primary) if r
        ))
    if kw["exchange"] not in routes:
        raise ValueError(f"{where}: exchange {kw['exchange']!r} is not among validExchanges {routes}")
    try:
        return ContractSpec(
            con_id=con_id, symbol=kw["symbol"], sec_type=sec_type, exchange=kw["exchange"],
            currency=currency, primary_exchange=primary, multiplier=multiplier,
            last_trade_date=last, strike=strike, right=right, local_symbol=local,
            trading_class=trading_class, long_name=kw.get("long_name") or kw["symbol"],
            market_name=kw.get("market_name") or trading_class,
            min_tick=float(kw.get("min_tick") or (0.00005 if sec_type == "CASH" else 0.01)),
            price_magnifier=int(kw.get("price_magnifier") or 1), valid_exchanges=tuple(routes),
            under_con_id=int(kw.get("under_con_id") or 0),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: minTick, priceMagnifier and underConId must be numbers "
                         f"({exc})") from exc


@dataclass(frozen=True)
class ContractQuery:
    """The 12 contract fields of a request (reqContractDetails, reqMktData, placeOrder)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    @classmethod
    def read(cls, r: Reader) -> ContractQuery:
        """Read conId .. tradingClass in ib_async's Contract wire order."""
        con_id, symbol, sec_type, last = r.integer(), r.text(), r.text().upper(), r.text()
        strike, right, multiplier = r.number() or 0.0, _normalize_right(r.text()), r.text()
        exchange, primary, currency = r.text(), r.text(), r.text().upper()
        local, trading_class = r.text(), r.text()
        return cls(con_id, symbol, sec_type, last, strike, right, multiplier, exchange, primary,
                   currency, local, trading_class)

    def wants_stock_by_symbol(self) -> bool:
        """Could this request be served by an implicit stock?"""
        return bool(
            not self.con_id and self.symbol and self.sec_type in ("", "STK")
            and self.currency in ("", "USD") and not (self.last_trade_date or self.strike or self.right)
            and self.local_symbol in ("", self.symbol) and not self.trading_class
        )


def _fits(spec: ContractSpec, q: ContractQuery) -> bool:
    """Does every field the request sets agree with ``spec`` (unset fields are wildcards)?"""
    if q.symbol and q.symbol != spec.symbol:
        return False
    if q.sec_type and q.sec_type != spec.sec_type:
        return False
    if q.currency and q.currency != spec.currency:
        return False
    if q.last_trade_date and not spec.last_trade_date.startswith(q.last_trade_date):
        return False
    if q.strike and abs(q.strike - spec.strike) > 1e-9:
        return False
    if q.right and q.right != spec.right:
        return False
    if q.multiplier:
        try:
            if float(q.multiplier) != float(spec.multiplier or 1):
                return False
        except ValueError:
            return False
    if q.local_symbol and q.local_symbol != spec.local_symbol:
        return False
    if q.trading_class and q.trading_class != spec.trading_class:
        return False
    if q.exchange and q.exchange not in spec.valid_exchanges:
        return False
    return not (q.primary_exchange and spec.primary_exchange and q.primary_exchange != spec.primary_exchange)


class ContractRegistry:
    """Contracts by conId.  Not thread-safe: used on the gateway loop only."""

    def __init__(self) -> None:
        self._by_id: dict[int, ContractSpec] = {}

    def add(self, spec: ContractSpec) -> ContractSpec:
        """Register ``spec``; adding an identical contract again is a no-op.

        Raises ValueError if the conId is taken by a different contract, or an
        explicit stock duplicates an implicit one (same symbol and currency).
        """
        old = self._by_id.get(spec.con_id)
        if old is not None:
            if old == spec:
                return old
            raise ValueError(f"conId {spec.con_id} is already {old.describe()}")
        if spec.sec_type == "STK" and not spec.implicit:
            for other in self._by_id.values():
                if other.implicit and other.symbol == spec.symbol and other.currency == spec.currency:
                    raise ValueError(
                        f"stock {spec.symbol} was already registered implicitly as conId "
                        f"{other.con_id}; register it explicitly before using its symbol"
                    )
        self._by_id[spec.con_id] = spec
        return spec

    def get(self, con_id: int) -> ContractSpec | None:
        return self._by_id.get(con_id)

    def require(self, con_id: int) -> ContractSpec:
        """The contract with ``con_id``; raises KeyError naming it when unknown."""
        spec = self._by_id.get(con_id)
        if spec is None:
            raise KeyError(f"no contract with conId {con_id}; register it with add_contract()")
        return spec

    def all(self) -> list[ContractSpec]:
        return list(self._by_id.values())

    def stock(self, symbol: str) -> ContractSpec:
        """The USD stock ``symbol``, registered implicitly on first use.

        Raises ValueError if several USD stocks use the symbol (pass a conId instead).
        """
        if not symbol:
            raise ValueError("a stock symbol is required")
        found = [s for s in self._by_id.values()
                 if s.sec_type == "STK" and s.symbol == symbol and s.currency == "USD"]
        if len(found) > 1:
            raise ValueError(f"several stocks use symbol {symbol!r}: "
                             f"{[s.con_id for s in found]}; pass the conId")
        if found:
            return found[0]
        return self.add(replace(
            make_contract(con_id=con_id_for(symbol), symbol=symbol, sec_type="STK", exchange="SMART",
                          currency="USD", primary_exchange=IMPLICIT_PRIMARY, trading_class="NMS",
                          long_name=f"{symbol} INC", valid_exchanges=IMPLICIT_ROUTES),
            implicit=True,
        ))

    def find(self, q: ContractQuery, *, implicit_stocks: bool) -> list[ContractSpec]:
        """Every contract matching ``q`` (IB matches on the fields the request sets).

        With a conId, the one contract of that id if the other fields agree.  A stock
        asked for by symbol alone is registered implicitly when ``implicit_stocks`` is
        on and no explicit contract uses that symbol (so ``Stock("ES")`` is refused
        once ES is known as a future).
        """
        if q.con_id:
            spec = self._by_id.get(q.con_id)
            return [spec] if spec is not None and _fits(spec, q) else []
        found = [s for s in self._by_id.values() if _fits(s, q)]
        if not found and implicit_stocks and q.wants_stock_by_symbol() and not any(
            s.symbol == q.symbol and not s.implicit for s in self._by_id.values()
        ):
            spec = self.stock(q.symbol)
            found = [spec] if _fits(spec, q) else []
        return found

    def resolve(self, q: ContractQuery, *, implicit_stocks: bool) -> ContractSpec:
        """The single contract ``q`` names; raises NoSecurityDefinition for none or several."""
        found = self.find(q, implicit_stocks=implicit_stocks)
        if len(found) != 1:
            raise NoSecurityDefinition(
                "no contract" if not found else f"ambiguous: {[s.con_id for s in found]}"
            )
        return found[0]
