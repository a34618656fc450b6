"""A trading process for the fault drills: runs the client library and prints, as JSON
lines, every change of what it sees (level, cause, version) and every order its gate
let through, so a drill can prove what a real process would have done.

    python -m tests.faults.probe REDIS_URL ACCOUNT [--orders]
"""

from __future__ import annotations

import json
import sys
import time

from killswitch_client import KillSwitch, OrderRefused


def main() -> int:
    url, account = sys.argv[1], sys.argv[2]
    place_orders = "--orders" in sys.argv
    switch = KillSwitch(url, account=account, strategy="probe", name=f"probe-{account}",
                        exit_on_kill=False, backstop_interval=0.2)
    last = None
    deadline = time.monotonic() + 120  # bounded: a drill never leaves a probe behind
    while time.monotonic() < deadline:
        level = switch.check()
        seen = (level, switch.cause, switch.version)
        if seen != last:
            print(json.dumps({"t": time.time(), "level": level, "cause": switch.cause,
                              "version": switch.version}), flush=True)
            last = seen
        if place_orders:
            try:
                switch.gate("AAPL")
                print(json.dumps({"t": time.time(), "order": "AAPL", "level": level,
                                  "version": switch.version}), flush=True)
            except OrderRefused:
                pass
        time.sleep(0.005)
    return 0


if __name__ == "__main__":
    sys.exit(main())
