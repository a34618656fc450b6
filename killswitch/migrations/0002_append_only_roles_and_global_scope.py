"""Database-level protection of the audit log, the roles, and the rows every install needs.

- Triggers refuse UPDATE of audit events on every database, and DELETE on PostgreSQL
  (production). On SQLite (development) deletes are refused by the ORM and detected
  by the hash chain and its head (`killswitch verify-audit`); a DELETE trigger there
  would also break Django's test-database flush, which deletes row by row.
- Groups: viewer (view), trader (view + activate), risk_officer (+ deactivate).
- The global scope row and the audit chain head.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

from killswitch.services.roles import ensure_baseline

SQLITE_UP = [
    """CREATE TRIGGER killswitch_event_no_update BEFORE UPDATE ON killswitch_event
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS killswitch_event_no_update;"]

POSTGRES_UP = [
    """CREATE OR REPLACE FUNCTION killswitch_event_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP; END;
       $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER killswitch_event_no_update BEFORE UPDATE OR DELETE ON killswitch_event
       FOR EACH ROW EXECUTE FUNCTION killswitch_event_append_only();""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS killswitch_event_no_update ON killswitch_event;",
    "DROP FUNCTION IF EXISTS killswitch_event_append_only();",
]

def triggers_up(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}.get(vendor, []):
        schema_editor.execute(sql, None)


def triggers_down(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN}.get(vendor, []):
        schema_editor.execute(sql, None)


def seed(apps, schema_editor):
    # Permissions are normally created after all migrations; roles need them now.
    app_config = apps.get_app_config("killswitch")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    ensure_baseline(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("killswitch", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(triggers_up, triggers_down),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
