"""A trading process that finds Redis through Sentinel (killswitch_client's
`KillSwitch(sentinels=..., sentinel_master=...)`), for the failover drill. Prints, as
JSON lines, every change of what it sees (level, cause, version) and every order its
gate let through.

    python -m tests.faults.sentinel_probe HOST:PORT MASTER ACCOUNT   (password: REDIS_PASSWORD)
"""

from __future__ import annotations

import json
import sys
import time

from killswitch_client import KillSwitch, OrderRefused


def main() -> int:
    sentinel, master, account = sys.argv[1], sys.argv[2], sys.argv[3]
    host, _, port = sentinel.rpartition(":")
    switch = KillSwitch(sentinels=[(host, int(port))], sentinel_master=master, account=account,
                        strategy="probe", name=f"sentinel-probe-{account}", exit_on_kill=False,
                        backstop_interval=0.2)
    last = None
    deadline = time.monotonic() + 180  # bounded: a drill never leaves a probe behind
    while time.monotonic() < deadline:
        level = switch.check()
        seen = (level, switch.cause, switch.version)
        if seen != last:
            print(json.dumps({"t": time.time(), "level": level, "cause": switch.cause,
                              "version": switch.version}), flush=True)
            last = seen
        try:
            switch.gate("AAPL")
            print(json.dumps({"t": time.time(), "order": "AAPL", "level": level, "version": switch.version}),
                  flush=True)
        except OrderRefused:
            pass
        time.sleep(0.005)
    return 0


if __name__ == "__main__":
    sys.exit(main())
