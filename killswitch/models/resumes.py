"""Resume requests: with `kill_switch.resume_approvals: 2`, a risk officer's resume of a
scope waits for a second, different risk officer (services.resumes). Written by
services only; each request's creation and outcome are audit events too."""

from __future__ import annotations

from django.db import models

from killswitch import domain as L

from .audit import ScopeKind


class ResumeState(models.TextChoices):
    OPEN = "open", "Waiting for a second risk officer"
    APPROVED = "approved", "Approved (resumed)"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn (the scope changed)"


class ResumeRequest(models.Model):
    scope_kind = models.CharField(max_length=16, choices=ScopeKind.choices)
    scope_key = models.CharField(max_length=L.MAX_SCOPE_KEY, blank=True, default="")
    # The level the scope was at when asked: a request is for lifting that halt or kill,
    # not a later one.
    level = models.CharField(max_length=16)
    scope_version = models.PositiveBigIntegerField()
    reason = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=150)
    requested_by_id = models.BigIntegerField(null=True, blank=True)
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    request_seq = models.PositiveBigIntegerField()
    state = models.CharField(max_length=16, choices=ResumeState.choices, default=ResumeState.OPEN)
    approved_by = models.CharField(max_length=150, blank=True, default="")
    approved_by_id = models.BigIntegerField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    resume_seq = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["scope_kind", "scope_key", "state"], name="resume_scope_state")]

    def __str__(self) -> str:
        return f"resume request #{self.pk} for {self.scope_label} by {self.requested_by}: {self.state}"

    @property
    def scope_label(self) -> str:
        return L.label(self.scope_kind, self.scope_key)
