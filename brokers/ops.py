"""The broker side of /readyz and /metrics, plugged into killswitch.ops.hooks from
brokers/apps.py (killswitch never imports brokers).

Readiness (`brokers`): every configured account has a broker that answers. A paper
account is always connected (the paper broker is the database). An IB account is
connected when its TWS / IB Gateway answers the API handshake: the probe opens the API
socket, sends the version range and reads the server's version, then hangs up before
`startApi`, so it never takes a client id from the runs or the sweep (a second session
with their id would be refused, or would push theirs out).

Metrics: `killswitch_broker_runs{state}` (every run by its state) and
`killswitch_broker_actions_total{action,outcome}` (the actions of finished runs: their
outcomes are final, so the counter only grows).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from killswitch.ops.hooks import ComponentState

from .config import IB, PAPER, IBConnection, brokers_config
from .models import TERMINAL_STATES, BrokerAction, BrokerRun, RunState

HANDSHAKE_TIMEOUT = 0.5


def ib_answers(connection: IBConnection, timeout: float = HANDSHAKE_TIMEOUT) -> str:
    """`connected` when the gateway completes the API handshake within `timeout`,
    else what went wrong (`refused`, `timeout`, `no handshake`).

    Hand-written because ib_async's connect always goes on to startApi with a client id
    (see the module docstring); the bytes are those of ib_async's own Client.connectAsync.
    """
    from ib_async.client import Client

    versions = f"v{Client.MinClientVersion}..{Client.MaxClientVersion}".encode()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((connection.host, connection.port), timeout=timeout) as sock:
            sock.sendall(b"API\0" + struct.pack(">I", len(versions)) + versions)
            reply = b""
            while len(reply) < 4 or len(reply) < 4 + struct.unpack(">I", reply[:4])[0]:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    return "no handshake"
                reply += chunk
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
    fields = reply[4:].split(b"\0")
    return "connected" if fields and fields[0].isdigit() else "no handshake"


def readiness() -> ComponentState:
    """Each configured account and whether its broker answers; ok when all do."""
    config = brokers_config()
    accounts: dict[str, str] = {}
    answers: dict[str, str] = {}
    connections = list(config.ib_connections)
    if connections:
        with ThreadPoolExecutor(max_workers=min(8, len(connections))) as pool:
            answers = dict(zip((c.name for c in connections), pool.map(ib_answers, connections), strict=True))
    for account, kind in sorted(config.accounts.items()):
        if kind == PAPER:
            accounts[account] = "connected"
        elif kind == IB:
            connection = config.ib_connection_for(account)
            accounts[account] = answers[connection.name] if connection else "not configured"
    ok = all(state == "connected" for state in accounts.values())
    return ComponentState(ok, "ok" if ok else "disconnected", {"accounts": accounts})


def metric_families() -> Iterator[Metric]:
    runs = GaugeMetricFamily("killswitch_broker_runs", "Broker runs by state.", labels=["state"])
    counts = dict(BrokerRun.objects.order_by().values_list("state").annotate(n=Count("id")))
    for state in RunState.values:
        runs.add_metric([state], counts.get(state, 0))
    yield runs
    actions = CounterMetricFamily("killswitch_broker_actions", "Order and position actions of finished runs.",
                                  labels=["action", "outcome"])
    rows = (BrokerAction.objects.filter(run__state__in=TERMINAL_STATES).order_by()
            .values_list("action", "outcome").annotate(n=Count("id")))
    for action, outcome, n in sorted(rows):
        actions.add_metric([action, outcome], n)
    yield actions
