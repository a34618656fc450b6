"""The kill switch policy from `config/risk_limits.yaml`, validated once at start-up.

The seed's keys (`http_enabled`, `telegram_enabled`, `cooldown_minutes`) keep their
names and meaning. A bad file raises ImproperlyConfigured naming the key, the value
and what is expected, so the service refuses to start rather than run on a guess.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ImproperlyConfigured

LEVELS = ("running", "pause", "halt", "kill")


@dataclass(frozen=True)
class KillSwitchPolicy:
    http_enabled: bool = True
    telegram_enabled: bool = False
    cooldown_minutes: float = 60
    default_level: str = "halt"
    client_stale_after_seconds: float = 5.0
    heartbeat_interval_seconds: float = 0.5
    reconcile_interval_seconds: float = 0.25
    log_max_entries: int = 1000
    max_reason_length: int = 500
    ack_timeout_seconds: float = 5.0
    # The seed's RESET: `redis-cli SET trading_switch running` resumes, after the cooldown.
    redis_resume: bool = True
    # Resuming is a decision: with 2, a risk officer's resume is a request that a second,
    # different risk officer approves within resume_request_minutes (services.resumes).
    resume_approvals: int = 1
    resume_request_minutes: float = 15
    # Refuse a resume while a broker run in the scope is unfinished or failed.
    resume_requires_clean_runs: bool = False


@dataclass(frozen=True)
class NotificationPolicy:
    urls: tuple[str, ...] = ()
    telegram_bot_token_env: str = "TELEGRAM_BOT_TOKEN"
    telegram_chat_id_env: str = "TELEGRAM_CHAT_ID"


@dataclass(frozen=True)
class Policy:
    kill_switch: KillSwitchPolicy = field(default_factory=KillSwitchPolicy)
    notifications: NotificationPolicy = field(default_factory=NotificationPolicy)
    # Sections owned by other parts (brokers, ...) are kept raw and validated there.
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""


# key -> (check, description of what is expected)
_NUMBER_RULES: dict[str, tuple[float, float]] = {
    "cooldown_minutes": (0, 24 * 60),
    "client_stale_after_seconds": (0.5, 3600),
    "heartbeat_interval_seconds": (0.05, 60),
    "reconcile_interval_seconds": (0.05, 60),
    "log_max_entries": (1, 1_000_000),
    "max_reason_length": (1, 100_000),
    "ack_timeout_seconds": (0.1, 3600),
    "resume_approvals": (1, 2),
    "resume_request_minutes": (1, 24 * 60),
}
_INT_KEYS = {"log_max_entries", "max_reason_length", "resume_approvals"}
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def _bad(path: str, key: str, value: Any, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{path}: {key}={value!r} is invalid; expected {expected}")


def _kill_switch_section(raw: Any, path: str) -> KillSwitchPolicy:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad(path, "kill_switch", raw, "a mapping of settings")
    known = {f.name for f in fields(KillSwitchPolicy)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"kill_switch.{key}"
        if key not in known:
            raise _bad(path, dotted, value, f"one of the known keys: {', '.join(sorted(known))}")
        if key in ("http_enabled", "telegram_enabled", "redis_resume", "resume_requires_clean_runs"):
            if not isinstance(value, bool):
                raise _bad(path, dotted, value, "true or false")
        elif key == "default_level":
            if value not in ("pause", "halt", "kill"):
                raise _bad(path, dotted, value, "one of pause, halt, kill")
        elif key == "resume_approvals":
            if isinstance(value, bool) or value not in (1, 2):
                raise _bad(path, dotted, value, "1 (one risk officer resumes) or 2 (a second one approves)")
        else:
            low, high = _NUMBER_RULES[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(path, dotted, value, f"a number between {low:g} and {high:g}")
            if key in _INT_KEYS and not isinstance(value, int):
                raise _bad(path, dotted, value, f"a whole number between {low:g} and {high:g}")
            if not low <= value <= high:
                raise _bad(path, dotted, value, f"a number between {low:g} and {high:g}")
        values[key] = value
    policy = KillSwitchPolicy(**values)
    if policy.heartbeat_interval_seconds * 2 > policy.client_stale_after_seconds:
        raise _bad(
            path,
            "kill_switch.client_stale_after_seconds",
            policy.client_stale_after_seconds,
            "at least twice kill_switch.heartbeat_interval_seconds "
            f"({policy.heartbeat_interval_seconds:g}), or clients would halt between heartbeats",
        )
    return policy


def _expand_env(value: str, path: str, key: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise _bad(path, key, value, f"the environment variable {name} to be set")
        return os.environ[name]

    return _ENV_REF.sub(repl, value)


def _notifications_section(raw: Any, path: str) -> NotificationPolicy:
    if raw is None:
        return NotificationPolicy()
    if not isinstance(raw, dict):
        raise _bad(path, "notifications", raw, "a mapping of settings")
    urls = raw.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise _bad(path, "notifications.urls", urls, "a list of apprise URL strings")
    for key in raw:
        if key not in ("urls", "telegram_bot_token_env", "telegram_chat_id_env"):
            raise _bad(path, f"notifications.{key}", raw[key], "one of urls, telegram_bot_token_env, telegram_chat_id_env")
    return NotificationPolicy(
        urls=tuple(_expand_env(u, path, "notifications.urls") for u in urls),
        telegram_bot_token_env=str(raw.get("telegram_bot_token_env", "TELEGRAM_BOT_TOKEN")),
        telegram_chat_id_env=str(raw.get("telegram_chat_id_env", "TELEGRAM_CHAT_ID")),
    )


def parse_policy(text: str, path: str = "risk_limits.yaml") -> Policy:
    """Parse and validate policy text. Raises ImproperlyConfigured naming key, value, expectation."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImproperlyConfigured(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad(path, "<top level>", raw, "a mapping with a kill_switch: section")
    extra = {k: v for k, v in raw.items() if k not in ("kill_switch", "notifications")}
    return Policy(
        kill_switch=_kill_switch_section(raw.get("kill_switch"), path),
        notifications=_notifications_section(raw.get("notifications"), path),
        extra=extra,
        path=path,
    )


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImproperlyConfigured(f"{path}: cannot be read: {exc}") from exc
    return parse_policy(text, str(path))


@lru_cache(maxsize=1)
def get_policy() -> Policy:
    """The policy in force for this process (read once; restart after a change, as the seed says)."""
    from django.conf import settings

    return load_policy(settings.RISK_LIMITS_PATH)


def kill_switch_policy() -> KillSwitchPolicy:
    return get_policy().kill_switch
