"""API tokens: `Authorization: Token <key>` for scripts and trading desks.

A token is `ks_` followed by 40 URL-safe characters (240 random bits), shown once
when it is minted. Only its SHA-256 is stored (`ApiToken.key_hash`) with a short
prefix for display, so a copy of the database yields no usable token. A plain
SHA-256 is enough here (no salt, no slow hash): the secret is random and long, not
a password a person chose, so there is nothing to guess from the hash.

Session authentication with CSRF (DRF's SessionAuthentication) serves the dashboard.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .models import ApiToken

TOKEN_PREFIX = "ks_"
TOKEN_BODY_CHARS = 40
DISPLAY_PREFIX_LENGTH = 11  # "ks_" + 8 characters: enough to tell tokens apart, useless to guess
KEYWORD = "Token"
# last_used_at is written at most this often per token: a write per request would
# compete for the database's write lock with the activations themselves.
LAST_USED_RESOLUTION_SECONDS = 60.0


class TokenError(Exception):
    """A token command that cannot be carried out (unknown user, unknown prefix)."""


@dataclass(frozen=True)
class IssuedToken:
    key: str  # the secret: shown once, never stored
    token: ApiToken


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def issue_token(*, username: str, name: str = "") -> IssuedToken:
    """Mint a token for `username`. Returns the secret (print it once) and the stored row.

    Raises TokenError when the user does not exist or is inactive.
    """
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise TokenError(f"No user named {username!r}.")
    if not user.is_active:
        raise TokenError(f"User {username!r} is inactive; activate the account first.")
    key = TOKEN_PREFIX + secrets.token_urlsafe(30)[:TOKEN_BODY_CHARS]
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:DISPLAY_PREFIX_LENGTH],
                                    key_hash=hash_key(key))
    return IssuedToken(key, token)


def revoke_tokens(*, prefix: str) -> list[ApiToken]:
    """Revoke every live token whose display prefix (or full key) matches `prefix`.

    A full key is accepted too, so an operator holding a leaked key can revoke it
    directly. Raises TokenError when no live token matches, or when the prefix is too
    short to name one token safely.
    """
    prefix = prefix.strip()
    with transaction.atomic():
        if len(prefix) > DISPLAY_PREFIX_LENGTH:
            tokens = list(ApiToken.objects.select_for_update().filter(key_hash=hash_key(prefix),
                                                                       revoked_at__isnull=True))
        else:
            if len(prefix) < DISPLAY_PREFIX_LENGTH:
                raise TokenError(f"Give the full {DISPLAY_PREFIX_LENGTH}-character prefix "
                                 "shown by `killswitch token --list` (or the whole key).")
            tokens = list(ApiToken.objects.select_for_update().filter(prefix=prefix,
                                                                       revoked_at__isnull=True))
        if not tokens:
            raise TokenError(f"No live token matches {prefix[:DISPLAY_PREFIX_LENGTH]!r}.")
        now = timezone.now()
        for token in tokens:
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
    _read_cache.clear()  # this process at once; other server processes within the cache's lifetime
    return tokens


def list_tokens(*, username: str | None = None) -> list[ApiToken]:
    qs = ApiToken.objects.select_related("user").order_by("-created_at")
    if username:
        qs = qs.filter(user__username=username)
    return list(qs)


_last_write: dict[str, float] = {}
_last_write_lock = threading.Lock()


def _note_use(token: ApiToken) -> None:
    """Record last use, at most once a minute per token and process."""
    now = time.monotonic()
    with _last_write_lock:
        if now - _last_write.get(token.key_hash, -1e9) < LAST_USED_RESOLUTION_SECONDS:
            return
        _last_write[token.key_hash] = now
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _ReadCache:
    """Tokens recently authenticated for reads, with their user and permissions, for
    KILLSWITCH_READ_AUTH_CACHE_SECONDS (2 by default; 0 turns it off), per process.

    A status poller would otherwise pay three queries (token, user permissions, group
    permissions) on every read, which is most of the read's cost. Only reads use it:
    a write always looks the token and the roles up in the database, so a revoked
    token or a removed role cannot change anything from the moment of the change; it
    stops reading within the cache's lifetime. Bounded in size; entries are handed out
    as copies (each request gets its own user object, sharing the loaded permissions).
    """

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any, ApiToken]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _lifetime() -> float:
        from django.conf import settings

        return float(getattr(settings, "KILLSWITCH_READ_AUTH_CACHE_SECONDS", 2.0))

    def get(self, key_hash: str) -> tuple[Any, ApiToken] | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, user, token = entry
        if time.monotonic() >= expires:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return copy.copy(user), token

    def put(self, key_hash: str, user: Any, token: ApiToken) -> None:
        lifetime = self._lifetime()
        if lifetime <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                now = time.monotonic()
                for stale in [k for k, (expires, _, _) in self._entries.items() if expires <= now]:
                    del self._entries[stale]
                while len(self._entries) >= self.MAX_ENTRIES:  # oldest first (insertion order)
                    del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (time.monotonic() + lifetime, copy.copy(user), token)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_read_cache = _ReadCache()


class HashedTokenAuthentication(BaseAuthentication):
    """`Authorization: Token ks_...` -> the token's user.

    Returns None when no Token header is sent (so session authentication may try);
    raises AuthenticationFailed (401) for a malformed, unknown or revoked token, or
    an inactive user.
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
            kept = _read_cache.get(key_hash)
            if kept is not None:
                return kept
        token = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"Token {token.prefix}… was revoked; ask for a new one.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        _note_use(token)
        if reading:
            token.user.get_all_permissions()  # loads the user's permission cache (ModelBackend)
            _read_cache.put(key_hash, token.user, token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes unauthenticated requests 401 (with this challenge) rather than 403.
        return self.keyword


class HashedTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token header in the OpenAPI schema."""

    target_class = "killswitch.authentication.HashedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; mint a key with `manage.py killswitch token <username>`.",
        }
