"""One error shape for every DRF view of the project, from one handler.

Every error leaves `exception_handler` as {"error": "<human message>", "code":
"<stable code>", "field": <name or null>, ...}. On the kill switch endpoints (views
with `audit_subject`) a refusal that no service recorded yet becomes an audit event
here, and 401/403 answers count as failed attempts of the client address (limits.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions
from rest_framework.response import Response

from killswitch import services
from killswitch.models import Source
from killswitch.runtime.addresses import client_address

from .limits import RateLimited, record_failure
from .serializers import CooldownErrorSerializer, ErrorSerializer
from .shapes import zulu  # noqa: F401 - where the views take it from

logger = logging.getLogger("killswitch")


STATUS_BY_CODE = {
    services.InvalidRequest.code: 400,
    services.PermissionRefused.code: 403,
    services.ControlDisabled.code: 403,
    services.CooldownActive.code: 409,
    services.ResumeRefused.code: 409,
    "not_found": 404,  # a named thing that does not exist (a dead-man's switch)
    RateLimited.code: 429,
    services.DatabaseUnavailable.code: 503,
}

DATABASE_DOWN_MESSAGE = (
    "The kill switch database is unavailable: nothing was changed. On the server, "
    "`manage.py killswitch activate` or `redis-cli SET trading_switch halt` still stop trading "
    "at once and are audited when the database is back (README runbook)."
)

NOT_AUTHENTICATED_MESSAGE = (
    "Authentication required: send 'Authorization: Token <key>' (mint a key with "
    "`manage.py killswitch token <username>`) or log in to the dashboard."
)


def _first_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    """(field, message) of the first error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "detail") else f"{prefix}{key}"
            field, message = _first_error(value, f"{name}." if name else prefix)
            return field or name, message
        return None, "Invalid input."
    if isinstance(detail, list):
        return _first_error(detail[0], prefix) if detail else (None, "Invalid input.")
    return None, str(detail)


def _error_body(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for any exception."""
    headers: dict[str, str] = {}
    if isinstance(exc, services.CooldownActive):
        return 409, {
            "error": exc.short_message, "code": exc.code, "field": None, "message": exc.message,
            "scope": exc.scope, "remaining_seconds": int(exc.remaining_seconds + 0.999),
            "cooldown_until": zulu(exc.cooldown_until),
        }, headers
    if isinstance(exc, services.KillSwitchError):
        body = {"error": exc.message, "code": exc.code, "field": exc.field}
        if isinstance(exc, RateLimited):
            body["retry_after"] = exc.retry_after
            headers["Retry-After"] = str(exc.retry_after)
        return STATUS_BY_CODE.get(exc.code, 400), body, headers
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, {"error": f"The request body is larger than {limit} bytes; an operation's JSON is a few "
                              "hundred bytes.", "code": "payload_too_large", "field": None}, headers
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
        if field and not message.lower().startswith(field.split(".")[-1].lower()):
            message = f"{field}: {message}"
        return 400, {"error": message, "code": "invalid", "field": field, "errors": exc.detail}, headers
    if isinstance(exc, exceptions.APIException):
        code = {
            exceptions.ParseError: "malformed_json",
            exceptions.NotAuthenticated: "not_authenticated",
            exceptions.AuthenticationFailed: "authentication_failed",
            exceptions.PermissionDenied: "forbidden",
            exceptions.NotFound: "not_found",
            exceptions.MethodNotAllowed: "method_not_allowed",
            exceptions.NotAcceptable: "not_acceptable",
            exceptions.UnsupportedMediaType: "unsupported_media_type",
            exceptions.Throttled: "rate_limited",
        }.get(type(exc), exc.default_code)
        message = str(exc.detail)
        if isinstance(exc, exceptions.NotAuthenticated):
            message = NOT_AUTHENTICATED_MESSAGE
        elif isinstance(exc, exceptions.ParseError):
            message = f"The request body is not valid JSON: {message.removeprefix('JSON parse error - ')}"
        elif isinstance(exc, exceptions.UnsupportedMediaType):
            message += " Send the body as JSON with 'Content-Type: application/json'."
        elif isinstance(exc, exceptions.PermissionDenied) and message.startswith("CSRF Failed"):
            code = "csrf_failed"
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return exc.status_code, {"error": message, "code": code, "field": None}, headers
    if isinstance(exc, DatabaseError):
        # Authentication itself needs the database, so nothing can be done here; say what can.
        logger.critical("database unavailable during an API request", exc_info=exc)
        return 503, {"error": DATABASE_DOWN_MESSAGE, "code": "database_unavailable", "field": None}, headers
    logger.error("unhandled error in the API", exc_info=exc)
    return 500, {"error": "Internal error; it has been logged.", "code": "server_error", "field": None}, headers


def _actor_of(request) -> Any:
    """The acting user when known: the authenticated user, or for a session request
    refused by CSRF, the session's user (so the audit names whose session it was)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    # A revoked token, or one whose user is inactive: name the user it belongs to.
    owner = getattr(getattr(request, "_request", request), "killswitch_token_owner", None)
    if owner is not None:
        return owner
    # DRF replaced request.user with AnonymousUser when authentication failed; the
    # session still says whose it is.
    try:
        session_user = get_user(getattr(request, "_request", request))
    except Exception:
        return None
    return session_user if getattr(session_user, "is_authenticated", False) else None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every error becomes {"error", "code", "field", ...}.

    On the kill switch endpoints (views with `audit_subject`) a refusal that no
    service recorded yet becomes an audit event here (identical ones within a window
    are counted, not recorded one by one: services.refusals), and every refusal counts
    as a failed attempt of the client address (limits.py).
    """
    status, body, headers = _error_body(exc)
    request = context.get("request")
    view = context.get("view")
    address = client_address(request) if request is not None else None
    audited = request is not None and hasattr(view, "audit_subject") and 400 <= status < 500
    if request is not None and (status in (401, 403) or (audited and status != 409)):
        record_failure(address)
    already_recorded = isinstance(exc, services.KillSwitchError) and (
        exc.event is not None or exc.counted_as_repeat)
    if isinstance(exc, RateLimited) and not getattr(exc, "first_in_window", True):
        already_recorded = True  # one audit event per throttled address and window
    if audited and not already_recorded:
        try:
            subject = view.audit_subject(request)
            error = exc if isinstance(exc, services.KillSwitchError) else services.KillSwitchError(body["error"])
            if not isinstance(exc, services.KillSwitchError):
                error.code = body["code"]
            services.record_refusal(
                attempted=subject["attempted"], scope=subject["scope"], actor=_actor_of(request),
                source=Source.API, error=error, reason=subject.get("reason", ""),
                requested_level=subject.get("requested_level", ""), client_address=address,
            )
        except Exception:  # the refusal is still answered; the failure to audit is logged
            logger.exception("could not audit a refused API request")
    response = Response(body, status=status, headers=headers)
    return response


def _error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "Bad input: malformed JSON, unknown action, level or scope, a wrong type, an oversize "
             "reason. `field` names the field.",
        401: "No credentials, or an invalid or revoked token.",
        403: "The role does not allow this (code forbidden), CSRF failed (csrf_failed), or changes "
             "over HTTP are disabled by kill_switch.http_enabled (disabled).",
        405: "Method not allowed.",
        406: "Only application/json responses are offered.",
        413: "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (code payload_too_large).",
        415: "The body must be JSON (Content-Type: application/json).",
        429: "Too many failed attempts from this address. Never returned to a permitted user.",
        503: "The database is unavailable (code database_unavailable); nothing was changed.",
    }
    responses = {c: OpenApiResponse(ErrorSerializer, description=described[c]) for c in codes}
    return responses


READ_ERRORS = _error_responses(400, 401, 403, 405, 406, 429, 503)
WRITE_ERRORS = {**_error_responses(400, 401, 403, 405, 406, 413, 415, 429, 503),
                409: OpenApiResponse(CooldownErrorSerializer, description="Refused by the scope's cooldown "
                                                         "(cooldown_active), or by the resume rules "
                                                         "(resume_refused).")}


