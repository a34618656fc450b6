"""The status answer's countdowns, redrawn by the replay (replay.py) without Django.

A scope in its cooldown shows `cooldown_remaining_seconds` (whole seconds, rounded up)
and `cooldown_until` (until it ends), so the status body changes every second of every
countdown. With 100 scopes cooling down at once (a breaker storm, the API benchmark),
the body changes every few milliseconds, and a replay that could only expire its kept
answer sent nearly every poller back to Django (bench_api: activation p99 155 ms
under 200 readers on PostgreSQL). The view says which scopes count down and when each
ends (COOLDOWNS_HEADER, taken off the answer before it leaves); the replay redraws
exactly those two fields for the time of the request and renders the body with the
view's own renderer. A redraw is kept only when rendering the view's data reproduces
the view's bytes exactly, so a replayed body is always what Django would answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from killswitch.api.shapes import countdown_seconds, exact_for

COOLDOWNS_HEADER = "X-Killswitch-Cooldowns"
_COOLDOWNS = COOLDOWNS_HEADER.lower().encode()


def cooldowns_header_value(cooldowns: list[tuple[int, float]]) -> str:
    """"index:end" for every scope counting down (its index in "scopes", the end as a
    timestamp of the service clock, to the microsecond)."""
    return ",".join(f"{index}:{end:.6f}" for index, end in cooldowns)


def take_header(headers: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[tuple[bytes, bytes], ...], bytes | None]:
    """The headers without COOLDOWNS_HEADER (it never leaves the server), and its value."""
    value = None
    kept = []
    for name, item in headers:
        if name.lower() == _COOLDOWNS:
            value = item
        else:
            kept.append((name, item))
    return tuple(kept), value


@dataclass(frozen=True, slots=True)
class Recipe:
    """How to redraw one kept status body: its data and the countdowns in it."""

    data: dict[str, Any]
    cooldowns: tuple[tuple[int, float], ...]


def recipe_for(body: bytes, header: bytes | None) -> Recipe | None:
    """The recipe of the view's answer, or None when it cannot be redrawn exactly (a
    malformed header, or the renderer does not give back the view's bytes, e.g. an
    Accept asking for an indent)."""
    if header is None:
        return None
    try:
        cooldowns = tuple((int(i), float(end)) for i, _, end in (part.partition(":") for part in
                                                                header.decode("ascii").split(",")))
        data = json.loads(body)
        scopes = data["scopes"]
        if any(not 0 <= i < len(scopes) for i, _ in cooldowns) or render(data) != body:
            return None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return Recipe(data, cooldowns)


def render(data: dict[str, Any]) -> bytes:
    from rest_framework.renderers import JSONRenderer

    return JSONRenderer().render(data)


def redraw(recipe: Recipe, now: float) -> tuple[bytes, float, Recipe]:
    """The body at `now` (a timestamp of the service clock), how long it stays exact
    from `now`, and the recipe for later (without the countdowns that ended)."""
    scopes = list(recipe.data["scopes"])
    fresh = math.inf
    running = []
    for index, end in recipe.cooldowns:
        left = max(0.0, end - now)
        scope = dict(scopes[index])
        scope["cooldown_remaining_seconds"] = countdown_seconds(left)
        if left <= 0:
            scope["cooldown_until"] = None
        else:
            running.append((index, end))
            fresh = min(fresh, exact_for(left))
        scopes[index] = scope
    data = {**recipe.data, "scopes": scopes}
    return render(data), fresh, Recipe(data, tuple(running))
