"""What the bot writes: plain text (no parse mode, so a reason with `<` or `*` is
shown as typed), within Telegram's 4096-character limit. Every answer to a change
names the audit event (`#123`) so a chat line can be matched to the log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.utils import timezone

from killswitch import domain as L
from killswitch.models import Event
from killswitch.models.telegram import KILL_WORD, RESUME_WORD
from killswitch.selectors import ClientStatus, ScopeState
from killswitch.services import KillSwitchError, ResumeRequested, TransitionResult

MAX_TEXT = 4000  # below Telegram's 4096, leaving room for a "…" line


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 30].rstrip() + "\n… (cut: too long for Telegram)"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    today = timezone.now().astimezone(UTC).date()
    return moment.strftime("%H:%M:%S UTC" if moment.date() == today else "%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {seconds} s" if minutes < 5 and seconds else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def seq_tag(seq: int | None) -> str:
    return f"#{seq}" if seq is not None else "(audit pending)"


def bullets(lines: Iterable[str], limit: int = 25) -> list[str]:
    lines = list(lines)
    shown = [f"• {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"• … and {len(lines) - limit} more")
    return shown


# --- Answers to changes -----------------------------------------------------------


def transition(result: TransitionResult | ResumeRequested) -> str:
    """The answer to an applied (or repeated) change, starting with its event number; or to
    a resume that waits for a second risk officer (kill_switch.resume_approvals: 2)."""
    if isinstance(result, ResumeRequested):
        return (f"{seq_tag(result.seq)} {result.message}. Another risk officer approves with "
                f"/resume {result.scope} (request {result.request_id}).")
    text = f"{seq_tag(result.seq)} {result.message}."
    if result.pending_audit:
        text += " The database is unavailable: the audit event is written when it is back."
    elif result.changed and result.level != L.RUNNING and result.cooldown_until:
        left = (result.cooldown_until - result.at).total_seconds()
        text += f" Cooldown until {when(result.cooldown_until)} ({duration(left)}): resuming is refused before then."
    return text


def refusal(error: KillSwitchError) -> str:
    """A refusal in the service's own words, with the audit event that recorded it."""
    return f"Refused {seq_tag(error.seq)}: {error.message}"


# --- Reads ----------------------------------------------------------------------------


def status(version: int, states: list[ScopeState], clients: list[ClientStatus] | None) -> str:
    lines = [f"Kill switch status (state version {version})"]
    stopped = [s for s in states if s.level != L.RUNNING]
    if not stopped:
        lines.append("Every scope is running.")
    for s in stopped:
        line = f"{s.scope}: {s.level.upper()} since {when(s.since)}, by {s.actor or '-'} via {s.source or '-'}"
        if s.reason:
            line += f': "{s.reason[:200]}"'
        if s.cooldown_remaining_seconds > 0:
            line += f"; cooldown {duration(s.cooldown_remaining_seconds)} left (until {when(s.cooldown_until)})"
        else:
            line += "; cooldown over"
        lines.extend(bullets([line]))
    if clients is None:
        lines.append("Trading processes: could not be read.")
    else:
        late = [c for c in clients if c.late]
        lines.append(f"Trading processes: {len(clients)} connected, {len(late)} late.")
        lines.extend(bullets(f"{c.name} ({c.host}:{c.pid}) has not acknowledged the change of "
                             f"{when(c.pending_since)}; it sees {c.level or '?'}" for c in late))
    return clip("\n".join(lines))


def history(events: list[Event]) -> str:
    if not events:
        return "The audit log is empty."
    lines = [f"Last {len(events)} audit event(s), newest first:"]
    for e in events:
        change = f"{e.previous_level or '-'}→{e.new_level or '-'}"
        what = e.reason or e.detail
        lines.append(f"#{e.seq} {when(e.created_at)} {e.action}/{e.outcome} {e.scope_label} {change} "
                     f"{e.actor} ({e.source})" + (f": {what[:160]}" if what else ""))
    return clip("\n".join(lines))


def clients(version: int, statuses: list[ClientStatus]) -> str:
    if not statuses:
        return f"No trading process is connected (state version {version})."
    late = sum(1 for s in statuses if s.late)
    lines = [f"Trading processes: {len(statuses)} connected, {late} late (state version {version})"]
    for s in statuses:
        where = " ".join(part for part in (f"account {s.account}" if s.account else "",
                                           f"strategy {s.strategy}" if s.strategy else "") if part)
        seen = "-" if s.applied_version is None else f"v{s.applied_version}"
        line = f"{s.name} ({s.host}:{s.pid}){' ' + where if where else ''}: sees {s.level or '?'}, applied {seen}"
        if s.late:
            line += f" — LATE since {when(s.pending_since)}"
        if s.cause:
            line += f" (fails closed: {s.cause})"
        lines.extend(bullets([line]))
    return clip("\n".join(lines))


def runs(lines: list[str] | None) -> str:
    if lines is None:
        return "Broker runs are not available here: no broker app is installed."
    if not lines:
        return "No broker runs yet."
    return clip("\n".join(["Latest broker runs, newest first:", *bullets(lines)]))


# --- Kill and resume prompts ------------------------------------------------------------


def _listing(lines: list[str] | None, *, missing: str, empty: str) -> list[str]:
    if lines is None:
        return bullets([missing])
    return bullets(lines) if lines else bullets([empty])


def kill_prompt(*, scope: str, level_now: str, reason: str, cooldown_left: float, cooldown_minutes: float,
                closes: list[str] | None, requester: str, timeout: float) -> str:
    lines = [f"KILL {scope}? Nothing has happened yet.",
             f"Level: {level_now} → kill. Trading processes in scope stop and exit; working orders are "
             "cancelled at the broker; positions in scope are closed at market:"]
    lines.extend(_listing(closes, missing="(no broker app installed: positions not shown)",
                          empty="no open position in scope"))
    if cooldown_left > 0:
        lines.append(f"Cooldown: {duration(cooldown_left)} left now; a kill restarts it "
                     f"({cooldown_minutes:g} min), so resuming is refused until then.")
    else:
        lines.append(f"Cooldown: a kill starts one of {cooldown_minutes:g} min; resuming is refused until it ends.")
    lines.append(f"Reason: {reason}")
    lines.append(f"{requester}: reply {KILL_WORD} (uppercase) to this message within {duration(timeout)}, "
                 "or press Confirm kill. Anything else cancels it.")
    return clip("\n".join(lines))


def resume_prompt(*, scope: str, level_now: str, reason: str, cooldown_left: float, cooldown_until: datetime | None,
                  still_open: list[str] | None, requester: str, timeout: float) -> str:
    lines = [f"RESUME trading on {scope}? Nothing has happened yet.", f"Level: {level_now} → running."]
    if cooldown_left > 0:
        lines.append(f"Cooldown: {duration(cooldown_left)} left (until {when(cooldown_until)}): "
                     "a resume before then is refused.")
    else:
        lines.append("Cooldown: over.")
    lines.append("Still open in scope:")
    lines.extend(_listing(still_open, missing="(no broker app installed: not shown)",
                          empty="nothing: no position, no working order"))
    if reason:
        lines.append(f"Reason: {reason}")
    lines.append(f"{requester}: reply {RESUME_WORD} (uppercase) to this message within {duration(timeout)}, "
                 "or press Confirm resume. Anything else cancels it.")
    return clip("\n".join(lines))


HELP = """Kill switch bot. Each command acts as your linked user, with your role; every change and every refusal is in the audit log (#number).

Read (viewer, trader, risk officer):
/status — every scope not running, cooldowns, late trading processes
/history [n] — the last n audit events (10; at most 50)
/runs — the latest broker runs (cancel, close, verify)
/clients — connected trading processes and what each has applied

Stop trading at once (trader, risk officer):
/pause [scope] reason — no new entries; exits and stop changes still allowed
/halt [scope] reason — no new orders; working orders cancelled; positions kept

After a typed confirmation:
/kill [scope] reason (trader, risk officer) — halt, then close every position in scope at market; reply KILL
/resume [scope] [reason] (risk officer) — back to running once the cooldown is over; reply RESUME

scope: global (the default), account:ID, strategy:NAME or symbol:SYM.
Commands older than {max_age} when they reach the bot are not executed (you are told)."""
