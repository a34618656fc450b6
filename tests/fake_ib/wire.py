"""Outgoing message layouts, field by field, as ib_async 2.1.0 decodes them at SERVER_VERSION.

Each function returns the list of fields of one message (message id first);
:meth:`protocol.Conn.send` frames it.
"""

from __future__ import annotations

from typing import Any

from .contracts import ContractSpec
from .protocol import (
    OUT_BOND_CONTRACT_DATA,
    OUT_COMMISSION_REPORT,
    OUT_COMPLETED_ORDER,
    OUT_CONTRACT_DATA,
    OUT_EXECUTION_DATA,
    OUT_OPEN_ORDER,
    OUT_ORDER_STATUS,
    OUT_PNL,
    OUT_PNL_SINGLE,
    OUT_PORTFOLIO_VALUE,
    OUT_POSITION,
    OUT_POSITION_MULTI,
    UNSET_DOUBLE,
    ib_time,
    qty_text,
)
from .state import Execution, Order, Position

_TIME_ZONES = {"CME": "US/Central", "CBOT": "US/Central", "GLOBEX": "US/Central",
               "NYMEX": "US/Central", "COMEX": "US/Central", "EUREX": "MET"}
_ORDER_TYPES = "LMT,MKT,STP,STP LMT"


def contract11(spec: ContractSpec, exchange: str) -> list[Any]:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
    currency, localSymbol, tradingClass (the layout of position, openOrder, execDetails)."""
    return [spec.con_id, spec.symbol, spec.sec_type, spec.last_trade_date, spec.strike,
            spec.right, spec.multiplier, exchange, spec.currency, spec.local_symbol,
            spec.trading_class]


def position_fields(pos: Position) -> list[Any]:
    # TWS reports a position's listing exchange only (empty for most derivatives), so an
    # order on a position's contract needs its exchange filled in (qualifyContracts).
    return [OUT_POSITION, 3, pos.account, *contract11(pos.contract, pos.contract.primary_exchange),
            qty_text(pos.shown_qty), pos.shown_avg_cost]


def position_multi_fields(req_id: int, pos: Position, model: str) -> list[Any]:
    return [OUT_POSITION_MULTI, 1, req_id, pos.account,
            *contract11(pos.contract, pos.contract.primary_exchange),
            qty_text(pos.shown_qty), pos.shown_avg_cost, model]


def portfolio_fields(pos: Position, mark: float) -> list[Any]:
    """updatePortfolio of the reported position; the exchange slot is primaryExchange."""
    value = pos.shown_qty * mark * pos.contract.factor
    return [
        OUT_PORTFOLIO_VALUE, 8, *contract11(pos.contract, pos.contract.primary_exchange),
        qty_text(pos.shown_qty), mark, value, pos.shown_avg_cost,
        value - pos.shown_qty * pos.shown_avg_cost, pos.realized, pos.account,
    ]


def status_fields(o: Order) -> list[Any]:
    return [OUT_ORDER_STATUS, o.order_id, o.status, o.filled, o.remaining, o.avg_fill_price,
            o.perm_id, 0, o.last_fill_price, o.client_id, "", 0.0]


def open_order_fields(o: Order, what_if_margin: str | None = None) -> list[Any]:
    """openOrder as laid out for SERVER_VERSION (no faProfile, with the 170+ peg fields)."""
    what_if = what_if_margin is not None
    m = what_if_margin or ""
    return [
        OUT_OPEN_ORDER, o.order_id, *contract11(o.contract, o.exchange),
        o.action, o.qty, o.order_type, o.limit_price, o.aux_price, o.tif,
        "", o.account, "O", 0, o.order_ref, o.client_id, o.perm_id,  # ocaGroup .. permId
        o.outside_rth, False, 0.0, "", "",  # hidden, discretionaryAmt, goodAfterTime, sharesAllocation
        "", "", "",  # faGroup, faMethod, faPercentage
        "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
        0, "", "", "", "", "",  # auctionStrategy, startingPrice .. stockRangeUpper
        0, False, False, False, "", 0,  # displaySize, blockOrder, sweepToFill, allOrNone, minQty, ocaType
        False, False, "", 0, 0,  # eTradeOnly, firmQuoteOnly, nbboPriceCap, parentId, triggerMethod
        "", "", "", "",  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
        False, "", "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
        "", "", "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        False, "", "", False, False,  # optOutSmartRouting .. notHeld, deltaNeutralContract
        "",  # algoStrategy
        False, what_if, o.status,
        m, m, m, m, m, m, m, m, m,  # margin before / change / after
        1.0 if what_if else "", "", "", o.contract.currency if what_if else "", "",  # commission .. warningText
        False, False,  # randomizeSize, randomizePrice
        0,  # conditions
        "", "", "", "", "", "", "", 0,  # adjustedOrderType .. adjustableTrailingUnit
        "", "", "", "",  # softDollarTier name/value/displayName, cashQty
        False, False, "", False,  # dontUseAutoPriceForHedge .. usePriceMgmtAlgo
        "", "", False,  # duration, postToAts, autoCancelParent
        "", "", "", "", "",  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsets
    ]


def completed_order_fields(o: Order) -> list[Any]:
    """completedOrder as laid out for SERVER_VERSION."""
    return [
        OUT_COMPLETED_ORDER, *contract11(o.contract, o.exchange),
        o.action, o.qty, o.order_type, o.limit_price, o.aux_price, o.tif,
        "", o.account, "O", 0, o.order_ref, o.perm_id,  # ocaGroup .. permId
        o.outside_rth, False, 0.0, "",  # hidden, discretionaryAmt, goodAfterTime
        "", "", "",  # faGroup, faMethod, faPercentage
        "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
        "", "", "", "", "",  # startingPrice .. stockRangeUpper
        0, False, False, "", 0, 0,  # displaySize, sweepToFill, allOrNone, minQty, ocaType, triggerMethod
        "", "", "", "",  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
        False, "", "", "", "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
        "", "", "",  # scale sizes, scalePriceIncrement
        "",  # hedgeType
        "", "", False, False,  # clearingAccount, clearingIntent, notHeld, deltaNeutralContract
        "",  # algoStrategy
        False, o.status, False, False,  # solicited, status, randomizeSize, randomizePrice
        0,  # conditions
        "", "", "", False, False,  # trailStopPrice, lmtPriceOffset, cashQty, dontUseAuto.., isOms..
        "", o.filled, 0, False, "", False, False, 0,  # autoCancelDate .. parentPermId
        o.completed_time, o.completed_status,
        "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf
    ]


def exec_fields(req_id: int, ex: Execution) -> list[Any]:
    o = ex.order
    return [
        OUT_EXECUTION_DATA, req_id, o.order_id, *contract11(o.contract, ex.venue),
        ex.exec_id, ib_time(ex.time), o.account, ex.venue, ex.side, ex.shares, ex.price,
        o.perm_id, o.client_id, 0, ex.cum_qty, ex.avg_price, o.order_ref,
        "", "", "", 1, False,  # evRule, evMultiplier, modelCode, lastLiquidity, pendingPriceRevision
    ]


def commission_fields(ex: Execution) -> list[Any]:
    realized = UNSET_DOUBLE if ex.realized_pnl is None else round(ex.realized_pnl, 2)
    return [OUT_COMMISSION_REPORT, 1, ex.exec_id, ex.commission, ex.order.contract.currency,
            realized, "", ""]


def contract_data_fields(req_id: int, spec: ContractSpec, exchange: str,
                         under: ContractSpec | None) -> list[Any]:
    """contractData (no version field from 164) or, for bonds, bondContractData."""
    if spec.sec_type == "BOND":
        return _bond_data_fields(req_id, spec, exchange)
    zone = _TIME_ZONES.get(spec.exchange, "US/Eastern")
    derivative = spec.sec_type in ("FUT", "OPT", "FOP")
    return [
        OUT_CONTRACT_DATA, req_id, spec.symbol, spec.sec_type, spec.last_trade_date, spec.strike,
        spec.right, exchange, spec.currency, spec.local_symbol, spec.market_name,
        spec.trading_class, spec.con_id, spec.min_tick, spec.multiplier, _ORDER_TYPES,
        ",".join(spec.valid_exchanges), spec.price_magnifier, spec.under_con_id, spec.long_name,
        spec.primary_exchange, spec.last_trade_date[:6] if derivative else "",
        "", "", "", zone, "", "", "", "", 0,  # industry .. evMultiplier, numSecIds
        1, under.symbol if under else "", under.sec_type if under else "",  # aggGroup, underSymbol/SecType
        "26", spec.last_trade_date if derivative else "",  # marketRuleIds, realExpirationDate
        "COMMON" if spec.sec_type == "STK" else "",  # stockType
        _min_size(spec), _min_size(spec), _min_size(spec),  # minSize, sizeIncrement, suggestedSizeIncrement
    ]


def _bond_data_fields(req_id: int, spec: ContractSpec, exchange: str) -> list[Any]:
    # Bonds carry the maturity in lastTimes and no primaryExchange/localSymbol/multiplier.
    # The coupon is left empty: ib_async 2.1.0 parses it with int(), so "4.25" would break it.
    return [
        OUT_BOND_CONTRACT_DATA, req_id, spec.symbol, spec.sec_type, spec.symbol, "",
        spec.last_trade_date, "", "", "GOVT", "FIXED", False, False, False, "",
        exchange, spec.currency, spec.market_name, spec.trading_class, spec.con_id, spec.min_tick,
        _ORDER_TYPES, ",".join(spec.valid_exchanges), "", "", False, "", spec.long_name,
        "", "", 0,  # evRule, evMultiplier, numSecIds
        1, "26", 1, 1, 1,  # aggGroup, marketRuleIds, minSize, sizeIncrement, suggestedSizeIncrement
    ]


def _min_size(spec: ContractSpec) -> float:
    return {"CASH": 1, "CRYPTO": 0.0001}.get(spec.sec_type, 1)


def pnl_fields(req_id: int, figures: dict[str, float]) -> list[Any]:
    return [OUT_PNL, req_id, figures["daily"], figures["unrealized"], figures["realized"]]


def pnl_single_fields(req_id: int, figures: dict[str, float]) -> list[Any]:
    return [OUT_PNL_SINGLE, req_id, qty_text(figures["position"]), figures["daily"],
            figures["unrealized"], figures["realized"], figures["value"]]
