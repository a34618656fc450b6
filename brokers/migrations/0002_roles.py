"""Grant view_brokerrun (GET /api/risk/runs, `killswitch runs`) to the three roles."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    from brokers.roles import ensure_grants

    # Permissions are normally created after all migrations; the grant needs them now.
    app_config = apps.get_app_config("brokers")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    ensure_grants(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0001_initial"),
        ("killswitch", "0002_append_only_roles_and_global_scope"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
