"""Admin logins under django-axes: the client address it counts, the page a locked-out
person sees, and the audit event of every lockout (source admin, the username tried,
the address)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from killswitch import services
from killswitch.models import Source
from killswitch.runtime.addresses import client_address


def client_ip(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address the API and the audit log use (NUM_PROXIES)."""
    return client_address(request)


def locked_out(request: HttpRequest, credentials: Any = None, *args: Any, **kwargs: Any) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a plain 429 that says what happened and for how long."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return HttpResponse(
        f"Too many failed logins for this username or from this address ({settings.AXES_FAILURE_LIMIT} in a "
        f"row): logins are refused for {minutes} minutes. The attempt is in the kill switch's audit log.",
        status=429, content_type="text/plain; charset=utf-8")


def on_locked_out(sender: Any, request: HttpRequest | None = None, username: str | None = None,
                  ip_address: str | None = None, **kwargs: Any) -> None:
    """Receiver of axes.signals.user_locked_out: one audit event per lockout (axes signals
    every refused attempt while locked out; the first one of a cool-off is recorded)."""
    from django.core.cache import caches

    key = f"ks:login-lockout:{username}:{ip_address}"
    try:
        first = caches[settings.AXES_CACHE].add(key, 1, int(settings.AXES_COOLOFF_TIME.total_seconds()))
    except Exception:  # a cache failure must not hide the lockout: record it
        first = True
    if not first:
        return
    services.record_refusal(
        attempted="admin login", scope="global", actor=f"login:{(username or '?')[:100]}", source=Source.ADMIN,
        error=services.PermissionRefused(
            f"login locked out after {settings.AXES_FAILURE_LIMIT} failed attempts for username "
            f"{username!r} from {ip_address or 'an unknown address'}"),
        client_address=ip_address)


def connect() -> None:
    from axes.signals import user_locked_out

    user_locked_out.connect(on_locked_out, dispatch_uid="killswitch.web.logins.locked_out")
