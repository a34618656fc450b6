"""Running the drill: set up, activate kill, try to resume early, measure, resume, report.

Once the activation is made nothing raises: every miss becomes a failed figure and the
report is written (measure.py computes the figures from what is recorded here).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings

from killswitch import domain as L
from killswitch import services
from killswitch.distribution.connection import get_redis
from killswitch.models import Acknowledgement, Action, Event, Outcome, Propagation, Scope
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.services.authorization import PERMISSIONS, Actor

from . import measure
from .hooks import broker_drill
from .plan import DRILL_ACCOUNT, DRILL_ACTOR, REASON, Bounds, DrillError, check_inputs, check_scopes
from .processes import Processes, clients_ready, ensure_services, start_clients, wait
from .report import DrillReport, write_report


def run_drill(*, accounts: list[str] | None = None, clients: int = 5, cooldown_seconds: float = 10.0,
              bounds: Bounds | None = None, report_dir: Path | str | None = None,
              start_services: bool = True, actor: str = DRILL_ACTOR, run_timeout: float = 60.0,
              progress: Callable[[str], None] | None = None) -> DrillReport:
    """Run the drill and write its report (JSON and HTML) into `report_dir`.

    Returns the report; `report.ok` says whether every figure is within its bound.
    Raises DrillRefused (unsafe or invalid input, nothing changed) or DrillError
    (services or clients could not be set up; nothing was activated).
    """
    say = progress or (lambda _msg: None)
    bounds = bounds or Bounds()
    policy = kill_switch_policy()
    ack_timeout = bounds.ack_timeout_seconds if bounds.ack_timeout_seconds is not None else policy.ack_timeout_seconds
    # The drill is run by an operator on the server: it may act on the scopes it was given.
    who = Actor.system(actor, grants=frozenset(PERMISSIONS))
    check_inputs(clients, cooldown_seconds)
    broker = broker_drill()
    accounts, dedicated = broker.check_accounts(accounts, default=DRILL_ACCOUNT)
    try:
        get_redis().ping()
    except Exception as exc:  # redis raises several error types
        raise DrillError(f"Redis at {settings.REDIS_URL} does not answer ({exc}); the drill needs it.") from None
    check_scopes(accounts, dedicated, who, say)

    started = clock.now()
    stamp = started.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    report_dir = Path(report_dir or Path(settings.BASE_DIR) / "var" / "drills")
    report_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"killswitch-drill-{stamp}-"))
    procs = Processes(workdir)
    report = DrillReport(
        started_at=started, finished_at=None, accounts=accounts, actor=actor, cooldown_seconds=cooldown_seconds,
        bounds={**asdict(bounds), "ack_timeout_seconds": ack_timeout},
        policy={"cooldown_minutes": policy.cooldown_minutes, "ack_timeout_seconds": policy.ack_timeout_seconds,
                "client_stale_after_seconds": policy.client_stale_after_seconds,
                "resume_approvals": policy.resume_approvals,
                "resume_requires_clean_runs": policy.resume_requires_clean_runs,
                "paper_only": bool(getattr(settings, "PAPER_ONLY", True)), **broker.settings()},
        services={},
    )
    keep_workdir = False
    try:
        report.services = ensure_services(procs, start_services, say)
        first_seq = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        placed = broker.seed(accounts, reset=dedicated, stamp=stamp)
        say(f"seeded {sum(len(v) for v in placed.values())} working order(s) and positions on {', '.join(accounts)}")
        drill_clients = start_clients(procs, accounts, clients, stamp, cooldown_seconds + run_timeout + 120)
        if wait(lambda: not clients_ready(drill_clients), 60, interval=0.1) is False:
            late = clients_ready(drill_clients)
            raise DrillError(f"{len(late)} drill client(s) did not read running and register within 60 s "
                             f"(is the reconciler ingesting acknowledgements?); logs in {workdir}")
        say(f"{clients} client process(es) connected, reading running")
        rec = _activate_and_observe(accounts, drill_clients, who, cooldown_seconds, ack_timeout, run_timeout,
                                    placed, procs, say)
        report.figures = measure.figures(rec, bounds, ack_timeout)
        report.clients = [{
            "name": c.name, "account": c.account, "strategy": c.strategy, "client_id": c.client_id,
            "pid": c.proc.pid, "exit_code": c.proc.returncode, "acked_version": r.ack_version,
            "ack_ms": round(r.ack_seconds * 1000, 1) if r.ack_seconds is not None else None,
            "kill_seen_ms": (round((r.kill_seen_at - rec.activated_at[c.account].timestamp()) * 1000, 1)
                             if r.kill_seen_at is not None else None),
        } for c, r in zip(drill_clients, rec.clients, strict=True)]
        report.orders, report.runs = rec.broker.orders, rec.broker.runs
        report.propagation = _propagation(rec.seqs)
        report.events = _events(first_seq, accounts)
        if not report.ok:
            keep_workdir = True
            report.notes.append(f"process logs kept in {workdir}")
    except BaseException:
        keep_workdir = True
        raise
    finally:
        procs.stop_all()
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report.finished_at = clock.now()
    write_report(report, report_dir, stamp)
    return report


def _activate_and_observe(accounts, drill_clients, who, cooldown_seconds, ack_timeout, run_timeout, placed,
                          procs, say) -> measure.Recording:
    activations: dict[str, services.TransitionResult] = {}
    for account in accounts:
        activations[account] = services.activate(
            scope=L.ScopeRef(L.ACCOUNT, account), level=L.KILL, reason=REASON, actor=who, source="cli",
            drill_cooldown_minutes=cooldown_seconds / 60)
        say(f"activated kill on account:{account} (event #{activations[account].seq}, "
            f"version {activations[account].version})")
    rec = measure.Recording(accounts=accounts, activated_at={a: r.at for a, r in activations.items()},
                            clients=[], broker=measure.BrokerObservation(),
                            cooldown_seconds=cooldown_seconds,
                            policy_cooldown_minutes=kill_switch_policy().cooldown_minutes)
    rec.seqs = [r.seq for r in activations.values()]
    # A resume at once, well inside the cooldown: it must be refused with the seed's message.
    for account in accounts:
        try:
            services.deactivate(scope=L.ScopeRef(L.ACCOUNT, account), actor=who, source="cli",
                                reason=f"{REASON}: resume inside the cooldown (must be refused)")
        except services.KillSwitchError as refusal:
            rec.refusals.append((account, refusal.message,
                                 refusal.seq if isinstance(refusal, services.CooldownActive) else None))
        else:
            rec.accepted_early.append(account)
    rec.violation_events = Event.objects.filter(seq__in=[s for _, _, s in rec.refusals if s],
                                                action=Action.COOLDOWN_VIOLATION, outcome=Outcome.REFUSED).count()

    wait(lambda: all(c.proc.poll() is not None for c in drill_clients), ack_timeout + 10)

    def first_acks() -> dict[str, Acknowledgement]:
        found = {}
        for c in drill_clients:
            ack = (Acknowledgement.objects.filter(client__client_id=c.client_id,
                                                  version__gte=activations[c.account].version)
                   .order_by("acked_at").first())
            if ack is not None:
                found[c.client_id] = ack
        return found

    wait(lambda: len(first_acks()) == len(drill_clients), ack_timeout + 5, interval=0.1)
    acks = first_acks()
    broker = broker_drill()
    observe = lambda: broker.observe(accounts, event_seqs=rec.seqs, placed=placed)  # noqa: E731
    wait(lambda: observe().finished, run_timeout, interval=0.1)
    for c in drill_clients:  # those that did not exit are ended now (they failed the figure)
        procs.stop(f"client-{c.index}", timeout=5)
    for c in drill_clients:
        ack, kill = acks.get(c.client_id), c.first("kill")
        rec.clients.append(measure.ClientRecord(
            c.client_id, c.account, c.proc.returncode, kill["at"] if kill else None,
            (ack.acked_at - rec.activated_at[c.account]).total_seconds() if ack else None,
            ack.version if ack else None))

    # --- waiting out the cooldown, then the resume ----------------------------------------
    cooldown_until = max(r.cooldown_until for r in activations.values() if r.cooldown_until)
    remaining = (cooldown_until - clock.now()).total_seconds() + 0.2
    if remaining > 0:
        say(f"waiting {remaining:.1f} s for the drill cooldown to end")
        time.sleep(remaining)
    for account in accounts:
        rec.resumed[account] = _resume(account, who)

    def redis_levels() -> dict[str, str]:
        state = get_redis().hgetall(L.KEY_STATE)
        return {a: state.get(L.label(L.ACCOUNT, a), L.RUNNING) for a in accounts}

    wait(lambda: set(redis_levels().values()) == {L.RUNNING}, 5)
    rows = {r.key: r.level for r in Scope.objects.filter(kind=L.ACCOUNT, key__in=accounts)}
    in_redis = redis_levels()
    rec.running_after = [a for a in accounts if rows.get(a) == L.RUNNING and in_redis.get(a) == L.RUNNING]
    rec.broker = observe()
    audit = services.verify_audit_chain()
    rec.audit_ok, rec.audit_checked, rec.audit_problem = audit.ok, audit.checked, audit.problem
    return rec


def _resume(account: str, who: Actor) -> str:
    """Resume the drilled account after the cooldown, as the policy says: at once, or
    (kill_switch.resume_approvals: 2) by a request the drill's second approver grants, so
    the two-step resume itself is exercised; the report says which mode was in force."""
    ref = L.ScopeRef(L.ACCOUNT, account)
    reason = f"{REASON}: resume after the cooldown"
    try:
        result = services.deactivate(scope=ref, actor=who, source="cli", reason=reason)
        if isinstance(result, services.ResumeRequested):
            second = Actor.system(f"{who.name} (second approver)", grants=frozenset(PERMISSIONS))
            result = services.deactivate(scope=ref, actor=second, source="cli", reason=reason,
                                         request=result.request_id)
        return result.message
    except services.KillSwitchError as error:
        return f"refused: {error.message}"


def _propagation(seqs: list[int]) -> list[dict[str, Any]]:
    return [{"event_seq": p.event.seq, "version": p.version, "expected_clients": p.expected_clients,
             "acked_clients": p.acked_clients, "seconds_to_last_ack": p.seconds_to_last_ack,
             "late_clients": p.late_clients, "complete": p.complete}
            for p in Propagation.objects.filter(event__seq__in=seqs).select_related("event")]


def _events(first_seq: int, accounts: list[str]) -> list[dict[str, Any]]:
    scopes = {(L.ACCOUNT, a) for a in accounts}
    return [{"seq": e.seq, "time": e.created_at, "action": e.action, "outcome": e.outcome, "scope": e.scope_label,
             "previous_level": e.previous_level, "new_level": e.new_level, "actor": e.actor, "source": e.source,
             "reason": e.reason, "detail": e.detail, "hash": e.hash[:12]}
            for e in Event.objects.filter(seq__gt=first_seq).order_by("seq")
            if (e.scope_kind, e.scope_key) in scopes]
