"""Broker work: runs with their per-order actions, and the persistent paper broker.

Writes happen in services.py (runs) and adapters/paper.py (the paper broker's own
matching, which stands in for a broker's servers).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

QTY = {"max_digits": 20, "decimal_places": 4}
PRICE = {"max_digits": 20, "decimal_places": 6}


# --- Runs -----------------------------------------------------------------------------


class RunKind(models.TextChoices):
    SWITCH = "switch", "Switch transition"
    SWEEP = "sweep", "Sweep"


class RunState(models.TextChoices):
    PENDING = "pending", "Pending"
    CANCELLING = "cancelling", "Cancelling"
    CLOSING = "closing", "Closing"
    VERIFYING = "verifying", "Verifying"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    # The switch was lifted (or lowered below halt) before the run finished: it sent
    # nothing more from that moment on.
    SUPERSEDED = "superseded", "Superseded (switch lifted)"


TERMINAL_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.SUPERSEDED)


class BrokerRun(models.Model):
    """The broker work for one account after one kill switch transition (or one sweep).

    Unique per (event, account): a receiver that runs twice, or the sweep loop that
    re-creates missing runs, finds the existing row.
    """

    kind = models.CharField(max_length=8, choices=RunKind.choices, default=RunKind.SWITCH)
    # No foreign key to killswitch.Event: events are append-only and live on their own.
    event_seq = models.PositiveBigIntegerField(null=True, blank=True)
    scope_kind = models.CharField(max_length=16)
    scope_key = models.CharField(max_length=64, blank=True, default="")
    level = models.CharField(max_length=16)
    account = models.CharField(max_length=64)
    broker = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    notes = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    alert_event_seq = models.PositiveBigIntegerField(null=True, blank=True)
    # The alert raised when no worker took the run in time (raised once).
    stall_alert_seq = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # A worker's claim on the run; an expired lease lets another worker resume it.
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a worker should next take it (enqueued now, or a retry after backoff); a run
    # unheld long past it lost its message and is enqueued again by the sweep loop.
    due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event_seq", "account"], condition=models.Q(kind="switch"),
                                    name="brokerrun_event_account_unique"),
        ]
        indexes = [models.Index(fields=["state", "updated_at"], name="brokerrun_state_updated")]

    def __str__(self) -> str:
        return f"run {self.pk} {self.level} {self.scope_label} {self.account}: {self.state}"

    @property
    def scope_label(self) -> str:
        return self.scope_kind if self.scope_kind == "global" else f"{self.scope_kind}:{self.scope_key}"

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class ActionKind(models.TextChoices):
    CANCEL = "cancel", "Cancel order"
    GLOBAL_CANCEL = "global_cancel", "Global cancel"
    CLOSE = "close", "Close position at market"


class ActionOutcome(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"  # recorded before a closing order goes out
    SUBMITTED = "submitted", "Submitted, working"
    CANCELLED = "cancelled", "Cancelled"
    FILLED_BEFORE_CANCEL = "filled_before_cancel", "Filled before cancel (rest cancelled)"
    TOO_LATE = "too_late", "Too late (already filled)"
    FILLED = "filled", "Filled"
    REJECTED = "rejected", "Rejected"
    ERROR = "error", "Error"
    SKIPPED = "skipped", "Left for manual management"
    # A position the adapter cannot close as itself (expired contract, unsupported
    # security type): nothing was sent; an alert says so.
    UNCLOSABLE = "unclosable", "Cannot be closed at market (manual action needed)"


OPEN_OUTCOMES = (ActionOutcome.PENDING, ActionOutcome.SENDING, ActionOutcome.SUBMITTED)


class BrokerAction(models.Model):
    """One order or position action of a run, with its outcome and every attempt.

    `key` identifies what the action is about: the broker order id for a cancel,
    the closing order's client reference for a close. Unique per run, so a retried
    step updates the row instead of acting twice.

    `instrument` is the whole instrument (base.Instrument.as_dict(); empty on rows
    written before instruments were stored: those read by `symbol`). A close belongs
    to a leg: the closing orders sent for one position (`position_key`) against one
    reading of it (`basis`, the signed quantity the leg set out to close; `leg`, the
    reference of the leg's first order). What is left to close is `basis` less the
    fills of the leg's orders, as the broker reports them.
    """

    run = models.ForeignKey(BrokerRun, on_delete=models.CASCADE, related_name="actions")
    key = models.CharField(max_length=128)
    action = models.CharField(max_length=16, choices=ActionKind.choices)
    account = models.CharField(max_length=64)
    broker_order_id = models.CharField(max_length=64, blank=True, default="")
    client_ref = models.CharField(max_length=128, blank=True, default="")
    symbol = models.CharField(max_length=32, blank=True, default="")
    instrument = models.JSONField(default=dict, blank=True)
    position_key = models.CharField(max_length=128, blank=True, default="", db_index=True)
    leg = models.CharField(max_length=128, blank=True, default="")
    basis = models.DecimalField(**QTY, null=True, blank=True)
    strategy = models.CharField(max_length=64, blank=True, default="")
    side = models.CharField(max_length=4, blank=True, default="")
    quantity = models.DecimalField(**QTY, default=0)
    filled_quantity = models.DecimalField(**QTY, default=0)
    outcome = models.CharField(max_length=24, choices=ActionOutcome.choices, default=ActionOutcome.PENDING)
    detail = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="brokeraction_run_key_unique")]

    def __str__(self) -> str:
        return f"{self.action} {self.symbol} {self.broker_order_id or self.client_ref}: {self.outcome}"


# --- The paper broker -------------------------------------------------------------------


class PaperAccount(models.Model):
    code = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # While set, position reports show the positions as of this moment (fills after it
    # are not reported yet), as a real broker's position reports trail its fills.
    reports_held_at = models.DateTimeField(null=True, blank=True)
    # While set, the broker is unreachable for this account (a connection outage, for
    # drills and the broker_disconnect breaker): every read and order is refused.
    offline_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class AssetClass(models.TextChoices):
    """What a paper instrument is; with the symbol, its identity (an AAPL stock and an
    AAPL option are different instruments)."""

    STOCK = "stock", "Stock / ETF"
    FUTURE = "future", "Future"
    OPTION = "option", "Option"
    FX = "fx", "FX (quantity in base currency)"
    CFD = "cfd", "CFD"
    CRYPTO = "crypto", "Crypto"
    BOND = "bond", "Bond"
    # Redeemed at the end-of-day NAV, never sold at market: a kill cannot close it.
    FUND = "fund", "Mutual fund"


class PaperOrderStatus(models.TextChoices):
    WORKING = "working", "Working"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"


PAPER_WORKING = (PaperOrderStatus.WORKING, PaperOrderStatus.PARTIALLY_FILLED)


class PaperOrder(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.PROTECT, related_name="orders")
    # Set by whoever places the order; unique, so placing twice with it returns the same order.
    client_order_id = models.CharField(max_length=128, unique=True, null=True, blank=True)
    strategy = models.CharField(max_length=64, blank=True, default="", db_index=True)
    symbol = models.CharField(max_length=32)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, default=AssetClass.STOCK)
    side = models.CharField(max_length=4)  # BUY / SELL
    order_type = models.CharField(max_length=3, default="LMT")  # LMT / MKT
    quantity = models.DecimalField(**QTY)
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    filled_quantity = models.DecimalField(**QTY, default=0)
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    status = models.CharField(max_length=16, choices=PaperOrderStatus.choices, default=PaperOrderStatus.WORKING)
    reject_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "status"], name="paperorder_account_status")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.account_id} {self.side} {self.quantity} {self.symbol} {self.status}"

    @property
    def remaining(self):
        return self.quantity - self.filled_quantity


class PaperPosition(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.PROTECT, related_name="positions")
    symbol = models.CharField(max_length=32)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, default=AssetClass.STOCK)
    quantity = models.DecimalField(**QTY, default=0)  # signed
    avg_cost = models.DecimalField(**PRICE, default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "symbol", "asset_class"]
        constraints = [models.UniqueConstraint(fields=["account", "symbol", "asset_class"],
                                               name="paperposition_account_instrument")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol} {self.quantity}"


class PaperPrice(models.Model):
    symbol = models.CharField(max_length=32)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, default=AssetClass.STOCK)
    price = models.DecimalField(**PRICE)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["symbol", "asset_class"], name="paperprice_instrument")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price}"


class PaperFill(models.Model):
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="fills")
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**PRICE)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"fill {self.quantity} @ {self.price} (order {self.order_id})"
