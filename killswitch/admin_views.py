"""The Risk page inside the admin: state of every scope, Kill Switch / Resume Trading
behind typed confirmations, trading processes, broker runs, recent history.

Views translate the request, call one service (killswitch.services), present the
result. `admin_view` only checks `is_staff`; every view here checks the model
permission itself, and the services check again on every write (a viewer's direct
POST is refused and audited by the service, not only hidden by the template).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import clock, services
from . import levels as L
from .live import GROUP, event_row, scope_rows
from .models import Source
from .policy import kill_switch_policy
from .selectors import history, state_version

logger = logging.getLogger("killswitch")

KILL_WORD = "KILL"
RESUME_WORD = "RESUME"
RECENT_EVENTS = 20
RECENT_RUNS = 5


def _require_view(request: HttpRequest) -> None:
    if not request.user.has_perm("killswitch.view_killswitch"):
        raise PermissionDenied("The viewer role (view permission) is required to see the Risk page.")


def _client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# --- What the page shows ------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def trading_clients() -> list[dict[str, Any]] | None:
    """Connected trading processes and the version each acknowledged, or None when the
    client library's models are not installed."""
    try:
        model = apps.get_model("killswitch", "TradingClient")
    except LookupError:
        return None
    try:
        rows = list(model.objects.filter(disconnected_at__isnull=True).order_by("name", "client_id")[:200])
    except Exception:  # table not migrated yet
        logger.warning("trading clients could not be read", exc_info=True)
        return None
    policy = kill_switch_policy()
    now = clock.now()
    out = []
    for c in rows:
        last_seen = getattr(c, "last_seen_at", None)
        out.append({
            "name": c.name, "host": c.host, "pid": c.pid, "account": c.account, "strategy": c.strategy,
            "applied_version": c.applied_version, "acked_at": _iso(c.acked_at),
            "level_seen": c.level_seen, "scope_seen": c.scope_seen, "cause": c.cause,
            "last_seen_at": _iso(last_seen),
            "stale": bool(last_seen and (now - last_seen).total_seconds() > policy.client_stale_after_seconds),
        })
    return out


def broker_runs() -> list[dict[str, Any]] | None:
    """The latest broker runs with their per-order actions, or None when the broker
    app's models are not installed."""
    try:
        run_model = apps.get_model("brokers", "BrokerRun")
    except LookupError:
        return None
    try:
        runs = list(run_model.objects.order_by("-created_at", "-pk").prefetch_related("actions")[:RECENT_RUNS])
    except Exception:
        logger.warning("broker runs could not be read", exc_info=True)
        return None
    out = []
    for r in runs:
        scope = str(L.ScopeRef(r.scope_kind, r.scope_key)) if r.scope_kind in L.SCOPE_KINDS else r.scope_kind
        out.append({
            "id": r.pk, "event_seq": r.event_seq, "scope": scope, "level": r.level, "account": r.account,
            "broker": r.broker, "state": r.state, "error": r.error, "created_at": _iso(r.created_at),
            "finished_at": _iso(r.finished_at),
            "actions": [
                {"action": a.action, "account": a.account, "broker_order_id": a.broker_order_id,
                 "symbol": a.symbol, "side": a.side, "quantity": _plain(a.quantity),
                 "filled_quantity": _plain(a.filled_quantity), "outcome": a.outcome, "detail": a.detail}
                for a in sorted(r.actions.all(), key=lambda a: a.pk)
            ],
        })
    return out


def page_state(request: HttpRequest) -> dict[str, Any]:
    """Everything the Risk page draws, JSON-ready. The page re-reads it on (re)connect."""
    user = request.user
    return {
        "server_now": clock.now().isoformat(),
        "version": state_version(),
        "scopes": scope_rows(),
        "history": [event_row(e) for e in history(limit=RECENT_EVENTS)],
        "clients": trading_clients(),
        "runs": broker_runs(),
        "permissions": {
            "activate": user.has_perm("killswitch.activate_killswitch"),
            "deactivate": user.has_perm("killswitch.deactivate_killswitch"),
        },
    }


# --- Views --------------------------------------------------------------------------------


def risk_page(request: HttpRequest, site: Any) -> TemplateResponse:
    _require_view(request)
    state = page_state(request)
    policy = kill_switch_policy()
    context = {
        **site.each_context(request),
        "title": "Risk",
        "state": state,
        "config": {
            "ws_path": "/ws/risk/",
            "group": GROUP,
            "state_url": reverse("admin:killswitch_risk_state"),
            "activate_url": reverse("admin:killswitch_risk_activate"),
            "resume_url": reverse("admin:killswitch_risk_resume"),
            "history_url": reverse("admin:killswitch_event_changelist"),
            "cooldown_minutes": policy.cooldown_minutes,
            "default_level": policy.default_level,
            "kill_word": KILL_WORD,
            "resume_word": RESUME_WORD,
        },
        "levels": L.ACTIVE_LEVELS,
        "default_level": policy.default_level,
        "can_activate": state["permissions"]["activate"],
        "can_deactivate": state["permissions"]["deactivate"],
        "history_url": reverse("admin:killswitch_event_changelist"),
        "cooldown_minutes": policy.cooldown_minutes,
    }
    return TemplateResponse(request, "admin/killswitch/risk.html", context)


@require_GET
def risk_state(request: HttpRequest, site: Any) -> JsonResponse:
    _require_view(request)
    return JsonResponse(page_state(request))


def _answer(request: HttpRequest, *, ok: bool, message: str, status: int = 200,
            **extra: Any) -> HttpResponse:
    if _wants_json(request):
        body = {"ok": ok, "message": message, **extra}
        if not ok:
            body["error"] = message
        return JsonResponse(body, status=status)
    (messages.success if ok else messages.error)(request, message)
    return HttpResponseRedirect(reverse("admin:killswitch_risk"))


def _refused(request: HttpRequest, error: services.KillSwitchError) -> HttpResponse:
    status = {"forbidden": 403, "cooldown_active": 409, "disabled": 403}.get(error.code, 400)
    extra: dict[str, Any] = {"code": error.code, "field": error.field}
    if isinstance(error, services.CooldownActive):
        extra["remaining_seconds"] = round(error.remaining_seconds, 1)
        extra["cooldown_until"] = error.cooldown_until.isoformat()
    return _answer(request, ok=False, message=error.message, status=status, **extra)


def _confirmation_missing(request: HttpRequest, *, word: str, attempted: str, scope: str,
                          reason: str, requested_level: str) -> HttpResponse:
    """A POST without the exact typed word: refused, and audited like any refusal."""
    error = services.record_refusal(
        attempted=attempted, scope=scope, actor=request.user, source=Source.ADMIN,
        error=services.InvalidRequest(f"Type {word} (uppercase, exactly) to confirm.", field="confirm"),
        reason=reason, requested_level=requested_level, client_address=_client_address(request),
    )
    return _refused(request, error)


@require_POST
def risk_activate(request: HttpRequest, site: Any) -> HttpResponse:
    scope = request.POST.get("scope", "global")
    level = request.POST.get("level") or None
    reason = request.POST.get("reason", "")
    if request.POST.get("confirm", "") != KILL_WORD:
        return _confirmation_missing(request, word=KILL_WORD, attempted="activate", scope=scope,
                                     reason=reason, requested_level=level or "")
    try:
        result = services.activate(scope=scope, level=level, reason=reason, actor=request.user,
                                   source=Source.ADMIN, client_address=_client_address(request))
    except services.KillSwitchError as error:
        return _refused(request, error)
    return _answer(request, ok=True, message=result.message, scope=result.scope, level=result.level,
                   changed=result.changed, version=result.version, seq=result.event.seq,
                   cooldown_until=_iso(result.cooldown_until))


@require_POST
def risk_resume(request: HttpRequest, site: Any) -> HttpResponse:
    scope = request.POST.get("scope", "global")
    reason = request.POST.get("reason", "")
    if request.POST.get("confirm", "") != RESUME_WORD:
        return _confirmation_missing(request, word=RESUME_WORD, attempted="deactivate", scope=scope,
                                     reason=reason, requested_level=L.RUNNING)
    try:
        result = services.deactivate(scope=scope, actor=request.user, source=Source.ADMIN, reason=reason,
                                     client_address=_client_address(request))
    except services.KillSwitchError as error:
        return _refused(request, error)
    return _answer(request, ok=True, message=result.message, scope=result.scope, level=result.level,
                   changed=result.changed, version=result.version, seq=result.event.seq)
