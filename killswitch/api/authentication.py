"""API tokens: `Authorization: Token <key>` for scripts and trading desks.

Keys are minted and revoked by killswitch.services.tokens; only their SHA-256 is
stored. Session authentication with CSRF (DRF's SessionAuthentication) serves the
dashboard.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from killswitch.models import ApiToken
from killswitch.services.audit import bounded_transaction
from killswitch.services.tokens import hash_key
from riskcontrol.performance.caches import read_auth_cache

logger = logging.getLogger("killswitch")

KEYWORD = "Token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# last_used_at is written at most this often per token: a write per request would
# compete for the database's write lock with the activations themselves.
LAST_USED_RESOLUTION_SECONDS = 60.0

_last_write: dict[str, float] = {}
_last_write_lock = threading.Lock()


def _note_use(token: ApiToken) -> None:
    """Record last use, at most once a minute per token and process. Advisory: it never
    waits for a lock (another writer holding the database must not delay, or fail, the
    activation this request carries)."""
    now = time.monotonic()
    with _last_write_lock:
        if now - _last_write.get(token.key_hash, -1e9) < LAST_USED_RESOLUTION_SECONDS:
            return
        _last_write[token.key_hash] = now
    try:
        with bounded_transaction(ms=0):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    except DatabaseError:
        logger.info("token %s last use not recorded: the database is busy", token.prefix)


class HashedTokenAuthentication(BaseAuthentication):
    """`Authorization: Token ks_...` -> the token's user.

    Returns None when no Token header is sent (so session authentication may try);
    raises AuthenticationFailed (401) for a malformed, unknown or revoked token, or
    an inactive user. Reads may reuse a lookup for a short while
    (riskcontrol.performance.caches.read_auth_cache); writes never do.
    """

    keyword = KEYWORD

    def authenticate(self, request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header; expected 'Authorization: Token <key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token: it contains non-ASCII characters.") from None
        key_hash = hash_key(key)
        reading = request.method in READ_METHODS
        if reading:
            kept = read_auth_cache.get(key_hash)
            if kept is not None:
                return kept
        token = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None or not token.user.is_active:
            # The refusal's audit event names whose token it is (api.errors._actor_of).
            getattr(request, "_request", request).killswitch_token_owner = token.user
            if token.revoked_at is not None:
                raise exceptions.AuthenticationFailed(f"Token {token.prefix}… was revoked; ask for a new one.")
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        _note_use(token)
        if reading:
            token.user.get_all_permissions()  # loads the user's permission cache (ModelBackend)
            read_auth_cache.put(key_hash, token.user, token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes unauthenticated requests 401 (with this challenge) rather than 403.
        return self.keyword


class HashedTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token header in the OpenAPI schema."""

    target_class = "killswitch.api.authentication.HashedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; mint a key with `manage.py killswitch token <username>`.",
        }
