"""The Risk page inside the admin: state of every scope, Kill Switch / Resume Trading
behind typed confirmations, trading processes, broker runs, recent history.

Views translate the request, call one service (killswitch.services), present the
result. `admin_view` only checks `is_staff`; every view here checks the model
permission itself, and the services check again on every write (a viewer's direct
POST is refused and audited by the service, not only hidden by the template).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from killswitch import domain as L
from killswitch import services
from killswitch.models import Source
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.runtime.addresses import client_address
from killswitch.selectors import history, state_version
from killswitch.services import known_scopes
from killswitch.services.authorization import ACTIVATE, DEACTIVATE, VIEW, user_may

from .live import GROUP, client_rows, event_row, scope_rows
from .panels import panel_data

logger = logging.getLogger("killswitch")

KILL_WORD = "KILL"
RESUME_WORD = "RESUME"
RECENT_EVENTS = 20
RECENT_RUNS = 5


def _require_view(request: HttpRequest) -> None:
    if not user_may(request.user, VIEW):
        raise PermissionDenied("The viewer role (view permission) is required to see the Risk page.")


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# --- What the page shows ------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def resume_requests(user: Any) -> list[dict[str, Any]]:
    """The open resume requests, JSON-ready, each saying whether `user` made it (the
    requester cannot approve it: the page shows them "waiting" instead of Approve)."""
    from killswitch.services.resumes import open_requests

    return [{**r, "requested_at": _iso(r["requested_at"]), "expires_at": _iso(r["expires_at"]),
             "yours": r["requested_by"] == user.get_username()} for r in open_requests()]


def page_state(request: HttpRequest) -> dict[str, Any]:
    """Everything the Risk page draws, JSON-ready. The page re-reads it on (re)connect."""
    user = request.user
    return {
        "resume_requests": resume_requests(user),
        "resume_approvals": kill_switch_policy().resume_approvals,
        "server_now": clock.now().isoformat(),
        "version": state_version(),
        "scopes": scope_rows(),
        "history": [event_row(e) for e in history(limit=RECENT_EVENTS)],
        "clients": client_rows(),
        "suggestions": known_scopes.suggestions(),
        **panel_data(),
        "permissions": {"activate": user_may(user, ACTIVATE), "deactivate": user_may(user, DEACTIVATE)},
    }


def landing_summary() -> dict[str, Any]:
    """What the admin's landing page shows of the switch: the global level, who set it,
    since when, why, and how many other scopes are stopped."""
    from killswitch.selectors import scope_states

    states = scope_states()
    glob = next(s for s in states if s.scope == L.GLOBAL)
    return {"level": glob.level, "since": glob.since, "actor": glob.actor, "reason": glob.reason,
            "others_stopped": [s.scope for s in states if s.scope != L.GLOBAL and s.level != L.RUNNING],
            "risk_url": reverse("admin:killswitch_risk")}


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
            "open_url": reverse("admin:killswitch_risk_open"),
            "history_url": reverse("admin:killswitch_event_changelist"),
            "cooldown_minutes": policy.cooldown_minutes,
            "default_level": policy.default_level,
            "kill_word": KILL_WORD,
            "resume_word": RESUME_WORD,
            "login_url": reverse("admin:login") + "?next=" + reverse("admin:killswitch_risk"),
            # The reconciler pings every heartbeat: missing several means the page may be stale.
            "heartbeat_interval_seconds": policy.heartbeat_interval_seconds,
            "stale_after_seconds": max(3.0, 6 * policy.heartbeat_interval_seconds),
            "client_stale_after_seconds": policy.client_stale_after_seconds,
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


@require_GET
def risk_open(request: HttpRequest, site: Any) -> JsonResponse:
    """What is still open in ?scope= (the Resume dialog shows it before the confirmation)."""
    _require_view(request)
    try:
        ref = L.ScopeRef.parse(request.GET.get("scope", "global"))
    except ValueError as error:
        return JsonResponse({"ok": False, "error": str(error)}, status=400)
    return JsonResponse({"ok": True, "scope": str(ref), "open": _still_open(ref)})


def _still_open(ref: L.ScopeRef) -> dict[str, Any]:
    from killswitch.selectors import open_in_scope

    return open_in_scope(ref)


def _answer(request: HttpRequest, /, *, ok: bool, message: str, status: int = 200, changed: bool = True,
            warnings: tuple[str, ...] | list[str] = (), **extra: Any) -> HttpResponse:
    """The page's answer: JSON for the page's script, else a message and a redirect. A
    change is a success, a request that changed nothing (already at that level)
    information, a refusal an error; warnings go with either."""
    if _wants_json(request):
        body = {"ok": ok, "message": message, "changed": changed, "warnings": list(warnings), **extra}
        if not ok:
            body["error"] = message
        return JsonResponse(body, status=status)
    if not ok:
        messages.error(request, message)
    else:
        (messages.success if changed else messages.info)(request, message)
    for text in warnings:
        messages.warning(request, text)
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
        reason=reason, requested_level=requested_level, client_address=client_address(request),
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
                                   source=Source.ADMIN, client_address=client_address(request))
    except services.KillSwitchError as error:
        return _refused(request, error)
    return _answer(request, ok=True, message=result.message, scope=result.scope, level=result.level,
                   changed=result.changed, version=result.version, seq=result.seq,
                   cooldown_until=_iso(result.cooldown_until), pending_audit=result.pending_audit,
                   warnings=result.warnings, status=202 if result.pending_audit else 200)


@require_POST
def risk_resume(request: HttpRequest, site: Any) -> HttpResponse:
    scope = request.POST.get("scope", "global")
    reason = request.POST.get("reason", "")
    if request.POST.get("confirm", "") != RESUME_WORD:
        return _confirmation_missing(request, word=RESUME_WORD, attempted="deactivate", scope=scope,
                                     reason=reason, requested_level=L.RUNNING)
    try:
        result = services.deactivate(scope=scope, actor=request.user, source=Source.ADMIN, reason=reason,
                                     client_address=client_address(request))
    except services.KillSwitchError as error:
        return _refused(request, error)
    still_open = _still_open(L.ScopeRef.parse(result.scope))  # as every resume answer (api/shapes.py)
    if isinstance(result, services.ResumeRequested):  # a second risk officer must approve
        return _answer(request, ok=True, message=result.message, scope=result.scope, level=result.level,
                       changed=False, request=result.request_id, seq=result.seq, status=202,
                       requested=True, expires_at=_iso(result.expires_at), open=still_open)
    return _answer(request, ok=True, message=result.message, scope=result.scope, level=result.level,
                   changed=result.changed, version=result.version, seq=result.seq, open=still_open)
