"""The scope rows a transition pushes come from the snapshot it published; they must say
what a fresh read of the database says."""

from __future__ import annotations

from datetime import datetime

import pytest

from killswitch import services
from killswitch.distribution import publish as distribution
from killswitch.web import live

pytestmark = pytest.mark.django_db


def _normal(rows):
    out = []
    for row in rows:
        row = dict(row)
        for key in ("since", "cooldown_until"):
            row[key] = datetime.fromisoformat(row[key]) if row[key] else None
        row["cooldown_remaining_seconds"] = round(row["cooldown_remaining_seconds"])
        out.append(row)
    return out


def test_snapshot_rows_match_a_fresh_read(trader):
    services.activate(scope="symbol:MSFT", level="halt", reason="r", actor=trader, source="api")
    services.activate(scope="account:DU1", level="kill", reason="r", actor=trader, source="api")
    services.activate(scope="global", level="pause", reason="r", actor=trader, source="api")
    rows = live.snapshot_rows(distribution.take_snapshot())
    assert [r["scope"] for r in rows] == ["global", "account:DU1", "symbol:MSFT"]
    assert _normal(rows) == _normal(live.scope_rows())
    assert rows[1]["cooldown_remaining_seconds"] > 0


def test_without_a_global_row_the_push_reads_the_database():
    assert live.snapshot_rows(distribution.Snapshot(0, {"global": "running"}, {})) is None
    assert live.snapshot_rows(None) is None
