"""``python -m tests.fake_mt5``: a fake MT5 terminal behind an mt5linux-style bridge.

Usage::

    python -m tests.fake_mt5 --port 0 --login 5012345 [--netting]
        [--position SYMBOL:buy|sell:VOLUME:PRICE]...
        [--order SYMBOL:buy_limit|sell_limit|buy_stop|sell_stop:VOLUME:PRICE]...
        [--price SYMBOL=BID]... [--control-port 0] [--host 127.0.0.1]

Prices are applied first (ask = bid + the symbol's usual spread), then
positions, then orders.  Once both ports listen it prints one flushed line
``READY <bridge port> <control port>`` and serves until SIGTERM or SIGINT, then
exits 0.  Bad arguments exit 2 with a message saying what was expected.  The
bridge executes arbitrary code for whoever connects: keep it on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .control import PENDING_KINDS, SIDES, Control
from .server import BridgeServer, ControlServer, install_module
from .terminal import FakeTerminal


def _parts(text: str, sep: str, count: int, shape: str) -> list[str]:
    parts = text.split(sep)
    if len(parts) != count or not all(parts):
        raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
    return parts


def _number(text: str, what: str, shape: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} must be a number in {shape}, got {text!r}") from None


def position_arg(text: str) -> tuple[str, str, float, float]:
    shape = "SYMBOL:buy|sell:VOLUME:PRICE"
    symbol, side, volume, price = _parts(text, ":", 4, shape)
    if side not in SIDES:
        raise argparse.ArgumentTypeError(f"side must be buy or sell in {shape}, got {text!r}")
    return symbol, side, _number(volume, "VOLUME", shape), _number(price, "PRICE", shape)


def order_arg(text: str) -> tuple[str, str, float, float]:
    shape = "SYMBOL:" + "|".join(PENDING_KINDS) + ":VOLUME:PRICE"
    symbol, kind, volume, price = _parts(text, ":", 4, shape)
    if kind not in PENDING_KINDS:
        raise argparse.ArgumentTypeError(f"order kind must be one of {sorted(PENDING_KINDS)} "
                                         f"in {shape}, got {text!r}")
    return symbol, kind, _number(volume, "VOLUME", shape), _number(price, "PRICE", shape)


def price_arg(text: str) -> tuple[str, float]:
    symbol, bid = _parts(text, "=", 2, "SYMBOL=PRICE")
    return symbol, _number(bid, "PRICE", "SYMBOL=PRICE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_mt5", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="bridge port (0: any free)")
    parser.add_argument("--login", type=int, required=True, help="the account's login")
    parser.add_argument("--control-port", type=int, default=0, help="control port (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--netting", action="store_true", help="netting account (default hedging)")
    parser.add_argument("--password", default=None, help="password initialize() must match")
    parser.add_argument("--server-time-offset", type=int, default=0,
                        help="seconds the trade server's clock is ahead of UTC")
    parser.add_argument("--position", type=position_arg, action="append", default=[])
    parser.add_argument("--order", type=order_arg, action="append", default=[])
    parser.add_argument("--price", type=price_arg, action="append", default=[])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    terminal = FakeTerminal(args.login, netting=args.netting, password=args.password,
                            server_time_offset=args.server_time_offset)
    bridge = BridgeServer(args.host, args.port)
    control = Control(terminal, bridge)
    try:
        for symbol, bid in args.price:
            control.set_price(symbol, bid)
        for symbol, side, volume, price in args.position:
            control.add_position(symbol, side, volume, price)
        for symbol, kind, volume, price in args.order:
            control.add_order(symbol, kind, volume, price)
    except ValueError as exc:
        print(f"python -m tests.fake_mt5: error: {exc}", file=sys.stderr)
        return 2
    install_module(terminal)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = bridge.start()
    control_server = ControlServer(control, args.host, args.control_port)
    control_port = control_server.start()
    print(f"READY {port} {control_port}", flush=True)
    while not stop.wait(0.5):
        pass
    bridge.close()
    control_server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
