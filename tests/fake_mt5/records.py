"""The named tuples the MetaTrader5 module returns, with the real field names and order.

Field lists follow the MetaTrader5 Python documentation (each function's
``_asdict()`` example).  Positional access (``position[0]`` is the ticket) is as
stable as the names, so the order matters.

Every class claims ``__module__ == "MetaTrader5"`` (the real package exposes them
as ``mt5.TradePosition`` and so on).  Consequence across the bridge: the server
can pickle them (``rpyc.classic.obtain`` works on its side), but a Linux client
that has no ``MetaTrader5`` module cannot unpickle them (``ModuleNotFoundError``),
so an adapter has to read fields off the netref (``p.ticket``, ``tuple(p)``,
``dict(p._asdict())``) rather than ``obtain`` whole records.
"""

from __future__ import annotations

from collections import namedtuple

_MODULE = "MetaTrader5"

TERMINAL_INFO_FIELDS = (
    "community_account community_connection connected dlls_allowed trade_allowed "
    "tradeapi_disabled email_enabled ftp_enabled notifications_enabled mqid build maxbars "
    "codepage ping_last community_balance retransmission company name language path "
    "data_path commondata_path"
).split()

ACCOUNT_INFO_FIELDS = (
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert "
    "margin_mode currency_digits fifo_close balance credit profit equity margin margin_free "
    "margin_level margin_so_call margin_so_so margin_initial margin_maintenance assets "
    "liabilities commission_blocked name server currency company"
).split()

SYMBOL_INFO_FIELDS = (
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders "
    "volume volumehigh volumelow time digits spread spread_float ticks_bookdepth "
    "trade_calc_mode trade_mode start_time expiration_time trade_stops_level "
    "trade_freeze_level trade_exemode swap_mode swap_rollover3days margin_hedged_use_leg "
    "expiration_mode filling_mode order_mode order_gtc_mode option_mode option_right bid "
    "bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real volumehigh_real "
    "volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
    "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest "
    "trade_face_value trade_liquidity_rate volume_min volume_max volume_step volume_limit "
    "swap_long swap_short margin_initial margin_maintenance session_volume session_turnover "
    "session_interest session_buy_orders_volume session_sell_orders_volume session_open "
    "session_close session_aw session_price_settlement session_price_limit_min "
    "session_price_limit_max margin_hedged price_change price_volatility price_theoretical "
    "price_greeks_delta price_greeks_theta price_greeks_gamma price_greeks_vega "
    "price_greeks_rho price_greeks_omega price_sensitivity basis category currency_base "
    "currency_profit currency_margin bank description exchange formula isin name page path"
).split()

TICK_FIELDS = "time bid ask last volume time_msc flags volume_real".split()

TRADE_ORDER_FIELDS = (
    "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time "
    "type_filling state magic position_id position_by_id reason volume_initial volume_current "
    "price_open sl tp price_current price_stoplimit symbol comment external_id"
).split()

TRADE_POSITION_FIELDS = (
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume "
    "price_open sl tp price_current swap profit symbol comment external_id"
).split()

TRADE_DEAL_FIELDS = (
    "ticket order time time_msc type entry magic position_id reason volume price commission "
    "swap profit fee symbol comment external_id"
).split()

TRADE_REQUEST_FIELDS = (
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling "
    "type_time expiration comment position position_by"
).split()

ORDER_SEND_RESULT_FIELDS = (
    "retcode deal order volume price bid ask comment request_id retcode_external request"
).split()

ORDER_CHECK_RESULT_FIELDS = (
    "retcode balance equity profit margin margin_free margin_level comment request"
).split()

TerminalInfo = namedtuple("TerminalInfo", TERMINAL_INFO_FIELDS, module=_MODULE)
AccountInfo = namedtuple("AccountInfo", ACCOUNT_INFO_FIELDS, module=_MODULE)
SymbolInfo = namedtuple("SymbolInfo", SYMBOL_INFO_FIELDS, module=_MODULE)
Tick = namedtuple("Tick", TICK_FIELDS, module=_MODULE)
TradeOrder = namedtuple("TradeOrder", TRADE_ORDER_FIELDS, module=_MODULE)
TradePosition = namedtuple("TradePosition", TRADE_POSITION_FIELDS, module=_MODULE)
TradeDeal = namedtuple("TradeDeal", TRADE_DEAL_FIELDS, module=_MODULE)
TradeRequest = namedtuple("TradeRequest", TRADE_REQUEST_FIELDS, module=_MODULE)
OrderSendResult = namedtuple("OrderSendResult", ORDER_SEND_RESULT_FIELDS, module=_MODULE)
OrderCheckResult = namedtuple("OrderCheckResult", ORDER_CHECK_RESULT_FIELDS, module=_MODULE)

#: Classes the fake module exposes under their own names (``mt5.TradePosition``...).
RECORD_TYPES = {
    cls.__name__: cls
    for cls in (
        TerminalInfo,
        AccountInfo,
        SymbolInfo,
        Tick,
        TradeOrder,
        TradePosition,
        TradeDeal,
        TradeRequest,
        OrderSendResult,
        OrderCheckResult,
    )
}

#: Request keys and the Python type the terminal accepts for each (bool is refused
#: where int is expected, int where float is expected: the C module is that strict).
REQUEST_FIELD_TYPES: dict[str, type] = {
    "action": int,
    "magic": int,
    "order": int,
    "symbol": str,
    "volume": float,
    "price": float,
    "stoplimit": float,
    "sl": float,
    "tp": float,
    "deviation": int,
    "type": int,
    "type_filling": int,
    "type_time": int,
    "expiration": int,
    "comment": str,
    "position": int,
    "position_by": int,
}
assert tuple(REQUEST_FIELD_TYPES) == tuple(TRADE_REQUEST_FIELDS)
