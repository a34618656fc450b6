"""The kill switch's models, one module per family: scopes (the state), audit (the
event chain), tokens (API tokens), clients (trading processes and their
acknowledgements), notifications (deliveries), telegram (linked people, received
updates, pending confirmations). Writes happen in services only."""

from __future__ import annotations

from .audit import (
    CHAIN_KEYED,
    CHAIN_PLAIN,
    GENESIS_HASH,
    HASHED_FIELDS,
    Action,
    AppendOnlyError,
    AuditHead,
    AuditKeyMissing,
    Event,
    Level,
    Outcome,
    ScopeKind,
    Source,
)
from .clients import Acknowledgement, Propagation, TradingClient
from .notifications import Notification, NotificationAttempt, NotificationStatus
from .resumes import ResumeRequest, ResumeState
from .scopes import Scope
from .telegram import (
    ConfirmationState,
    TelegramConfirmation,
    TelegramLink,
    TelegramUpdate,
    UpdateState,
)
from .tokens import ApiToken

__all__ = [
    "GENESIS_HASH", "HASHED_FIELDS", "Acknowledgement", "Action", "ApiToken", "AppendOnlyError",
    "AuditHead", "AuditKeyMissing", "CHAIN_KEYED", "CHAIN_PLAIN", "ConfirmationState", "Event", "Level",
    "Notification", "NotificationAttempt", "NotificationStatus", "Outcome", "Propagation", "ResumeRequest",
    "ResumeState", "Scope", "ScopeKind",
    "Source", "TelegramConfirmation", "TelegramLink", "TelegramUpdate", "TradingClient", "UpdateState",
]
