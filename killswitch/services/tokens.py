"""API tokens: minting, revoking, listing (`manage.py killswitch token`).

A token is `ks_` followed by 40 URL-safe characters (240 random bits), shown once
when it is minted. Only its SHA-256 is stored (`ApiToken.key_hash`) with a short
prefix for display, so a copy of the database yields no usable token. A plain
SHA-256 is enough here (no salt, no slow hash): the secret is random and long, not
a password a person chose, so there is nothing to guess from the hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from killswitch.models import ApiToken
from riskcontrol.performance.caches import read_auth_cache

TOKEN_PREFIX = "ks_"
TOKEN_BODY_CHARS = 40
DISPLAY_PREFIX_LENGTH = 11  # "ks_" + 8 characters: enough to tell tokens apart, useless to guess


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class TokenError(Exception):
    """A token command that cannot be carried out (unknown user, unknown prefix)."""


@dataclass(frozen=True)
class IssuedToken:
    key: str  # the secret: shown once, never stored
    token: ApiToken


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
    read_auth_cache.clear()  # this process at once; other server processes within the cache's lifetime
    return tokens


def list_tokens(*, username: str | None = None) -> list[ApiToken]:
    qs = ApiToken.objects.select_related("user").order_by("-created_at")
    if username:
        qs = qs.filter(user__username=username)
    return list(qs)
