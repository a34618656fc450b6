"""The yearly kill-switch drill (`manage.py killswitch drill`), safe to run any day.

What it proves, on paper accounts only, with real processes:
1. an activation of `kill` on `account:<drill account>` reaches every trading process
   of that account (each process acknowledges the new state version) within the
   propagation bound, and within `kill_switch.ack_timeout_seconds`;
2. every such process exits with code 1, as the client library promises on kill;
3. the broker run cancels every working order and closes every position of the
   account, verified at the (paper) broker, and ends `completed`;
4. a resume inside the (shortened) cooldown is refused with the seed's message and
   recorded as a cooldown violation; a resume after it is accepted;
5. the audit hash chain still verifies.

Safety (why it can run on a live installation):
- It never touches the global scope, nor any scope but `account:<A>` of the drill's
  accounts, and every one of them must be an account of the paper broker
  (`brokers.paper.accounts`). Anything else is refused before anything happens.
- With PAPER_ONLY=false (a live installation) the accounts must be named with
  `--account`: the operator says in writing which paper accounts may be killed.
- The default account is a fixed one, `DRILL01`, reset at every drill. A fixed name
  and not one per run: broker accounts are a static, validated list in
  risk_limits.yaml that the Celery worker and the sweep read at start-up, so a fresh
  name per drill would be unknown to them (its run would fail "not configured") and
  would leave one more scope row behind every year. Nothing but the drill trades on
  DRILL01, so resetting it (cancel what is left, set the drill's positions) harms
  no one. It must be listed under `brokers.paper.accounts`.
- The cooldown is shortened with `services.activate(drill_cooldown_minutes=...)`,
  which can only shorten the policy's cooldown and says so on the event.

Services: the drill needs the reconciler (heartbeat, acknowledgement ingestion) and
a Celery worker (the broker run). It looks for them (a fresh heartbeat in Redis; a
worker answering a Celery ping) and, with `start_services` (the default), starts
the missing ones for the drill's duration and stops them at the end; otherwise it
refuses with a message naming what is missing. A trading process that cannot reach
a reconciler reads `halt` (fails closed), so a drill without one would prove nothing.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from riskcontrol.env import current_database_url

from . import clock, services
from . import distribution as D
from . import levels as L
from .models import Action, Event, Outcome, Scope

DRILL_ACCOUNT = "DRILL01"
DRILL_ACTOR = "system:drill"
REASON = "Kill switch drill"
MAX_CLIENTS = 50
MIN_COOLDOWN_SECONDS = 1.0
# The seed's refusal, e.g. "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes).",
# in seconds for a drill's sub-minute cooldown ("... 2 seconds remaining (cooldown: 2 seconds).").
SEED_COOLDOWN_MESSAGE = re.compile(
    r"^Kill switch cooldown active\. \d+ (minute|second)s? remaining \(cooldown: [\d.]+ (minutes|seconds)\)\.$")

# What the drill puts on each account: prices are only set where none exists (setting a
# price fills other accounts' resting limits that it crosses); limits sit 20% away
# from the market so no order fills during the drill.
PRICES = {"AAPL": "190.00", "MSFT": "410.00", "TSLA": "240.00", "SPY": "520.00", "NVDA": "900.00"}
POSITIONS = (("AAPL", "100"), ("TSLA", "-50"), ("MSFT", "30"), ("SPY", "-20"))
ORDERS = (
    ("AAPL", "BUY", "50", "momentum"),
    ("TSLA", "SELL", "25", "mean_reversion"),
    ("NVDA", "BUY", "10", "momentum"),
    ("MSFT", "SELL", "15", "momentum"),
    ("SPY", "BUY", "40", "index_arb"),
    ("AAPL", "SELL", "20", "index_arb"),
)
STRATEGIES = ("momentum", "mean_reversion", "index_arb")

# One trading process of the drill: the client library bound to the drill account,
# the seed's loop shape (check() every iteration), an on_kill hook that notes when the
# loop saw kill. The library exits 1 on kill; the loop is bounded so that an orphan
# (the drill itself killed) never outlives it by much.
CLIENT_PROGRAM = r"""
import json, os, sys, time
from killswitch_client import KillSwitch
url, account, strategy, name, report, lifetime = sys.argv[1:7]

def note(kind, **data):
    with open(report, "a") as f:
        f.write(json.dumps({"event": kind, "at": time.time(), **data}) + "\n")

switch = None
def on_kill():
    note("kill", version=switch.version, level="kill")

switch = KillSwitch(url, account=account, strategy=strategy, name=name, on_kill=on_kill,
                    backstop_interval=0.5)
try:
    note("started", client_id=switch.identity.client_id, pid=os.getpid())
    seen = None
    deadline = time.monotonic() + float(lifetime)
    while time.monotonic() < deadline:
        level = switch.check()
        if level != seen:
            note("level", level=level, version=switch.version, cause=switch.cause)
            seen = level
        time.sleep(0.005)
    note("lifetime_over")
    sys.exit(3)
finally:
    switch.close()  # joins the listener: the acknowledgement it is writing goes out first
"""


class DrillRefused(Exception):
    """The drill was asked to do something unsafe or impossible; nothing was changed.
    The CLI exits 2."""


class DrillError(Exception):
    """The drill could not be set up (services, clients); nothing was activated.
    The CLI exits 1."""


@dataclass(frozen=True)
class Bounds:
    """The figures' bounds. `ack_timeout_seconds` None: the policy's."""

    max_propagation_ms: float = 1000.0
    ack_timeout_seconds: float | None = None
    min_client_exits_pct: float = 100.0
    max_orders_left: int = 0
    max_positions_left: int = 0


@dataclass
class Figure:
    key: str
    label: str
    value: str
    bound: str
    ok: bool
    detail: str = ""


@dataclass
class DrillReport:
    started_at: datetime
    finished_at: datetime | None
    accounts: list[str]
    actor: str
    cooldown_seconds: float
    bounds: dict[str, Any]
    policy: dict[str, Any]
    services: dict[str, str]
    figures: list[Figure] = field(default_factory=list)
    clients: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    propagation: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    json_path: str = ""
    html_path: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.figures) and all(f.ok for f in self.figures)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# --- Checks before anything happens ----------------------------------------------------------


def check_accounts(accounts: list[str] | None) -> tuple[list[str], bool]:
    """The accounts to drill and whether the default drill account is used.

    Raises DrillRefused for any account that is not a paper account, and for the
    default account on a live installation (PAPER_ONLY=false) where the paper
    accounts must be named.
    """
    from brokers.config import PAPER, brokers_config

    configured = brokers_config().accounts
    dedicated = not accounts
    if dedicated:
        if not getattr(settings, "PAPER_ONLY", True):
            raise DrillRefused(
                "PAPER_ONLY is false on this installation: name the paper accounts to drill "
                f"with --account (e.g. --account {DRILL_ACCOUNT}); the drill never picks one itself here.")
        accounts = [DRILL_ACCOUNT]
        if configured.get(DRILL_ACCOUNT) != PAPER:
            raise DrillRefused(
                f"The drill account {DRILL_ACCOUNT} is not a paper broker account: add it to "
                "brokers.paper.accounts in risk_limits.yaml (and restart the worker), or name "
                "paper accounts with --account.")
    accounts = list(dict.fromkeys(a.strip() for a in accounts))
    for account in accounts:
        kind = configured.get(account)
        if kind is None:
            raise DrillRefused(f"Account {account!r} is not configured under brokers: in risk_limits.yaml; "
                               "the drill runs on paper broker accounts only.")
        if kind != PAPER:
            raise DrillRefused(f"Account {account!r} is at the {kind!r} broker, not the paper broker; "
                               "the drill never touches a non-paper account.")
    return accounts, dedicated


def _check_inputs(clients: int, cooldown_seconds: float) -> None:
    from .policy import kill_switch_policy

    if not 1 <= clients <= MAX_CLIENTS:
        raise DrillRefused(f"--clients {clients} is invalid; expected 1 to {MAX_CLIENTS}.")
    policy_seconds = kill_switch_policy().cooldown_minutes * 60
    if not MIN_COOLDOWN_SECONDS <= cooldown_seconds <= policy_seconds:
        raise DrillRefused(
            f"--cooldown-seconds {cooldown_seconds:g} is invalid; expected {MIN_COOLDOWN_SECONDS:g} to the "
            f"policy's cooldown ({policy_seconds:g} s): a resume must be tried inside it.")


def _check_scopes(accounts: list[str], dedicated: bool, actor: str, say: Callable[[str], None]) -> None:
    """Every drilled account must start from `running`, globally too. The dedicated
    account is reset from an earlier, interrupted drill once its cooldown is over."""
    for account in accounts:
        ref = L.ScopeRef(L.ACCOUNT, account)
        row = Scope.objects.filter(kind=ref.kind, key=ref.key).first()
        if row is not None and row.level != L.RUNNING:
            remaining = row.cooldown_remaining_seconds(clock.now())
            if not dedicated:
                raise DrillRefused(f"{ref} is at {row.level} (set by {row.actor}: {row.reason!r}); the drill "
                                   "starts only from running and never lifts a level somebody else set.")
            if remaining > 0:
                raise DrillRefused(f"{ref} is still at {row.level} from an earlier drill; its cooldown ends in "
                                   f"{math.ceil(remaining)} s. Run the drill again after that.")
            services.deactivate(scope=ref, actor=actor, source="cli",
                                reason=f"{REASON}: reset of the drill account before a new drill")
            say(f"reset {ref} from {row.level} (left by an earlier drill)")
        from .selectors import effective_level

        level, scope = effective_level(account=account)
        if level != L.RUNNING:
            raise DrillRefused(f"Trading processes of account {account} read {level} (scope {scope}); the drill "
                               "needs them at running and does not touch other scopes.")


# --- Services ----------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """What the drill's child processes need to share this process' database, Redis and policy."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": current_database_url(), "REDIS_URL": settings.REDIS_URL,
        "RISK_LIMITS_PATH": str(settings.RISK_LIMITS_PATH),
        "PAPER_ONLY": "true" if getattr(settings, "PAPER_ONLY", True) else "false",
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "riskcontrol.settings"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _heartbeat_ts() -> float | None:
    try:
        raw = D.get_redis().get(D.KEY_HEARTBEAT)
        return float(json.loads(raw)["ts"]) if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def reconciler_alive(window: float | None = None) -> bool:
    """A reconciler is writing heartbeats: the heartbeat in Redis is rewritten within
    `window` seconds (default: three heartbeat intervals, at least 1.5 s). A fresh but
    unchanging heartbeat is a reconciler that just stopped (e.g. an earlier drill's)."""
    from .policy import kill_switch_policy

    window = window or max(1.5, 3 * kill_switch_policy().heartbeat_interval_seconds)
    first = _heartbeat_ts()
    if first is None or time.time() - first > window:
        return False
    return bool(_wait(lambda: (_heartbeat_ts() or 0) > first, window, interval=0.05))


def worker_alive(timeout: float = 1.0) -> bool:
    """A Celery worker answered a ping on the project's broker."""
    from riskcontrol.celery import app

    try:
        return bool(app.control.ping(timeout=timeout))
    except Exception:  # kombu raises several connection error types
        return False


class _Processes:
    """The processes the drill started (services and clients); ended by their pid only."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = child_env()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(args, cwd=settings.BASE_DIR, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def _wait(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; return its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _ensure_services(procs: _Processes, start: bool, say: Callable[[str], None]) -> dict[str, str]:
    found = {"reconciler": reconciler_alive(), "worker": worker_alive()}
    missing = [name for name, ok in found.items() if not ok]
    if missing and not start:
        raise DrillError(
            f"Not running: {', '.join(missing)}. The drill needs the reconciler (`manage.py killswitch "
            "reconcile`) and a Celery worker (`celery -A riskcontrol worker`); start them, or drop "
            "--no-start-services to let the drill start them for its duration.")
    status = {name: "running (found)" for name, ok in found.items() if ok}
    python = sys.executable
    if "reconciler" in missing:
        say("starting a reconciler for the drill")
        procs.start("reconciler", [python, "manage.py", "killswitch", "reconcile"])
    if "worker" in missing:
        say("starting a Celery worker for the drill")
        procs.start("worker", [python, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo",
                               "--loglevel", "WARNING", "-n", f"drill-{os.getpid()}@%h"])
    for name, alive in (("reconciler", reconciler_alive), ("worker", lambda: worker_alive(0.5))):
        if name not in missing:
            continue

        def up(name: str = name, alive: Callable[[], bool] = alive) -> bool:
            proc = procs.procs[name]
            if proc.poll() is not None:
                raise DrillError(f"The {name} the drill started exited with {proc.returncode}:\n{procs.log(name)}")
            return alive()

        if not _wait(up, 60, interval=0.2):
            raise DrillError(f"The {name} the drill started did not come up within 60 s:\n{procs.log(name)}")
        status[name] = f"started by the drill (pid {procs.procs[name].pid}), stopped at the end"
    return status


# --- Seeding -------------------------------------------------------------------------------------


def _seed(accounts: list[str], dedicated: bool, stamp: str) -> dict[str, list[int]]:
    """Prices, long and short positions and working orders on each account. The
    dedicated account is reset first. Returns account -> ids of the orders placed."""
    from django.db import transaction

    from brokers.adapters import paper
    from brokers.models import PAPER_WORKING, PaperOrder, PaperPosition

    placed: dict[str, list[int]] = {}
    with transaction.atomic():
        for symbol, price in PRICES.items():
            if paper.last_price(symbol) is None:
                paper.set_price(symbol, price)
        for account in accounts:
            paper.ensure_account(account)
            if dedicated:
                for order in PaperOrder.objects.filter(account__code=account, status__in=PAPER_WORKING):
                    paper.cancel(order.pk)
                PaperPosition.objects.filter(account__code=account).exclude(quantity=0).update(quantity=0)
            held = set(PaperPosition.objects.filter(account__code=account).exclude(quantity=0)
                       .values_list("symbol", flat=True))
            for symbol, qty in POSITIONS:
                if symbol not in held:
                    paper.set_position(account=account, symbol=symbol, quantity=qty,
                                       avg_cost=paper.last_price(symbol))
            placed[account] = []
            for n, (symbol, side, qty, strategy) in enumerate(ORDERS, 1):
                price = paper.last_price(symbol)
                limit = (price * Decimal("0.8") if side == "BUY" else price * Decimal("1.2")).quantize(Decimal("0.01"))
                order = paper.place_order(account=account, symbol=symbol, side=side, quantity=qty,
                                          limit_price=limit, strategy=strategy,
                                          client_order_id=f"drill-{stamp}-{account}-{n}")
                placed[account].append(order.pk)
    return placed


# --- Clients -----------------------------------------------------------------------------------------


@dataclass
class _Client:
    index: int
    account: str
    strategy: str
    name: str
    report: Path
    proc: subprocess.Popen | None = None

    def notes(self) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        rows = []
        for line in self.report.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def first(self, kind: str, **match: Any) -> dict[str, Any] | None:
        return next((n for n in self.notes() if n.get("event") == kind
                     and all(n.get(k) == v for k, v in match.items())), None)

    @property
    def client_id(self) -> str | None:
        started = self.first("started")
        return started.get("client_id") if started else None


def _start_clients(procs: _Processes, accounts: list[str], count: int, stamp: str,
                   lifetime: float) -> list[_Client]:
    clients = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        strategy = STRATEGIES[i % len(STRATEGIES)]
        client = _Client(i + 1, account, strategy, f"drill-{stamp}-{i + 1}",
                         procs.workdir / f"client-{i + 1}.jsonl")
        client.proc = procs.start(f"client-{i + 1}", [
            sys.executable, "-c", CLIENT_PROGRAM, settings.REDIS_URL, account, strategy, client.name,
            str(client.report), f"{lifetime:g}"])
        clients.append(client)
    return clients


def _clients_ready(clients: list[_Client]) -> list[_Client]:
    """Clients not yet reading `running` and registered in the database (the reconciler
    ingested them), which a change must find connected to count them as expected."""
    from .client_models import TradingClient

    for c in clients:
        if c.proc is not None and c.proc.poll() is not None:
            raise DrillError(f"drill client {c.index} exited with {c.proc.returncode} before the activation")
    pending = [c for c in clients if not c.first("level", level=L.RUNNING)]
    ids = [c.client_id for c in clients if c.client_id]
    known = set(TradingClient.objects.filter(client_id__in=ids, disconnected_at__isnull=True)
                .values_list("client_id", flat=True))
    return pending + [c for c in clients if c not in pending and c.client_id not in known]


# --- The drill ---------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def run_drill(*, accounts: list[str] | None = None, clients: int = 5, cooldown_seconds: float = 10.0,
              bounds: Bounds | None = None, report_dir: Path | str | None = None,
              start_services: bool = True, actor: str = DRILL_ACTOR, run_timeout: float = 60.0,
              progress: Callable[[str], None] | None = None) -> DrillReport:
    """Run the drill and write its report (JSON and HTML) into `report_dir`.

    Returns the report; `report.ok` says whether every figure is within its bound.
    Raises DrillRefused (unsafe or invalid input, nothing changed) or DrillError
    (services or clients could not be set up; nothing was activated). Once the
    activation is made, nothing raises: every miss becomes a failed figure, and the
    report is written.
    """
    from brokers.config import brokers_config
    from brokers.models import (
        PAPER_WORKING,
        TERMINAL_STATES,
        BrokerAction,
        BrokerRun,
        PaperOrder,
        PaperPosition,
    )
    from brokers.selectors import plain

    from .client_models import Acknowledgement, Propagation
    from .policy import kill_switch_policy

    say = progress or (lambda _msg: None)
    bounds = bounds or Bounds()
    policy = kill_switch_policy()
    ack_timeout = bounds.ack_timeout_seconds if bounds.ack_timeout_seconds is not None else policy.ack_timeout_seconds
    _check_inputs(clients, cooldown_seconds)
    accounts, dedicated = check_accounts(accounts)
    try:
        D.get_redis().ping()
    except Exception as exc:  # redis raises several error types
        raise DrillError(f"Redis at {settings.REDIS_URL} does not answer ({exc}); the drill needs it.") from None
    _check_scopes(accounts, dedicated, actor, say)

    started = clock.now()
    stamp = started.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    report_dir = Path(report_dir or Path(settings.BASE_DIR) / "var" / "drills")
    report_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"killswitch-drill-{stamp}-"))
    procs = _Processes(workdir)
    report = DrillReport(
        started_at=started, finished_at=None, accounts=accounts, actor=actor,
        cooldown_seconds=cooldown_seconds,
        bounds={**asdict(bounds), "ack_timeout_seconds": ack_timeout},
        policy={"cooldown_minutes": policy.cooldown_minutes, "ack_timeout_seconds": policy.ack_timeout_seconds,
                "client_stale_after_seconds": policy.client_stale_after_seconds,
                "paper_only": bool(getattr(settings, "PAPER_ONLY", True)),
                "verify_rounds": brokers_config().runs.verify_rounds},
        services={},
    )
    keep_workdir = False
    try:
        report.services = _ensure_services(procs, start_services, say)
        first_seq = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        placed = _seed(accounts, dedicated, stamp)
        say(f"seeded {sum(len(v) for v in placed.values())} working order(s) and positions on "
            f"{', '.join(accounts)}")
        lifetime = cooldown_seconds + run_timeout + 120
        drill_clients = _start_clients(procs, accounts, clients, stamp, lifetime)
        if _wait(lambda: not _clients_ready(drill_clients), 60, interval=0.1) is False:
            late = _clients_ready(drill_clients)
            raise DrillError(f"{len(late)} drill client(s) did not read running and register within 60 s "
                             f"(is the reconciler ingesting acknowledgements?); logs in {workdir}")
        say(f"{clients} client process(es) connected, reading running")

        # --- the activation ---------------------------------------------------------------
        activations: dict[str, services.TransitionResult] = {}
        for account in accounts:
            activations[account] = services.activate(
                scope=L.ScopeRef(L.ACCOUNT, account), level=L.KILL, reason=REASON, actor=actor,
                source="cli", drill_cooldown_minutes=cooldown_seconds / 60)
            say(f"activated kill on account:{account} (event #{activations[account].event.seq}, "
                f"version {activations[account].version})")
        # A resume at once, well inside the cooldown: it must be refused with the seed's message.
        refusals: list[tuple[str, str, int | None]] = []
        accepted_early: list[str] = []
        for account in accounts:
            try:
                services.deactivate(scope=L.ScopeRef(L.ACCOUNT, account), actor=actor, source="cli",
                                    reason=f"{REASON}: resume inside the cooldown (must be refused)")
            except services.CooldownActive as refusal:
                refusals.append((account, refusal.message, refusal.event.seq if refusal.event else None))
            except services.KillSwitchError as other:
                refusals.append((account, other.message, None))
            else:
                accepted_early.append(account)

        _wait(lambda: all(c.proc.poll() is not None for c in drill_clients), ack_timeout + 10)
        by_id = {c.client_id: c for c in drill_clients}

        def first_acks() -> dict[str, Acknowledgement]:
            found: dict[str, Acknowledgement] = {}
            for c in drill_clients:
                version = activations[c.account].version
                ack = (Acknowledgement.objects.filter(client__client_id=c.client_id, version__gte=version)
                       .order_by("acked_at").first())
                if ack is not None:
                    found[c.client_id] = ack
            return found

        _wait(lambda: len(first_acks()) == len(drill_clients), ack_timeout + 5, interval=0.1)
        acks = first_acks()
        event_seqs = [r.event.seq for r in activations.values()]

        def runs_done() -> list[BrokerRun] | None:
            runs = list(BrokerRun.objects.filter(kind="switch", event_seq__in=event_seqs).order_by("id"))
            return runs if len(runs) == len(accounts) and all(r.state in TERMINAL_STATES for r in runs) else None

        runs = _wait(runs_done, run_timeout, interval=0.1) or list(
            BrokerRun.objects.filter(kind="switch", event_seq__in=event_seqs).order_by("id"))
        for c in drill_clients:  # those that did not exit are ended now (they failed the figure)
            procs.stop(f"client-{c.index}", timeout=5)

        # --- waiting out the cooldown, then the resume ----------------------------------------
        cooldown_until = max(r.cooldown_until for r in activations.values() if r.cooldown_until)
        wait = (cooldown_until - clock.now()).total_seconds() + 0.2
        if wait > 0:
            say(f"waiting {wait:.1f} s for the drill cooldown to end")
            time.sleep(wait)
        resumed: dict[str, str] = {}
        for account in accounts:
            ref = L.ScopeRef(L.ACCOUNT, account)
            try:
                result = services.deactivate(scope=ref, actor=actor, source="cli",
                                             reason=f"{REASON}: resume after the cooldown")
                resumed[account] = result.message
            except services.KillSwitchError as error:
                resumed[account] = f"refused: {error.message}"

        def redis_levels() -> dict[str, str]:
            state = D.get_redis().hgetall(D.KEY_STATE)
            return {a: state.get(f"account:{a}", L.RUNNING) for a in accounts}

        _wait(lambda: set(redis_levels().values()) == {L.RUNNING}, 5)
        audit = services.verify_audit_chain()

        # --- figures ------------------------------------------------------------------------------
        created = {a: r.event.created_at for a, r in activations.items()}
        delays = {cid: (ack.acked_at - created[by_id[cid].account]).total_seconds() for cid, ack in acks.items()}
        values = list(delays.values())
        n = len(drill_clients)
        if len(values) == n:
            p100 = max(values)
            report.figures.append(Figure(
                "propagation", "Propagation: activation to every client applied it", _ms(p100),
                f"≤ {bounds.max_propagation_ms:g} ms", p100 * 1000 <= bounds.max_propagation_ms,
                f"p50 {_ms(_pct(values, 50))}, p100 {_ms(p100)} over {n} client(s), from the audit "
                "event's time to each client's first acknowledgement of that version"))
        else:
            report.figures.append(Figure(
                "propagation", "Propagation: activation to every client applied it", "incomplete",
                f"≤ {bounds.max_propagation_ms:g} ms", False,
                f"{n - len(values)} of {n} client(s) never acknowledged the activation"))
        within = [cid for cid, s in delays.items() if s <= ack_timeout]
        report.figures.append(Figure(
            "acknowledgements", "Acknowledgements within ack_timeout_seconds", f"{len(within)}/{n}",
            f"{n}/{n} within {ack_timeout:g} s", len(within) == n,
            "acknowledgements as the service stored them (reconciler ingestion)"))
        exited = [c for c in drill_clients if c.proc.returncode == 1 and c.first("kill")]
        pct = 100.0 * len(exited) / n
        loop_delays = [c.first("kill")["at"] - created[c.account].timestamp() for c in exited]
        report.figures.append(Figure(
            "client_exits", "Client processes exited with code 1 on kill", f"{len(exited)}/{n} ({pct:.0f}%)",
            f"≥ {bounds.min_client_exits_pct:g}%", pct >= bounds.min_client_exits_pct,
            (f"kill seen by the trading loop after p50 {_ms(_pct(loop_delays, 50))}, p100 "
             f"{_ms(max(loop_delays))}" if loop_delays else "no client reported kill")))
        orders_left = PaperOrder.objects.filter(account__code__in=accounts, status__in=PAPER_WORKING).count()
        seeded_ids = [pk for ids in placed.values() for pk in ids]
        report.figures.append(Figure(
            "orders_left", "Working orders left in scope", str(orders_left), f"≤ {bounds.max_orders_left}",
            orders_left <= bounds.max_orders_left,
            f"{len(seeded_ids)} drill order(s) seeded; per-order outcomes below"))
        positions_left = list(PaperPosition.objects.filter(account__code__in=accounts).exclude(quantity=0))
        report.figures.append(Figure(
            "positions_left", "Positions left open in scope", str(len(positions_left)),
            f"≤ {bounds.max_positions_left}", len(positions_left) <= bounds.max_positions_left,
            ", ".join(f"{p.account.code} {p.symbol} {plain(p.quantity)}" for p in positions_left)
            or "flat, verified at the broker by the run and again by the drill"))
        completed = [r for r in runs if r.state == "completed"]
        run_seconds = [(r.finished_at - created[r.account]).total_seconds() for r in completed if r.finished_at]
        report.figures.append(Figure(
            "run_completed", "Broker run(s) completed", f"{len(completed)}/{len(accounts)}",
            f"{len(accounts)}/{len(accounts)} completed", len(completed) == len(accounts),
            (f"activation to verified flat: {max(run_seconds):.2f} s" if run_seconds else "")
            + "".join(f"; run {r.pk} {r.state}: {r.error}" for r in runs if r.state != "completed")))
        seed_ok = [r for r in refusals if SEED_COOLDOWN_MESSAGE.match(r[1]) and r[2] is not None]
        violations = Event.objects.filter(seq__in=[r[2] for r in refusals if r[2]],
                                          action=Action.COOLDOWN_VIOLATION, outcome=Outcome.REFUSED).count()
        report.figures.append(Figure(
            "resume_refused", "Resume inside the cooldown refused (cooldown violation recorded)",
            f"{len(seed_ok)}/{len(accounts)} refused, {violations} violation event(s)",
            f"{len(accounts)} refused with the seed's message, {len(accounts)} event(s)",
            len(seed_ok) == len(accounts) and violations == len(accounts) and not accepted_early,
            "; ".join(f"{a}: {m!r}" for a, m, _ in refusals)
            + "".join(f"; {a}: ACCEPTED inside the cooldown" for a in accepted_early)))
        rows = {r.key: r.level for r in Scope.objects.filter(kind=L.ACCOUNT, key__in=accounts)}
        in_redis = redis_levels()
        running = [a for a in accounts if rows.get(a) == L.RUNNING and in_redis.get(a) == L.RUNNING
                   and not resumed.get(a, "").startswith("refused")]
        report.figures.append(Figure(
            "resume_accepted", "Resume after the cooldown accepted, account running again",
            f"{len(running)}/{len(accounts)}", f"{len(accounts)}/{len(accounts)} running",
            len(running) == len(accounts),
            f"drill cooldown {cooldown_seconds:g} s (policy: {policy.cooldown_minutes:g} min); "
            + "; ".join(f"{a}: {m}" for a, m in resumed.items())))
        report.figures.append(Figure(
            "audit_chain", "Audit hash chain verifies", "ok" if audit.ok else "BROKEN", "ok", audit.ok,
            f"{audit.checked} event(s) checked" + (f"; {audit.problem}" if not audit.ok else "")))

        # --- details ------------------------------------------------------------------------------
        for c in drill_clients:
            ack = acks.get(c.client_id)
            kill = c.first("kill")
            report.clients.append({
                "name": c.name, "account": c.account, "strategy": c.strategy, "client_id": c.client_id,
                "pid": c.proc.pid, "exit_code": c.proc.returncode,
                "acked_version": ack.version if ack else None,
                "ack_ms": round(delays[c.client_id] * 1000, 1) if ack else None,
                "kill_seen_ms": round((kill["at"] - created[c.account].timestamp()) * 1000, 1) if kill else None,
            })
        seeded = {o.pk: o for o in PaperOrder.objects.filter(pk__in=seeded_ids)}
        actions = list(BrokerAction.objects.filter(run__in=runs).order_by("run_id", "id"))
        acted = {a.broker_order_id: a for a in actions if a.action == "cancel"}
        for pk, order in sorted(seeded.items()):
            action = acted.get(str(pk))
            report.orders.append({
                "account": order.account.code, "order_id": str(pk), "kind": "order", "symbol": order.symbol,
                "strategy": order.strategy, "side": order.side, "quantity": plain(order.quantity),
                "action": action.action if action else "", "outcome": action.outcome if action else "not acted on",
                "broker_status": order.status, "attempts": action.attempts if action else 0,
                "detail": action.detail if action else "",
            })
        for action in actions:
            if action.action == "cancel" and action.broker_order_id.isdigit() and int(action.broker_order_id) in seeded:
                continue
            report.orders.append({
                "account": action.account,
                "order_id": " ".join(filter(None, [action.broker_order_id, action.client_ref])),
                "kind": "position" if action.action == "close" else "order", "symbol": action.symbol,
                "strategy": action.strategy, "side": action.side, "quantity": plain(action.quantity),
                "action": action.action, "outcome": action.outcome, "broker_status": "",
                "attempts": action.attempts, "detail": action.detail,
            })
        for r in runs:
            report.runs.append({"id": r.pk, "account": r.account, "level": r.level, "state": r.state,
                                "attempts": r.attempts, "event_seq": r.event_seq, "created_at": r.created_at,
                                "finished_at": r.finished_at, "notes": r.notes, "error": r.error})
        for p in Propagation.objects.filter(event__seq__in=event_seqs).select_related("event"):
            report.propagation.append({
                "event_seq": p.event.seq, "version": p.version, "expected_clients": p.expected_clients,
                "acked_clients": p.acked_clients, "seconds_to_last_ack": p.seconds_to_last_ack,
                "late_clients": p.late_clients, "complete": p.complete})
        scopes = {("account", a) for a in accounts}
        for event in Event.objects.filter(seq__gt=first_seq).order_by("seq"):
            if (event.scope_kind, event.scope_key) not in scopes:
                continue
            report.events.append({
                "seq": event.seq, "time": event.created_at, "action": event.action, "outcome": event.outcome,
                "scope": event.scope_label, "previous_level": event.previous_level,
                "new_level": event.new_level, "actor": event.actor, "source": event.source,
                "reason": event.reason, "detail": event.detail, "hash": event.hash[:12]})
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


# --- The report ------------------------------------------------------------------------------


def write_report(report: DrillReport, report_dir: Path, stamp: str) -> None:
    """Write drill-<stamp>.json and drill-<stamp>.html (self-contained) into report_dir."""
    from django.template.loader import render_to_string

    base = report_dir / f"drill-{stamp}"
    n = 1
    while base.with_suffix(".json").exists():  # two drills in one second keep both reports
        n += 1
        base = report_dir / f"drill-{stamp}-{n}"
    report.json_path = str(base.with_suffix(".json"))
    report.html_path = str(base.with_suffix(".html"))
    Path(report.json_path).write_text(json.dumps(report.as_dict(), indent=2, default=_plain) + "\n")
    Path(report.html_path).write_text(render_to_string("killswitch/drill_report.html", {
        "report": report, "ok": report.ok, "host": os.uname().nodename, "operator": _login(),
        "duration": (report.finished_at - report.started_at).total_seconds() if report.finished_at else None,
    }))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | timedelta):
        return str(value)
    return str(value)


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
