"""The audit trail: an append-only, hash-chained event log and its head.

Every attempt to act on the switch, applied or not, is one Event. Written by
killswitch.services.audit only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC
from typing import Any

from django.db import models
from django.utils import timezone

from killswitch import domain as L


class Level(models.TextChoices):
    RUNNING = L.RUNNING, "Running"
    PAUSE = L.PAUSE, "Pause"
    HALT = L.HALT, "Halt"
    KILL = L.KILL, "Kill"


class ScopeKind(models.TextChoices):
    GLOBAL = L.GLOBAL, "Global"
    ACCOUNT = L.ACCOUNT, "Account"
    STRATEGY = L.STRATEGY, "Strategy"
    SYMBOL = L.SYMBOL, "Symbol"


class Source(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    CLI = "cli", "CLI"
    REDIS = "redis", "redis-cli (out of band)"
    TELEGRAM = "telegram", "Telegram"
    AUTOMATIC = "automatic", "Automatic"


class Action(models.TextChoices):
    ACTIVATE = "activate", "Activate"
    DEACTIVATE = "deactivate", "Deactivate"
    COOLDOWN_VIOLATION = "cooldown_violation", "Cooldown violation"
    REFUSED = "refused", "Refused"
    OUT_OF_BAND = "out_of_band", "Out-of-band change"
    RESTORED = "restored", "Restored"
    ALERT = "alert", "Alert"
    RESUME_REQUEST = "resume_request", "Resume requested"


class Outcome(models.TextChoices):
    APPLIED = "applied", "Applied"
    NOOP = "noop", "Already there"
    REFUSED = "refused", "Refused"
    REVERTED = "reverted", "Reverted"
    RECORDED = "recorded", "Recorded"


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit event."""


class EventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("audit events are append-only; they cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events are append-only; they cannot be deleted")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise AppendOnlyError("audit events are append-only; they cannot be updated")


# The fields that make up an event's hash, in a fixed order. Changing this list
# invalidates every stored chain: add a new chain version instead.
HASHED_FIELDS = (
    "seq", "created_at", "action", "outcome", "scope_kind", "scope_key", "previous_level",
    "new_level", "requested_level", "actor", "actor_user_id", "source", "reason", "detail",
    "client_address", "version", "prev_hash",
)
GENESIS_HASH = "0" * 64
# Chain versions: 1, SHA-256 over HASHED_FIELDS (anyone with the database can recompute
# it); 2, HMAC-SHA256 under AUDIT_HMAC_KEY over HASHED_FIELDS and the version itself, so
# someone with only the database cannot rebuild the chain. New events are version 2
# whenever a key is configured; older events keep verifying as version 1.
CHAIN_PLAIN, CHAIN_KEYED = 1, 2


class AuditKeyMissing(Exception):
    """A keyed (version 2) event cannot be hashed: AUDIT_HMAC_KEY is not configured."""


def audit_key() -> bytes | None:
    """The configured AUDIT_HMAC_KEY (or _FILE), or None."""
    from django.conf import settings

    key = getattr(settings, "AUDIT_HMAC_KEY", None)
    return key.encode() if isinstance(key, str) and key else None


class Event(models.Model):
    """One attempt to act on the switch, applied or not. Never updated, never deleted.

    `seq` numbers events without gaps under the AuditHead lock; `hash` covers the
    event's fields and the previous event's hash, so an edited or removed row
    breaks the chain (services.verify_audit_chain). Database triggers (migration
    0002) refuse UPDATE and DELETE below the ORM as well.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    scope_kind = models.CharField(max_length=16, choices=ScopeKind.choices)
    scope_key = models.CharField(max_length=L.MAX_SCOPE_KEY, blank=True, default="")
    previous_level = models.CharField(max_length=16, blank=True, default="")
    new_level = models.CharField(max_length=16, blank=True, default="")
    requested_level = models.CharField(max_length=16, blank=True, default="")
    actor = models.CharField(max_length=150)
    # No foreign key: an event must outlive the user who caused it, unchanged.
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    reason = models.TextField(blank=True, default="")
    detail = models.TextField(blank=True, default="")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    chain_version = models.PositiveSmallIntegerField(default=CHAIN_PLAIN)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["scope_kind", "scope_key", "-seq"], name="event_scope_seq"),
            models.Index(fields=["action", "-seq"], name="event_action_seq"),
            models.Index(fields=["source", "-seq"], name="event_source_seq"),
            models.Index(fields=["actor", "-seq"], name="event_actor_seq"),
            # The admin's event list filters on these too (bench/bench_history.py).
            models.Index(fields=["outcome", "-seq"], name="event_outcome_seq"),
            models.Index(fields=["new_level", "-seq"], name="event_new_level_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}/{self.outcome} {self.scope_label} {self.previous_level}->{self.new_level}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events are append-only; they cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("audit events are append-only; they cannot be deleted")

    @property
    def scope_label(self) -> str:
        if not self.scope_kind:  # a refused request whose scope could not be parsed, as typed
            return self.scope_key
        return L.label(self.scope_kind, self.scope_key)

    def hash_payload(self) -> str:
        values: dict[str, Any] = {}
        for name in HASHED_FIELDS + (("chain_version",) if self.chain_version >= CHAIN_KEYED else ()):
            value = getattr(self, name)
            if name == "created_at":
                value = value.astimezone(UTC).isoformat(timespec="microseconds")
            values[name] = value
        return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)

    def compute_hash(self) -> str:
        """The event's hash for its chain version. Raises AuditKeyMissing for a keyed
        event when no key is configured."""
        if self.chain_version >= CHAIN_KEYED:
            key = audit_key()
            if key is None:
                raise AuditKeyMissing(f"event #{self.seq} is keyed (chain version {self.chain_version}) "
                                      "and AUDIT_HMAC_KEY is not configured")
            return hmac.new(key, self.hash_payload().encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(self.hash_payload().encode()).hexdigest()

    def as_log_entry(self) -> dict[str, Any]:
        """The JSON kept in Redis `risk:kill_switch:log` (the seed's action/reason/timestamp first)."""
        return {
            "action": self.action,
            "reason": self.reason,
            "timestamp": self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seq": self.seq,
            "outcome": self.outcome,
            "scope": self.scope_label,
            "previous_level": self.previous_level,
            "new_level": self.new_level,
            "actor": self.actor,
            "source": self.source,
            "detail": self.detail,
            "version": self.version,
            # A copy of the chain outside the database: a shortened or rewritten log is
            # noticed against it (the reconciler; verify-audit --expect-head).
            "hash": self.hash,
        }


class AuditHead(models.Model):
    """The single row every append locks: gap-free `seq`, the chain's tip, the state version.

    Locking it serializes appends across scopes (transitions are rare; correctness
    wins). Its tip lets verification notice a removed *last* event too.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    # Increases by one on every applied change to any scope; clients acknowledge it.
    state_version = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "audit chain head"

    def __str__(self) -> str:
        return f"audit head #{self.last_seq} (state version {self.state_version})"
