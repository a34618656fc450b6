"""The `brokers:` section of config/risk_limits.yaml, validated.

Which accounts exist, at which broker, and how runs retry. A bad section raises
ImproperlyConfigured naming the key, the value and what is expected, like the rest
of the policy (killswitch.policy). Secrets never live in the file: the TWS API socket
itself carries no credentials (the gateway logs in on its own), so only the names of
environment variables may appear here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

PAPER = "paper"
IB = "ib"


@dataclass(frozen=True)
class IBConnection:
    """One TWS / IB Gateway session. `client_id` is dedicated to kill switch runs; the
    sweep loop uses `sweep_client_id`, the breaker loop `breaker_client_id` (two
    processes cannot share a client id). The breakers see every client's orders only
    when `breaker_client_id` is the gateway's Master API client ID (TWS settings)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 90
    sweep_client_id: int = 91
    breaker_client_id: int = 92
    accounts: tuple[str, ...] = ()
    connect_timeout_seconds: float = 5.0
    # Seconds to wait for the broker to confirm a cancel or a fill before re-reading.
    confirm_timeout_seconds: float = 5.0
    # Below IB's 50 messages/s per session, with room for jitter between send and arrival.
    max_messages_per_second: int = 40
    # Environment variables the deployment needs (e.g. an IBC login); checked, never logged.
    secret_envs: tuple[str, ...] = ()

    def secrets(self) -> dict[str, str]:
        missing = [name for name in self.secret_envs if not os.environ.get(name)]
        if missing:
            raise ImproperlyConfigured(
                f"brokers.ib.connections[{self.name}] needs the environment variable(s) {', '.join(missing)}"
            )
        return {name: os.environ[name] for name in self.secret_envs}


@dataclass(frozen=True)
class RunPolicy:
    max_attempts: int = 8
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 30.0
    # How many cancel/close -> re-read rounds a run tries before it fails.
    verify_rounds: int = 3
    # A worker holds a run this long per step; a killed worker's run is resumed after it.
    lease_seconds: float = 30.0
    # The longest a broker's position report may trail its fills: within it, a position
    # whose closing orders filled is never closed again from the report alone.
    position_report_lag_seconds: float = 30.0


@dataclass(frozen=True)
class SweepPolicy:
    interval_seconds: float = 1.0
    # A run no worker has taken (or held) this long past its due time raises an alert.
    stall_alert_seconds: float = 30.0


@dataclass(frozen=True)
class BrokersConfig:
    paper_accounts: tuple[str, ...] = ("DU111111", "DU222222")
    ib_connections: tuple[IBConnection, ...] = ()
    runs: RunPolicy = field(default_factory=RunPolicy)
    sweep: SweepPolicy = field(default_factory=SweepPolicy)

    @property
    def accounts(self) -> dict[str, str]:
        """Every configured account -> its broker kind ('paper' or 'ib')."""
        found = {a: PAPER for a in self.paper_accounts}
        for conn in self.ib_connections:
            found.update({a: IB for a in conn.accounts})
        return found

    def ib_connection_for(self, account: str) -> IBConnection | None:
        return next((c for c in self.ib_connections if account in c.accounts), None)


def _bad(key: str, value: Any, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"risk_limits.yaml: {key}={value!r} is invalid; expected {expected}")


def _accounts(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() and " " not in a for a in value):
        raise _bad(key, value, "a list of account ids without spaces, e.g. [DU111111]")
    return tuple(value)


def _number(key: str, value: Any, low: float, high: float, *, integer: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise _bad(key, value, f"{kind} between {low:g} and {high:g}")
    return value


def _known(key: str, raw: dict, allowed: set[str]) -> None:
    for name in raw:
        if name not in allowed:
            raise _bad(f"{key}.{name}", raw[name], f"one of the known keys: {', '.join(sorted(allowed))}")


def _mapping(key: str, raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(key, raw, "a mapping of settings")
    return raw


def _connection(index: int, raw: Any) -> IBConnection:
    key = f"brokers.ib.connections[{index}]"
    raw = _mapping(key, raw)
    _known(key, raw, {"name", "host", "port", "client_id", "sweep_client_id", "breaker_client_id", "accounts",
                      "connect_timeout_seconds", "confirm_timeout_seconds",
                      "max_messages_per_second", "secret_envs"})
    name = raw.get("name", f"ib{index}")
    if not isinstance(name, str) or not name:
        raise _bad(f"{key}.name", name, "a non-empty name")
    host = raw.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise _bad(f"{key}.host", host, "a host name or IP address")
    client_id = _number(f"{key}.client_id", raw.get("client_id", 90), 0, 2**31 - 1, integer=True)
    sweep_client_id = _number(f"{key}.sweep_client_id", raw.get("sweep_client_id", client_id + 1),
                              0, 2**31 - 1, integer=True)
    if sweep_client_id == client_id:
        raise _bad(f"{key}.sweep_client_id", sweep_client_id, f"a client id other than client_id ({client_id})")
    taken = {client_id, sweep_client_id}
    breaker_client_id = _number(f"{key}.breaker_client_id",
                                raw.get("breaker_client_id", next(i for i in range(client_id + 2, 2**31)
                                                                  if i not in taken)),
                                0, 2**31 - 1, integer=True)
    if breaker_client_id in taken:
        raise _bad(f"{key}.breaker_client_id", breaker_client_id,
                   f"a client id other than client_id ({client_id}) and sweep_client_id ({sweep_client_id})")
    envs = raw.get("secret_envs", [])
    if not isinstance(envs, list) or not all(isinstance(e, str) and e.isidentifier() for e in envs):
        raise _bad(f"{key}.secret_envs", envs, "a list of environment variable names")
    accounts = _accounts(f"{key}.accounts", raw.get("accounts", []))
    if not accounts:
        raise _bad(f"{key}.accounts", [], "at least one account id")
    return IBConnection(
        name=name, host=host,
        port=_number(f"{key}.port", raw.get("port", 4002), 1, 65535, integer=True),
        client_id=client_id, sweep_client_id=sweep_client_id, breaker_client_id=breaker_client_id,
        accounts=accounts,
        connect_timeout_seconds=_number(f"{key}.connect_timeout_seconds",
                                        raw.get("connect_timeout_seconds", 5.0), 0.1, 120),
        confirm_timeout_seconds=_number(f"{key}.confirm_timeout_seconds",
                                        raw.get("confirm_timeout_seconds", 5.0), 0.1, 120),
        max_messages_per_second=_number(f"{key}.max_messages_per_second",
                                        raw.get("max_messages_per_second", 40), 1, 50, integer=True),
        secret_envs=tuple(envs),
    )


def parse_brokers_config(raw: Any) -> BrokersConfig:
    """Validate a raw `brokers:` mapping. Raises ImproperlyConfigured naming key, value, expectation."""
    raw = _mapping("brokers", raw)
    _known("brokers", raw, {"paper", "ib", "runs", "sweep"})
    paper = _mapping("brokers.paper", raw.get("paper"))
    _known("brokers.paper", paper, {"accounts"})
    paper_accounts = _accounts("brokers.paper.accounts", paper.get("accounts", ["DU111111", "DU222222"]))
    ib = _mapping("brokers.ib", raw.get("ib"))
    _known("brokers.ib", ib, {"connections"})
    conns_raw = ib.get("connections", []) or []
    if not isinstance(conns_raw, list):
        raise _bad("brokers.ib.connections", conns_raw, "a list of connections")
    conns = tuple(_connection(i, c) for i, c in enumerate(conns_raw))
    seen: dict[str, str] = {a: "brokers.paper.accounts" for a in paper_accounts}
    for i, conn in enumerate(conns):
        for account in conn.accounts:
            if account in seen:
                raise _bad(f"brokers.ib.connections[{i}].accounts", account,
                           f"an account not already configured in {seen[account]}")
            seen[account] = f"brokers.ib.connections[{i}]"
    runs = _mapping("brokers.runs", raw.get("runs"))
    _known("brokers.runs", runs, {"max_attempts", "retry_backoff_seconds", "retry_backoff_max_seconds",
                                  "verify_rounds", "lease_seconds", "position_report_lag_seconds"})
    sweep = _mapping("brokers.sweep", raw.get("sweep"))
    _known("brokers.sweep", sweep, {"interval_seconds", "stall_alert_seconds"})
    return BrokersConfig(
        paper_accounts=paper_accounts,
        ib_connections=conns,
        runs=RunPolicy(
            max_attempts=_number("brokers.runs.max_attempts", runs.get("max_attempts", 8), 1, 100, integer=True),
            retry_backoff_seconds=_number("brokers.runs.retry_backoff_seconds",
                                          runs.get("retry_backoff_seconds", 1.0), 0.01, 600),
            retry_backoff_max_seconds=_number("brokers.runs.retry_backoff_max_seconds",
                                              runs.get("retry_backoff_max_seconds", 30.0), 0.01, 3600),
            verify_rounds=_number("brokers.runs.verify_rounds", runs.get("verify_rounds", 3), 1, 100, integer=True),
            lease_seconds=_number("brokers.runs.lease_seconds", runs.get("lease_seconds", 30.0), 1, 3600),
            position_report_lag_seconds=_number("brokers.runs.position_report_lag_seconds",
                                                runs.get("position_report_lag_seconds", 30.0), 1, 3600),
        ),
        sweep=SweepPolicy(
            interval_seconds=_number("brokers.sweep.interval_seconds", sweep.get("interval_seconds", 1.0), 0.05, 60),
            stall_alert_seconds=_number("brokers.sweep.stall_alert_seconds",
                                        sweep.get("stall_alert_seconds", 30.0), 1, 3600),
        ),
    )


@lru_cache(maxsize=1)
def _cached() -> BrokersConfig:
    from killswitch.policy import get_policy

    return parse_brokers_config(get_policy().extra.get("brokers"))


def brokers_config() -> BrokersConfig:
    """The broker configuration in force (read once per process, like the policy)."""
    return _cached()


def reset_cache() -> None:
    _cached.cache_clear()
