"""The one error type of the kill switch's services, and its kinds.

Every refused request raises a KillSwitchError whose `code` is stable for programs and
whose `message` is for people; `event` is the audit row the refusal left (None only
when even that could not be written anywhere). Interfaces map `code` to their own
answer (HTTP status, exit code, chat reply) and never inspect anything else.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


class KillSwitchError(Exception):
    """A refused request. `code` is stable for programs; `message` is for people."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.event: Any = None  # the refusal's audit event (models.Event), once recorded
        # True when it repeated a refusal already recorded in this window: counted, and
        # recorded with its count when the window is over (services.refusals).
        self.counted_as_repeat = False

    @property
    def seq(self) -> int | None:
        """The refusal's audit sequence number, or None when it is not in the log (yet)."""
        return getattr(self.event, "seq", None)


class InvalidRequest(KillSwitchError):
    code = "invalid"


class PermissionRefused(KillSwitchError):
    code = "forbidden"


class ControlDisabled(KillSwitchError):
    code = "disabled"


class DatabaseUnavailable(KillSwitchError):
    """The database (the source of truth) cannot be reached and the request could not be
    carried out without it. Nothing was changed."""

    code = "database_unavailable"


class CooldownActive(KillSwitchError):
    """Resume or de-escalation inside a scope's cooldown. Messages are the seed's."""

    code = "cooldown_active"

    def __init__(self, *, remaining_seconds: float, cooldown_minutes: float,
                 cooldown_until: datetime, scope: str) -> None:
        self.remaining_seconds = remaining_seconds
        self.remaining_minutes = max(1, math.ceil(remaining_seconds / 60))
        self.cooldown_minutes = cooldown_minutes
        self.cooldown_until = cooldown_until
        self.scope = scope
        if cooldown_minutes < 1:
            # Only drills get sub-minute cooldowns; "1 minute remaining" would mislead them.
            seconds = max(1, math.ceil(remaining_seconds))
            remaining = f"{seconds} second{'' if seconds == 1 else 's'}"
            total = f"{round(cooldown_minutes * 60, 1):g} seconds"
        else:
            remaining = f"{self.remaining_minutes} minute{'' if self.remaining_minutes == 1 else 's'}"
            total = f"{round(cooldown_minutes, 2):g} minutes"
        self.short_message = f"Kill switch cooldown active. {remaining} remaining."
        super().__init__(f"Kill switch cooldown active. {remaining} remaining (cooldown: {total}).")
