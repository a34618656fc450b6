"""The registries other apps fill from their AppConfig.ready: readiness checks,
metric families, and the breakers' readings. killswitch never imports those apps.

    # brokers/apps.py
    ops_hooks.register("brokers", check=broker_ops.readiness, metrics=broker_ops.metric_families)

    # the breaker engine (killswitch/breakers, later)
    ops_hooks.register_breakers("breakers", engine.readings)

A check returns a ComponentState; it may raise (the component then reads `error`
with the exception's type, never its message: messages can carry hosts and
credentials). It runs in a worker thread with a deadline, so it may block, but should
bound itself. Metric sources yield prometheus_client metric families (e.g.
GaugeMetricFamily) computed at scrape time from the database or Redis, never from
in-process state, so that every server process reports the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ComponentState:
    """One component of /readyz: `ok`, a short `state` word (`ok`, `down`, `stale`,
    `missing`, `timeout`, `error`, ...) and details an operator may see (no secrets)."""

    ok: bool
    state: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "state": self.state, **self.detail}


@dataclass(frozen=True)
class BreakerReading:
    """What one automatic breaker reports at scrape time.

    Exported as `killswitch_breaker_state{name,kind,scope}` (1 tripped, 0 armed) and,
    when `value` is not None, `killswitch_breaker_value{name}` (the figure the breaker
    watches: a loss, a rate, a drawdown, in the unit of its limit)."""

    name: str
    kind: str  # loss, drawdown, order_rate, reject_rate, position, notional, disconnect, stale_data, dead_man
    scope: str  # the scope it trips: global, account:DU123, ...
    tripped: bool
    value: float | None = None


Check = Callable[[], ComponentState]
MetricSource = Callable[[], Iterable[Any]]
BreakerProvider = Callable[[], Iterable[BreakerReading]]

_checks: dict[str, Check] = {}
_metrics: dict[str, MetricSource] = {}
_breakers: dict[str, BreakerProvider] = {}


def register(name: str, *, check: Check | None = None, metrics: MetricSource | None = None) -> None:
    """Add (or replace, by name) a readiness component and/or a metric source. Idempotent."""
    if check is not None:
        _checks[name] = check
    if metrics is not None:
        _metrics[name] = metrics


def register_breakers(name: str, provider: BreakerProvider) -> None:
    """Add (or replace, by name) a provider of breaker readings, read at every scrape."""
    _breakers[name] = provider


def checks() -> dict[str, Check]:
    return dict(_checks)


def metric_sources() -> dict[str, MetricSource]:
    return dict(_metrics)


def breaker_providers() -> dict[str, BreakerProvider]:
    return dict(_breakers)
