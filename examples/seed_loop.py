"""The seed's trading loop (000_0ca822ed392ef1a1.txt), unchanged in what it reads:
`r.get('trading_switch')`, strip, lower, every iteration.

It keeps working against the service, because the service writes `trading_switch`
with exactly the seed's values on every change. Kept here to show (and test) that;
new code should use examples/trading_loop.py, which is faster, fails closed on a
stale service, and knows scopes.

One line of the seed is hazardous and is kept only because this file shows the seed
unchanged: on a missing key it writes `running`. After a Redis restart that write
races the service's republish; the service audits it as an out-of-band change.
Delete that line in real use (the client library reads a missing key as `halt`).

Run: REDIS_HOST=... REDIS_PORT=... REDIS_PASSWORD=... python examples/seed_loop.py
"""

import os
import sys
import time
from datetime import datetime

import redis

# Initialize Redis connection (host/port from the seed's .env variables)
r = redis.Redis(
    host=os.getenv("REDIS_HOST", "localhost"),
    port=int(os.getenv("REDIS_PORT", "6379")),
    password=os.getenv("REDIS_PASSWORD"),
    decode_responses=True,
    socket_connect_timeout=5,
)

LOOP_SLEEP = float(os.getenv("SEED_LOOP_SLEEP", "1"))


def check_kill_switch():
    try:
        state = r.get("trading_switch")

        if state is None:
            # Default to running if key doesn't exist  (the seed's behaviour; see above)
            r.set("trading_switch", "running")
            return "running"

        state = state.strip().lower()

        if state == "pause":
            print(f"[{datetime.now().isoformat()}] PAUSE: No new trades", flush=True)
            return "pause"

        elif state == "halt":
            # The seed's sample closed positions here, against its own table; the
            # service keeps positions on halt (it cancels working orders).
            print(f"[{datetime.now().isoformat()}] HALT: no new orders", flush=True)
            return "halt"

        elif state == "kill":
            print(f"[{datetime.now().isoformat()}] KILL: Emergency liquidation", flush=True)
            liquidate_all_positions(immediately=True)
            sys.exit(1)  # Exit the process

        else:
            return "running"

    except redis.ConnectionError as e:
        print(f"Redis connection error: {e}", flush=True)
        # Fail-safe: consider it a halt if Redis is unreachable
        return "halt"

    except Exception as e:
        print(f"Unexpected error in check_kill_switch: {e}", flush=True)
        return "halt"


def liquidate_all_positions(immediately=False):
    # The service closes positions at market on kill (broker runs); a process may add its own.
    print("EMERGENCY LIQUIDATION IN PROGRESS", flush=True)


def main_trading_loop():
    loop_count = 0
    while True:
        try:
            loop_count += 1
            status = check_kill_switch()  # CHECK KILL SWITCH AT START OF EVERY ITERATION
            print(f"iteration {loop_count}: {status}", flush=True)
            if status in ("pause", "halt"):
                time.sleep(LOOP_SLEEP)
                continue
            # signals, risk, execution would run here
            time.sleep(LOOP_SLEEP)
        except KeyboardInterrupt:
            print("\nShutdown signal received")
            sys.exit(0)
        except Exception as e:
            print(f"Error in main loop: {e}")
            time.sleep(LOOP_SLEEP)


if __name__ == "__main__":
    print("Starting trading system with Redis kill switch...", flush=True)
    main_trading_loop()
