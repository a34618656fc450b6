"""The drill's figures, as pure functions of what the drill recorded (no I/O): each
takes the observations and its bound and returns a report.Figure, so each is tested
on its own and the report says exactly what was measured."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from .hooks import BrokerObservation
from .plan import SEED_COOLDOWN_MESSAGE, Bounds
from .report import Figure


@dataclass
class ClientRecord:
    client_id: str | None
    account: str
    exit_code: int | None
    kill_seen_at: float | None  # unix time its loop saw kill, from the client's own notes
    ack_seconds: float | None  # activation to its first acknowledgement, as the service stored it
    ack_version: int | None = None


@dataclass
class Recording:
    """Everything a drill observed, in plain values."""

    accounts: list[str]
    activated_at: dict[str, datetime]  # account -> the activation's audit time
    clients: list[ClientRecord]
    broker: BrokerObservation
    refusals: list[tuple[str, str, int | None]] = field(default_factory=list)  # account, message, seq
    violation_events: int = 0  # cooldown_violation events recorded for those seqs
    accepted_early: list[str] = field(default_factory=list)  # accounts resumed inside the cooldown
    resumed: dict[str, str] = field(default_factory=dict)  # account -> message, or "refused: ..."
    running_after: list[str] = field(default_factory=list)  # accounts running in the DB and in Redis
    cooldown_seconds: float = 0.0
    policy_cooldown_minutes: float = 0.0
    audit_ok: bool = False
    audit_checked: int = 0
    audit_problem: str = ""
    seqs: list[int] = field(default_factory=list)  # the activations' audit events


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def propagation(rec: Recording, bounds: Bounds) -> Figure:
    label, bound = "Propagation: activation to every client applied it", f"≤ {bounds.max_propagation_ms:g} ms"
    values = [c.ack_seconds for c in rec.clients if c.ack_seconds is not None]
    n = len(rec.clients)
    if len(values) != n or not n:
        return Figure("propagation", label, "incomplete", bound, False,
                      f"{n - len(values)} of {n} client(s) never acknowledged the activation")
    worst = max(values)
    return Figure("propagation", label, ms(worst), bound, worst * 1000 <= bounds.max_propagation_ms,
                  f"p50 {ms(pct(values, 50))}, p100 {ms(worst)} over {n} client(s), from the audit "
                  "event's time to each client's first acknowledgement of that version")


def acknowledgements(rec: Recording, ack_timeout: float) -> Figure:
    n = len(rec.clients)
    within = [c for c in rec.clients if c.ack_seconds is not None and c.ack_seconds <= ack_timeout]
    return Figure("acknowledgements", "Acknowledgements within ack_timeout_seconds", f"{len(within)}/{n}",
                  f"{n}/{n} within {ack_timeout:g} s", len(within) == n and n > 0,
                  "acknowledgements as the service stored them (reconciler ingestion)")


def client_exits(rec: Recording, bounds: Bounds) -> Figure:
    n = len(rec.clients)
    exited = [c for c in rec.clients if c.exit_code == 1 and c.kill_seen_at is not None]
    share = 100.0 * len(exited) / n if n else 0.0
    delays = [c.kill_seen_at - rec.activated_at[c.account].timestamp() for c in exited]
    return Figure("client_exits", "Client processes exited with code 1 on kill",
                  f"{len(exited)}/{n} ({share:.0f}%)", f"≥ {bounds.min_client_exits_pct:g}%",
                  n > 0 and share >= bounds.min_client_exits_pct,
                  (f"kill seen by the trading loop after p50 {ms(pct(delays, 50))}, p100 {ms(max(delays))}"
                   if delays else "no client reported kill"))


def orders_left(rec: Recording, bounds: Bounds) -> Figure:
    left = rec.broker.orders_left
    return Figure("orders_left", "Working orders left in scope", str(left), f"≤ {bounds.max_orders_left}",
                  left <= bounds.max_orders_left,
                  f"{rec.broker.seeded_orders} drill order(s) seeded; per-order outcomes below")


def positions_left(rec: Recording, bounds: Bounds) -> Figure:
    left = rec.broker.positions_left
    return Figure("positions_left", "Positions left open in scope", str(len(left)),
                  f"≤ {bounds.max_positions_left}", len(left) <= bounds.max_positions_left,
                  ", ".join(left) or "flat, verified at the broker by the run and again by the drill")


def runs_completed(rec: Recording) -> Figure:
    runs, n = rec.broker.runs, len(rec.accounts)
    completed = [r for r in runs if r["state"] == "completed"]
    seconds = [(r["finished_at"] - rec.activated_at[r["account"]]).total_seconds()
               for r in completed if r.get("finished_at") and r["account"] in rec.activated_at]
    return Figure("run_completed", "Broker run(s) completed", f"{len(completed)}/{n}", f"{n}/{n} completed",
                  len(completed) == n,
                  (f"activation to verified flat: {max(seconds):.2f} s" if seconds else "")
                  + "".join(f"; run {r['id']} {r['state']}: {r['error']}" for r in runs if r["state"] != "completed"))


def resume_refused(rec: Recording) -> Figure:
    n = len(rec.accounts)
    seed_ok = [r for r in rec.refusals if SEED_COOLDOWN_MESSAGE.match(r[1]) and r[2] is not None]
    return Figure("resume_refused", "Resume inside the cooldown refused (cooldown violation recorded)",
                  f"{len(seed_ok)}/{n} refused, {rec.violation_events} violation event(s)",
                  f"{n} refused with the seed's message, {n} event(s)",
                  len(seed_ok) == n and rec.violation_events == n and not rec.accepted_early,
                  "; ".join(f"{a}: {m!r}" for a, m, _ in rec.refusals)
                  + "".join(f"; {a}: ACCEPTED inside the cooldown" for a in rec.accepted_early))


def resume_accepted(rec: Recording) -> Figure:
    n = len(rec.accounts)
    running = [a for a in rec.accounts
               if a in rec.running_after and not rec.resumed.get(a, "refused").startswith("refused")]
    return Figure("resume_accepted", "Resume after the cooldown accepted, account running again",
                  f"{len(running)}/{n}", f"{n}/{n} running", len(running) == n,
                  f"drill cooldown {rec.cooldown_seconds:g} s (policy: {rec.policy_cooldown_minutes:g} min); "
                  + "; ".join(f"{a}: {m}" for a, m in rec.resumed.items()))


def audit_chain(rec: Recording) -> Figure:
    return Figure("audit_chain", "Audit hash chain verifies", "ok" if rec.audit_ok else "BROKEN", "ok",
                  rec.audit_ok,
                  f"{rec.audit_checked} event(s) checked" + (f"; {rec.audit_problem}" if not rec.audit_ok else ""))


def figures(rec: Recording, bounds: Bounds, ack_timeout: float) -> list[Figure]:
    """Every figure of the drill, in the report's order."""
    return [propagation(rec, bounds), acknowledgements(rec, ack_timeout), client_exits(rec, bounds),
            orders_left(rec, bounds), positions_left(rec, bounds), runs_completed(rec), resume_refused(rec),
            resume_accepted(rec), audit_chain(rec)]
