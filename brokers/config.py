"""The `brokers:` section of config/risk_limits.yaml, validated.

Which accounts exist, at which broker, and how runs retry. A bad section raises
ImproperlyConfigured naming the key, the value and what is expected, like the rest
of the policy (killswitch.policy). Secrets never live in the file: the TWS API socket
itself carries no credentials (the gateway logs in on its own), and an MT5 terminal's
password is read from the environment variable its `password_env` names, so only the
names of environment variables may appear here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

PAPER = "paper"
IB = "ib"
MT5 = "mt5"


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


#: Where an MT5 order's strategy comes from: its magic number (the EA's id) or its comment.
STRATEGY_SOURCES = ("magic", "comment")
#: How an MT5 terminal is reached: the MetaTrader5 module if it imports (Windows), else
#: the mt5linux rpyc bridge; or one of the two explicitly.
TRANSPORTS = ("auto", "module", "bridge")


@dataclass(frozen=True)
class MT5Terminal:
    """One MetaTrader 5 terminal: reached through the MetaTrader5 module where it imports
    (Windows: `path` picks the terminal) or the mt5linux rpyc bridge at host:port.

    `accounts` are the logins it serves (a terminal is logged into one at a time: the
    adapter acts only while the terminal is logged into the run's account, and logs in
    itself only when `password_env` names the password's environment variable).
    `magic` tags the kill switch's own closing deals; `deviation` is the price deviation
    (points) a closing deal accepts; `strategy` says whether an order's strategy is its
    magic number (named through `strategy_magics`) or its comment."""

    name: str
    host: str = "127.0.0.1"
    port: int = 18812
    accounts: tuple[str, ...] = ()
    server: str = ""
    password_env: str = ""
    path: str = ""
    transport: str = "auto"
    magic: int = 0
    deviation: int = 20
    strategy: str = "magic"
    # strategy name -> magic number, so `strategy:momentum` reaches EA 4242's orders.
    strategy_magics: tuple[tuple[str, int], ...] = ()
    # rpyc's per-call timeout (mt5linux's default, 300 s, would hold a kill for 5 minutes).
    timeout_seconds: float = 10.0
    # In-place resends of a closing deal answered requote / price changed / no quotes.
    requote_retries: int = 5
    # How far back closing deals are looked for by their reference.
    history_days: int = 7
    # What `manage.py killswitch drill` trades on a demo account of this terminal.
    drill_symbols: tuple[str, ...] = ("EURUSD", "USDJPY")

    def password(self) -> str | None:
        """The password from `password_env` (None when none is configured). Raises
        ImproperlyConfigured when the variable is named but unset."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if not value:
            raise ImproperlyConfigured(
                f"brokers.mt5.terminals[{self.name}] needs the environment variable {self.password_env}")
        return value

    def strategy_of(self, *, magic: int, comment: str) -> str:
        """An order's strategy: its comment, or its magic number's name (else the number;
        magic 0, a manual order, has none)."""
        if self.strategy == "comment":
            return comment
        named = {number: name for name, number in self.strategy_magics}
        return named.get(magic, str(magic) if magic else "")


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
    mt5_terminals: tuple[MT5Terminal, ...] = ()
    runs: RunPolicy = field(default_factory=RunPolicy)
    sweep: SweepPolicy = field(default_factory=SweepPolicy)

    @property
    def accounts(self) -> dict[str, str]:
        """Every configured account -> its broker kind ('paper', 'ib' or 'mt5')."""
        found = {a: PAPER for a in self.paper_accounts}
        for conn in self.ib_connections:
            found.update({a: IB for a in conn.accounts})
        for terminal in self.mt5_terminals:
            found.update({a: MT5 for a in terminal.accounts})
        return found

    def ib_connection_for(self, account: str) -> IBConnection | None:
        return next((c for c in self.ib_connections if account in c.accounts), None)

    def mt5_terminal_for(self, account: str) -> MT5Terminal | None:
        return next((t for t in self.mt5_terminals if account in t.accounts), None)


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


def _text(key: str, value: Any, expected: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise _bad(key, value, expected)
    return value


def _terminal(index: int, raw: Any) -> MT5Terminal:
    key = f"brokers.mt5.terminals[{index}]"
    raw = _mapping(key, raw)
    _known(key, raw, {"name", "host", "port", "accounts", "server", "password_env", "path", "transport",
                      "magic", "deviation", "strategy", "strategy_magics", "timeout_seconds",
                      "requote_retries", "history_days", "drill_symbols"})
    name = _text(f"{key}.name", raw.get("name", f"mt5-{index}"), "a non-empty name")
    logins = raw.get("accounts", [])
    if (not isinstance(logins, list) or not logins
            or not all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in logins)):
        raise _bad(f"{key}.accounts", logins, "a non-empty list of MT5 logins (whole numbers), e.g. [5012345]")
    password_env = raw.get("password_env", "")
    if not isinstance(password_env, str) or (password_env and not password_env.isidentifier()):
        # The value is not echoed: a password written here by mistake must not reach a log.
        raise ImproperlyConfigured(f"risk_limits.yaml: {key}.password_env is invalid (value not shown); expected "
                                   "the name of an environment variable holding the password, never the password")
    transport = raw.get("transport", "auto")
    if transport not in TRANSPORTS:
        raise _bad(f"{key}.transport", transport, f"one of {', '.join(TRANSPORTS)}")
    strategy = raw.get("strategy", "magic")
    if strategy not in STRATEGY_SOURCES:
        raise _bad(f"{key}.strategy", strategy, f"one of {', '.join(STRATEGY_SOURCES)}")
    magics = _mapping(f"{key}.strategy_magics", raw.get("strategy_magics"))
    for label, number in magics.items():
        if not isinstance(label, str) or not label or " " in label:
            raise _bad(f"{key}.strategy_magics", label, "strategy names without spaces")
        _number(f"{key}.strategy_magics.{label}", number, 1, 2**63 - 1, integer=True)
    drill_symbols = raw.get("drill_symbols", ["EURUSD", "USDJPY"])
    if (not isinstance(drill_symbols, list) or not drill_symbols
            or not all(isinstance(x, str) and x and " " not in x for x in drill_symbols)):
        raise _bad(f"{key}.drill_symbols", drill_symbols, "a non-empty list of the terminal's symbols, e.g. [EURUSD]")
    if len(set(magics.values())) != len(magics):
        raise _bad(f"{key}.strategy_magics", magics, "one strategy name per magic number")
    return MT5Terminal(
        name=name,
        host=_text(f"{key}.host", raw.get("host", "127.0.0.1"), "a host name or IP address"),
        port=_number(f"{key}.port", raw.get("port", 18812), 1, 65535, integer=True),
        accounts=tuple(str(a) for a in logins),
        server=_text(f"{key}.server", raw.get("server", ""), "the trade server's name", empty=True),
        password_env=password_env,
        path=_text(f"{key}.path", raw.get("path", ""), "the terminal's path (Windows)", empty=True),
        transport=transport,
        magic=_number(f"{key}.magic", raw.get("magic", 0), 0, 2**63 - 1, integer=True),
        deviation=_number(f"{key}.deviation", raw.get("deviation", 20), 0, 100_000, integer=True),
        strategy=strategy,
        strategy_magics=tuple(magics.items()),
        timeout_seconds=_number(f"{key}.timeout_seconds", raw.get("timeout_seconds", 10.0), 0.5, 120),
        requote_retries=_number(f"{key}.requote_retries", raw.get("requote_retries", 5), 0, 50, integer=True),
        history_days=_number(f"{key}.history_days", raw.get("history_days", 7), 1, 365, integer=True),
        drill_symbols=tuple(drill_symbols),
    )


def parse_brokers_config(raw: Any) -> BrokersConfig:
    """Validate a raw `brokers:` mapping. Raises ImproperlyConfigured naming key, value, expectation."""
    raw = _mapping("brokers", raw)
    _known("brokers", raw, {"paper", "ib", "mt5", "runs", "sweep"})
    paper = _mapping("brokers.paper", raw.get("paper"))
    _known("brokers.paper", paper, {"accounts"})
    paper_accounts = _accounts("brokers.paper.accounts", paper.get("accounts", ["DU111111", "DU222222"]))
    ib = _mapping("brokers.ib", raw.get("ib"))
    _known("brokers.ib", ib, {"connections"})
    conns_raw = ib.get("connections", []) or []
    if not isinstance(conns_raw, list):
        raise _bad("brokers.ib.connections", conns_raw, "a list of connections")
    conns = tuple(_connection(i, c) for i, c in enumerate(conns_raw))
    mt5 = _mapping("brokers.mt5", raw.get("mt5"))
    _known("brokers.mt5", mt5, {"terminals"})
    terminals_raw = mt5.get("terminals", []) or []
    if not isinstance(terminals_raw, list):
        raise _bad("brokers.mt5.terminals", terminals_raw, "a list of terminals")
    terminals = tuple(_terminal(i, t) for i, t in enumerate(terminals_raw))
    names = [t.name for t in terminals]
    for i, terminal in enumerate(terminals):
        if names.index(terminal.name) != i:
            raise _bad(f"brokers.mt5.terminals[{i}].name", terminal.name, "a name no other terminal has")
    seen: dict[str, str] = {a: "brokers.paper.accounts" for a in paper_accounts}
    owners = [(f"brokers.ib.connections[{i}]", c.accounts) for i, c in enumerate(conns)]
    owners += [(f"brokers.mt5.terminals[{i}]", t.accounts) for i, t in enumerate(terminals)]
    for where, accounts in owners:
        for account in accounts:
            if account in seen:
                raise _bad(f"{where}.accounts", account, f"an account not already configured in {seen[account]}")
            seen[account] = where
    runs = _mapping("brokers.runs", raw.get("runs"))
    _known("brokers.runs", runs, {"max_attempts", "retry_backoff_seconds", "retry_backoff_max_seconds",
                                  "verify_rounds", "lease_seconds", "position_report_lag_seconds"})
    sweep = _mapping("brokers.sweep", raw.get("sweep"))
    _known("brokers.sweep", sweep, {"interval_seconds", "stall_alert_seconds"})
    return BrokersConfig(
        paper_accounts=paper_accounts,
        ib_connections=conns,
        mt5_terminals=terminals,
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
