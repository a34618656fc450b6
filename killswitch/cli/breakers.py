"""`manage.py killswitch breakers [--json]`: every automatic breaker with its figure
now, its limit, its state (armed / warning / tripped / unknown / idle) and its last
trip; `manage.py killswitch breakers run` is the breaker loop `make run` starts."""

from __future__ import annotations

import signal
import threading
from datetime import datetime

from ..breakers import state
from ..breakers.engine import DEFAULT_INTERVAL, LEASE_TTL, Engine
from ..runtime.leadership import Lease
from ._common import emit_json

NAME = "breakers"
HELP = ("Show the automatic breakers (figure now, limit, state, last trip); "
        "`breakers run` runs the breaker loop.")


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=["show", "run"], default="show",
                        help="show (default): the table; run: the breaker loop (until stopped)")
    parser.add_argument("--json", action="store_true", help="show: the rows as JSON")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"run: seconds between rounds (default {DEFAULT_INTERVAL:g}; at most 1)")
    parser.add_argument("--once", action="store_true", help="run: one round (if this process gets the lease)")


def _when(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else "-"


def _show(options, out) -> int:
    snap = state.snapshot()
    if options.get("json"):
        emit_json(out, {"evaluated_at": snap.evaluated_at, "fresh": snap.fresh, "leader": snap.leader,
                        "note": snap.note, "breakers": snap.rows})
        return 0
    if not snap.rows:
        out.write("no breakers configured (breakers: in config/risk_limits.yaml; README, section Breakers)\n")
        return 0
    out.write(f"{len(snap.rows)} breaker(s)" + (f"; evaluated by {snap.leader}" if snap.leader else "") + "\n")
    if snap.note:
        out.write(f"NOTE: {snap.note}\n")
    out.write(f"{'NAME':<18} {'KIND':<17} {'SCOPE':<20} {'LEVEL':<5} {'STATE':<8} {'LIMIT':<20} LAST TRIP\n")
    for row in snap.rows:
        trip = row.get("last_trip")
        last = f"#{trip['seq']} {_when(trip['at'])} -> {trip['level']}" if trip else "never"
        out.write(f"{row['name'][:18]:<18} {row['kind']:<17} {row['scope'][:20]:<20} {row['level']:<5} "
                  f"{row['state']:<8} {str(row['limit'])[:20]:<20} {last}\n")
        out.write(f"{'':<18} now: {row['figure'] or '-'}\n")
        if row.get("unknown") and row["unknown"] != snap.note:
            out.write(f"{'':<18} unknown: {row['unknown']}\n")
        latch = row.get("latch")
        if latch and latch.get("outcome") != "activated":
            out.write(f"{'':<18} tripped: {latch.get('outcome')}\n")
    return 0


def _run(options, out, err) -> int:
    interval = float(options.get("interval") or DEFAULT_INTERVAL)
    if not 0.05 <= interval <= 1:
        err.write(f"--interval {interval:g} is invalid; expected 0.05 to 1 second (breakers are evaluated "
                  "at least every second)\n")
        return 2
    engine = Engine(interval=interval, lease=Lease("breakers", ttl=LEASE_TTL))
    if options.get("once"):
        try:
            if not engine.lease.hold():
                err.write(f"another breaker process leads ({engine.lease.holder()}); nothing evaluated\n")
                return 1
            for row in engine.round().values():
                out.write(f"{row['name']}: {row['state']}: {row['figure']} (limit {row['limit']})\n")
        finally:
            engine.lease.release()
            engine.close()
        return 0
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    out.write(f"breaker loop: {len(engine.breakers)} breaker(s), every {interval:g}s\n")
    out.flush()
    engine.run_forever(stop)
    return 0


def run(options, out, err) -> int:
    if options.get("action") == "run":
        return _run(options, out, err)
    return _show(options, out)
