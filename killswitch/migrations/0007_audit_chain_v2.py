"""Keyed audit chains (chain version 2, AUDIT_HMAC_KEY) and TRUNCATE refused on PostgreSQL.

TRUNCATE fires no row trigger, so the append-only trigger of 0002 never saw it: a
statement-level trigger now refuses it. A database administrator who really must empty
the table (never the service) sets `SET LOCAL killswitch.allow_truncate = 'on'` in the
same transaction; the service's role should not own the tables at all (README,
Production: database role), so it can neither TRUNCATE nor disable a trigger.
"""

from __future__ import annotations

from django.db import migrations, models

POSTGRES_UP = [
    """CREATE OR REPLACE FUNCTION killswitch_event_no_truncate() RETURNS trigger AS $$
       BEGIN
         IF current_setting('killswitch.allow_truncate', true) IS DISTINCT FROM 'on' THEN
           RAISE EXCEPTION 'audit events are append-only (TRUNCATE refused)';
         END IF;
         RETURN NULL;
       END;
       $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER killswitch_event_no_truncate BEFORE TRUNCATE ON killswitch_event
       FOR EACH STATEMENT EXECUTE FUNCTION killswitch_event_no_truncate();""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS killswitch_event_no_truncate ON killswitch_event;",
    "DROP FUNCTION IF EXISTS killswitch_event_no_truncate();",
]


# Adding a column makes Django rebuild the table on SQLite, which drops its triggers:
# the append-only trigger of 0002 is created again (any later migration that alters
# killswitch_event must do the same; tests/killswitch/services/test_audit.py checks it).
SQLITE_UP = [
    """CREATE TRIGGER IF NOT EXISTS killswitch_event_no_update BEFORE UPDATE ON killswitch_event
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
]


def up(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}.get(vendor, []):
        schema_editor.execute(sql, None)


def down(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_DOWN:
            schema_editor.execute(sql, None)


class Migration(migrations.Migration):
    dependencies = [("killswitch", "0006_telegram")]

    operations = [
        migrations.AddField(model_name="event", name="chain_version",
                            field=models.PositiveSmallIntegerField(default=1)),
        migrations.RunPython(up, down),
    ]
