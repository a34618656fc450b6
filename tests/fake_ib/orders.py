"""placeOrder: parsing the message laid out for SERVER_VERSION and the checks TWS applies."""

from __future__ import annotations

from dataclasses import dataclass

from .contracts import ContractQuery
from .protocol import UNSET_DOUBLE, ParseError, Reader

SUPPORTED_ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT")


class Reject(Exception):
    """An order is refused; carries the IB error code and text to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PlaceRequest:
    """The fields of a placeOrder message the fake acts upon."""

    order_id: int
    contract: ContractQuery
    action: str
    qty: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    transmit: bool
    outside_rth: bool
    what_if: bool
    has_conditions: bool


def parse_place_order(fields: list[str]) -> PlaceRequest:
    """Parse a placeOrder message; every field must be consumed (raises ParseError otherwise)."""
    r = Reader(fields)
    order_id = r.integer()
    contract = ContractQuery.read(r)
    r.skip(2)  # secIdType, secId
    action, qty, order_type = r.text(), r.number(), r.text()
    limit_price, aux_price, tif = r.number(), r.number(), r.text()
    _oca_group, account, _open_close, _origin = r.text(), r.text(), r.text(), r.integer()
    order_ref, transmit, _parent_id = r.text(), r.flag(), r.integer()
    r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = r.flag()
    r.skip(1)  # hidden
    if contract.sec_type == "BAG":
        legs = r.integer()
        r.skip(8 * legs)
        r.skip(r.integer())  # order combo leg prices
        r.skip(2 * r.integer())  # smart combo routing params
    # sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, faGroup,
    # faMethod, faPercentage (faProfile is gone since 177), modelCode, shortSaleSlot,
    # designatedLocation, exemptCode, ocaType, rule80A, settlingFirm, allOrNone, minQty,
    # percentOffset, eTradeOnly, firmQuoteOnly, nbboPriceCap, auctionStrategy,
    # startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper,
    # overridePercentageConstraints, volatility, volatilityType
    r.skip(29)
    if r.text():  # deltaNeutralOrderType
        r.skip(1 + 8)
    else:
        r.skip(1)  # deltaNeutralAuxPrice
    # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent,
    # scaleInitLevelSize, scaleSubsLevelSize
    r.skip(6)
    increment = r.number()
    if increment is not None and 0 < increment < UNSET_DOUBLE:
        r.skip(7)
    r.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if r.text():  # hedgeType
        r.skip(1)
    r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.flag():  # delta neutral contract
        r.skip(3)
    if r.text():  # algoStrategy
        r.skip(2 * r.integer())
    r.skip(1)  # algoId
    what_if = r.flag()
    r.skip(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if order_type in ("PEG BENCH", "PEGBENCH"):
        r.skip(5)
    has_conditions = r.integer() > 0

    def request() -> PlaceRequest:
        return PlaceRequest(
            order_id, contract, action.upper(), qty or 0.0, order_type.upper(), limit_price,
            aux_price, tif.upper(), account, order_ref, transmit, outside_rth, what_if,
            has_conditions,
        )

    if has_conditions:
        # Condition layouts vary per type; the fake refuses such orders, and cannot
        # know where the message continues, so stop parsing here.
        return request()
    # adjustedOrderType .. usePriceMgmtAlgo (19), duration, postToAts, autoCancelParent,
    # advancedErrorOverride, manualOrderTime
    r.skip(19 + 5)
    if contract.exchange == "IBKRATS":
        r.skip(1)  # minTradeQty
    if order_type in ("PEG BEST", "PEGBEST"):
        r.skip(1)
        if r.text() == "Infinite":
            r.skip(2)
    elif order_type in ("PEG MID", "PEGMID"):
        r.skip(2)
    if r.left():
        raise ParseError(f"placeOrder has {r.left()} unexpected trailing fields")
    return request()


def check_order(req: PlaceRequest, accounts: tuple[str, ...]) -> str:
    """The account of an acceptable order (contract aside); raises Reject like TWS would."""
    if req.has_conditions:
        raise Reject(201, "Order rejected - reason:Order conditions are not supported by the fake gateway")
    if not req.contract.exchange:
        raise Reject(321, "Error validating request.-'bN' : cause - Missing order exchange")
    account = req.account
    if not account:
        if len(accounts) > 1:
            raise Reject(321, "Error validating request.-'bN' : cause - "
                              "The account code is required for this operation.")
        account = accounts[0]
    if account not in accounts:
        raise Reject(321, f"Error validating request.-'bN' : cause - Invalid account code {account}")
    if req.action not in ("BUY", "SELL"):
        raise Reject(321, f"Error validating request.-'bN' : cause - Invalid side {req.action}")
    if req.qty <= 0:
        raise Reject(434, "The order size cannot be zero.")
    if req.order_type in ("LMT", "STP LMT") and req.limit_price is None:
        raise Reject(321, "Error validating request.-'bN' : cause - Missing limit price")
    if req.order_type in ("STP", "STP LMT") and req.aux_price is None:
        raise Reject(321, "Error validating request.-'bN' : cause - Missing stop price")
    if req.order_type not in SUPPORTED_ORDER_TYPES:
        raise Reject(387, f"Unsupported order type for this exchange and security type: {req.order_type}")
    return account
