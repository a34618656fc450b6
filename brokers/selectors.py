"""Reads of broker runs and the paper broker (no rules, no writes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from .adapters.base import Instrument
from .models import BrokerAction, BrokerRun, PaperOrder, PaperPosition, PaperPrice

MAX_PAGE = 200


def plain(value: Any) -> str:
    """A decimal as people write it: 100, -50, 0.5 (never 1E+2 or 100.0000)."""
    if value is None:
        return ""
    d = Decimal(str(value))
    return str(d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize())


def runs(*, limit: int = 50, before_id: int | None = None, account: str | None = None,
         state: str | None = None) -> list[BrokerRun]:
    """Runs newest first, each with its actions prefetched (keyset on id)."""
    qs: QuerySet[BrokerRun] = BrokerRun.objects.all()
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    if account:
        qs = qs.filter(account=account)
    if state:
        qs = qs.filter(state=state)
    qs = qs.order_by("-id").prefetch_related(Prefetch("actions", queryset=BrokerAction.objects.order_by("id")))
    return list(qs[: max(1, min(limit, MAX_PAGE))])


def run(run_id: int) -> BrokerRun | None:
    return BrokerRun.objects.filter(pk=run_id).prefetch_related("actions").first()


def instrument_of(action: BrokerAction) -> Instrument:
    """The action's instrument; rows written before instruments were stored read by symbol."""
    return Instrument.from_dict(action.instrument, symbol=action.symbol)


def action_as_dict(action: BrokerAction) -> dict[str, Any]:
    return {
        "id": action.pk, "action": action.action, "account": action.account,
        "broker_order_id": action.broker_order_id, "client_ref": action.client_ref,
        "symbol": action.symbol, "instrument": instrument_of(action).as_dict(),
        "instrument_label": instrument_of(action).label, "position_key": action.position_key,
        "strategy": action.strategy, "side": action.side,
        "quantity": plain(action.quantity), "filled_quantity": plain(action.filled_quantity),
        "outcome": action.outcome, "detail": action.detail, "attempts": action.attempts,
        "created_at": action.created_at, "updated_at": action.updated_at, "finished_at": action.finished_at,
    }


def run_as_dict(run: BrokerRun, *, with_actions: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.pk, "kind": run.kind, "event_seq": run.event_seq, "scope": run.scope_label,
        "level": run.level, "account": run.account, "broker": run.broker, "state": run.state,
        "attempts": run.attempts, "notes": run.notes, "error": run.error,
        "alert_event_seq": run.alert_event_seq, "created_at": run.created_at, "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
    if with_actions:
        data["actions"] = [action_as_dict(a) for a in run.actions.all()]
    return data


def paper_orders(*, account: str | None = None, status: str | None = None, limit: int = 200) -> list[PaperOrder]:
    qs = PaperOrder.objects.select_related("account").order_by("-id")
    if account:
        qs = qs.filter(account__code=account)
    if status:
        qs = qs.filter(status=status)
    return list(qs[:limit])


def paper_positions(*, account: str | None = None) -> list[PaperPosition]:
    qs = PaperPosition.objects.select_related("account").exclude(quantity=0)
    if account:
        qs = qs.filter(account__code=account)
    return list(qs.order_by("account__code", "symbol"))


def paper_prices() -> list[PaperPrice]:
    return list(PaperPrice.objects.order_by("symbol"))
