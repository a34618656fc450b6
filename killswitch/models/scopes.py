"""The current level of every scope: the database is the source of truth; Redis only
distributes it (killswitch.distribution). Written by killswitch.services only."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from killswitch import domain as L

from .audit import Level, ScopeKind, Source


class Scope(models.Model):
    """The current level of one scope. Created on first use; the global row by migration."""

    kind = models.CharField(max_length=16, choices=ScopeKind.choices)
    key = models.CharField(max_length=L.MAX_SCOPE_KEY, blank=True, default="")
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.RUNNING)
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=150, blank=True, default="")
    source = models.CharField(max_length=16, choices=Source.choices, blank=True, default="")
    since = models.DateTimeField(default=timezone.now)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    # The global state version at this scope's last change (see AuditHead.state_version).
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="scope_kind_key_unique")]
        ordering = ["kind", "key"]
        permissions = [
            ("view_killswitch", "Can view the kill switch state and history"),
            ("activate_killswitch", "Can activate the kill switch"),
            ("deactivate_killswitch", "Can deactivate the kill switch (resume trading)"),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.level}"

    @property
    def ref(self) -> L.ScopeRef:
        return L.ScopeRef(self.kind, self.key)

    @property
    def label(self) -> str:
        # Stored rows were validated when created; formatting is all that is needed here
        # (this runs for every scope on every publish and page push).
        return L.label(self.kind, self.key)

    def cooldown_remaining_seconds(self, now=None) -> float:
        if not self.cooldown_until:
            return 0.0
        from killswitch.runtime.clock import now as clock_now

        now = now or clock_now()
        return max(0.0, (self.cooldown_until - now).total_seconds())
