"""`/metrics`: the kill switch in the Prometheus text format, computed at scrape time.

Every figure is read from the database or Redis when Prometheus scrapes, never kept
in the process, so any server process answering a scrape (several share one port)
reports the same numbers. The counters count rows: transitions are audit events
(append-only), broker actions are those of finished runs, notifications are the
deliveries that ended; each only grows.

| metric | type | labels |
|---|---|---|
| killswitch_scope_level | gauge | scope (0 running, 1 pause, 2 halt, 3 kill) |
| killswitch_state_version | gauge | |
| killswitch_transitions_total | counter | action, outcome, source |
| killswitch_propagation_seconds | histogram | (commit to the last acknowledgement) |
| killswitch_clients | gauge | state (connected, late, fail_closed, disconnected) |
| killswitch_broker_runs | gauge | state (from the brokers app's hook) |
| killswitch_broker_actions_total | counter | action, outcome (from the brokers app's hook) |
| killswitch_notifications_total | counter | outcome (sent, failed) |
| killswitch_heartbeat_age_seconds, killswitch_heartbeat_stale_after_seconds | gauge | |
| killswitch_component_ready | gauge | component (what /readyz checks; 1 ready) |
| killswitch_breaker_state | gauge | name, kind, scope (1 tripped; killswitch.ops.hooks.register_breakers) |
| killswitch_breaker_value | gauge | name |
| killswitch_policy_info | gauge | digest (of the policy this process loaded) |
| killswitch_metrics_errors | gauge | family (1: could not be read this scrape) |
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from killswitch import domain as L

from . import health
from .hooks import breaker_providers, metric_sources

logger = logging.getLogger("killswitch.ops")

PROPAGATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def scope_levels() -> Iterator[Metric]:
    from killswitch import selectors

    family = GaugeMetricFamily("killswitch_scope_level",
                               "Level of each scope: 0 running, 1 pause, 2 halt, 3 kill.", labels=["scope"])
    for state in selectors.scope_states():
        family.add_metric([state.scope], L.SEVERITY.get(state.level, L.SEVERITY[L.HALT]))
    yield family
    yield GaugeMetricFamily("killswitch_state_version", "The state version (every applied change adds one).",
                            value=selectors.state_version())


def transitions() -> Iterator[Metric]:
    from killswitch import selectors

    family = CounterMetricFamily("killswitch_transitions", "Audit events (every attempt, applied or not).",
                                 labels=["action", "outcome", "source"])
    for (action, outcome, source), n in sorted(selectors.event_counts().items()):
        family.add_metric([action, outcome, source], n)
    yield family


def propagation() -> Iterator[Metric]:
    from killswitch import selectors

    cumulative, total, n = selectors.propagation_histogram(PROPAGATION_BUCKETS)
    buckets = [(repr(float(bound)), count) for bound, count in cumulative] + [("+Inf", n)]
    yield HistogramMetricFamily("killswitch_propagation_seconds",
                                "Seconds from a change's commit to the last acknowledgement of the trading "
                                "processes connected when it was made.", buckets=buckets, sum_value=total)


def clients() -> Iterator[Metric]:
    from killswitch import selectors

    family = GaugeMetricFamily("killswitch_clients", "Trading processes by state.", labels=["state"])
    for state, n in selectors.client_counts().items():
        family.add_metric([state], n)
    yield family


def notifications() -> Iterator[Metric]:
    from killswitch import selectors

    family = CounterMetricFamily("killswitch_notifications", "Notification deliveries that ended.",
                                 labels=["outcome"])
    for outcome, n in selectors.notification_outcomes().items():
        family.add_metric([outcome], n)
    yield family


def heartbeat() -> Iterator[Metric]:
    state = health.check_reconciler()
    if "heartbeat_age_seconds" not in state.detail:
        return  # missing: absent(killswitch_heartbeat_age_seconds) is the alert
    yield GaugeMetricFamily("killswitch_heartbeat_age_seconds", "Age of the reconciler's heartbeat in Redis.",
                            value=state.detail["heartbeat_age_seconds"])
    yield GaugeMetricFamily("killswitch_heartbeat_stale_after_seconds",
                            "Age past which trading processes read halt.", value=state.detail["stale_after_seconds"])


def readiness() -> Iterator[Metric]:
    _, states = health.readiness()
    family = GaugeMetricFamily("killswitch_component_ready", "1 when the /readyz component is ready.",
                               labels=["component"])
    for name, state in states.items():
        family.add_metric([name], 1 if state.ok else 0)
    yield family


def breakers() -> Iterator[Metric]:
    state = GaugeMetricFamily("killswitch_breaker_state", "1 when the breaker has tripped, 0 when armed.",
                              labels=["name", "kind", "scope"])
    value = GaugeMetricFamily("killswitch_breaker_value", "The figure the breaker watches.", labels=["name"])
    for provider in breaker_providers().values():
        for reading in provider():
            state.add_metric([reading.name, reading.kind, reading.scope], 1 if reading.tripped else 0)
            if reading.value is not None:
                value.add_metric([reading.name], reading.value)
    yield state
    yield value


def policy_info() -> Iterator[Metric]:
    from killswitch.policy import get_policy

    # Each process loads the policy file once at start: two processes started on either
    # side of an edit disagree, which count(count by (digest)(killswitch_policy_info)) shows.
    digest = hashlib.sha256(repr(get_policy()).encode()).hexdigest()[:16]
    family = GaugeMetricFamily("killswitch_policy_info", "The policy this process runs with.", labels=["digest"])
    family.add_metric([digest], 1)
    yield family


FAMILIES: dict[str, Callable[[], Iterable[Metric]]] = {
    "scopes": scope_levels, "transitions": transitions, "propagation": propagation, "clients": clients,
    "notifications": notifications, "heartbeat": heartbeat, "readiness": readiness, "breakers": breakers,
    "policy": policy_info,
}


class KillSwitchCollector(Collector):
    """Every family above and those other apps register; a family that cannot be read
    (the database is down) is left out and flagged in killswitch_metrics_errors, the
    others are still served."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily("killswitch_metrics_errors", "1 when a family could not be read this scrape.",
                                   labels=["family"])
        for name, source in {**FAMILIES, **metric_sources()}.items():
            try:
                families = list(source())
            except Exception as exc:
                # The type only, once per family and scrape; the traceback at debug level.
                logger.warning("metrics family %s could not be read: %s", name, type(exc).__name__)
                logger.debug("metrics family %s", name, exc_info=True)
                errors.add_metric([name], 1)
                continue
            finally:
                _close_database_connection()
            yield from families
        yield errors


def _close_database_connection() -> None:
    from django.db import connection

    connection.close_if_unusable_or_obsolete()


registry = CollectorRegistry(auto_describe=False)
registry.register(KillSwitchCollector())
