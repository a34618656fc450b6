"""The drill's report: figures with their bounds, and the evidence behind them, written
as JSON and as a self-contained HTML page for the compliance file."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    value: str
    bound: str
    ok: bool
    detail: str = ""


@dataclass
class DrillReport:
    started_at: datetime
    finished_at: datetime | None
    accounts: list[str]
    actor: str
    cooldown_seconds: float
    bounds: dict[str, Any]
    policy: dict[str, Any]
    services: dict[str, str]
    figures: list[Figure] = field(default_factory=list)
    clients: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    propagation: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    json_path: str = ""
    html_path: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.figures) and all(f.ok for f in self.figures)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def write_report(report: DrillReport, report_dir: Path, stamp: str) -> None:
    """Write drill-<stamp>.json and drill-<stamp>.html (self-contained) into report_dir."""
    from django.template.loader import render_to_string

    base = report_dir / f"drill-{stamp}"
    n = 1
    while base.with_suffix(".json").exists():  # two drills in one second keep both reports
        n += 1
        base = report_dir / f"drill-{stamp}-{n}"
    report.json_path = str(base.with_suffix(".json"))
    report.html_path = str(base.with_suffix(".html"))
    Path(report.json_path).write_text(json.dumps(report.as_dict(), indent=2, default=_plain) + "\n")
    Path(report.html_path).write_text(render_to_string("killswitch/drill_report.html", {
        "report": report, "ok": report.ok, "host": os.uname().nodename, "operator": login(),
        "duration": (report.finished_at - report.started_at).total_seconds() if report.finished_at else None,
    }))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | timedelta):
        return str(value)
    return str(value)


def login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
