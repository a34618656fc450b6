from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    """Trading processes and acknowledgements (filled in by the client library work)."""

    dependencies = [("killswitch", "0002_append_only_roles_and_global_scope")]
    operations: list = []
