"""What every subcommand shares: who acts, JSON in the API's shapes, tables for people.

Output for people: a result is one line on stdout, a warning one line on stderr
starting with `warning:`, a table has a header row. Output for programs: `--json`,
the API's shapes (killswitch.api.shapes) with ISO 8601 UTC times ending in Z.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model

from ..services import Actor


def cli_actor(username: str | None) -> Actor:
    """`--user NAME` acts as that Django user (with its permissions); otherwise the
    operator's OS account, as a trusted system actor (`cli:<login>`)."""
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise SystemExit(f"No user named {username!r}.")
        return Actor.of(user)
    try:
        login = getpass.getuser()
    except Exception:  # no login name in some containers
        login = "unknown"
    return Actor.system(f"cli:{login}")


def _jsonable(value: Any) -> Any:
    """json's fallback: times as the API writes them (UTC, Z), decimals as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def emit_json(out: Any, payload: Any) -> None:
    out.write(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def warn(err: Any, warnings: Iterable[str]) -> None:
    """Each warning as one line on stderr."""
    for text in warnings:
        err.write(f"warning: {text}\n")


def when(value: datetime | None) -> str:
    """A time in a table: UTC to the second, e.g. 2026-03-12 15:34:22Z; '-' for none."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def table(out: Any, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "",
          right: Sequence[str] = ()) -> int:
    """Write rows under a header row, columns as wide as their widest cell (the last
    one unpadded); columns named in `right` are right-aligned (numbers). With no rows,
    writes `empty` instead (when given) and no header. Returns the number of rows.
    Hand-written: a dozen lines, where a table library would be a dependency of the
    emergency CLI."""
    cells = [["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    if not cells:
        if empty:
            out.write(empty + "\n")
        return 0
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        parts = [c.rjust(w) if h in right else c.ljust(w)
                 for c, w, h in zip(row[:-1], widths[:-1], headers[:-1], strict=True)]
        out.write("  ".join([*parts, row[-1]]).rstrip() + "\n")
    return len(cells)
