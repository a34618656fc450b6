"""Every write and every rule of the kill switch, one module per action family:

- transitions: activate, deactivate, the cooldown rule, the transition contract;
- audit: the hash chain (append, verify);
- refusals: input rules and the audit of refused attempts;
- outage: the queue of what was done while the database was down;
- reconcile: out-of-band writes, a Redis that lost the state, alerts;
- acknowledgements: what trading processes reported;
- authorization: who may do what (the one place the rule lives);
- tokens, roles, demo: API tokens, the role groups, demo users.

Callers (API, admin, CLI, chat, breakers, reconciler, Celery tasks) translate their
input, call one function and present its result. Each function is keyword-only and
asks who acted, from where and why. This module lists the ones interfaces call.
"""

from __future__ import annotations

from .audit import AuditReport, verify_audit_chain
from .authorization import Actor
from .errors import (
    ControlDisabled,
    CooldownActive,
    DatabaseUnavailable,
    InvalidRequest,
    KillSwitchError,
    PermissionRefused,
)
from .outage import apply_pending
from .reconcile import (
    reconcile_out_of_band,
    record_alert,
    record_restored,
    restore_after_loss,
    unexplained_levels,
)
from .refusals import flush_repeated_refusals, record_refusal
from .resumes import ResumeRefused, ResumeRequested, open_requests
from .transitions import TransitionResult, activate, deactivate

__all__ = [
    "Actor", "AuditReport", "ControlDisabled", "CooldownActive", "DatabaseUnavailable", "InvalidRequest",
    "KillSwitchError", "PermissionRefused", "ResumeRefused", "ResumeRequested", "open_requests", "flush_repeated_refusals", "TransitionResult", "activate", "apply_pending", "deactivate",
    "reconcile_out_of_band", "record_alert", "record_refusal", "record_restored", "restore_after_loss",
    "unexplained_levels", "verify_audit_chain",
]
