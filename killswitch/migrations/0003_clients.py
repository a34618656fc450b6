from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Trading processes, their acknowledgements, and each change's propagation."""

    dependencies = [("killswitch", "0002_append_only_roles_and_global_scope")]

    operations = [
        migrations.CreateModel(
            name="TradingClient",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("client_id", models.CharField(max_length=200, unique=True)),
                ("name", models.CharField(max_length=150)),
                ("host", models.CharField(max_length=255)),
                ("pid", models.PositiveIntegerField()),
                ("account", models.CharField(blank=True, default="", max_length=64)),
                ("strategy", models.CharField(blank=True, default="", max_length=64)),
                ("registered_at", models.DateTimeField()),
                ("last_seen_at", models.DateTimeField()),
                ("disconnected_at", models.DateTimeField(blank=True, null=True)),
                ("applied_version", models.PositiveBigIntegerField(blank=True, null=True)),
                ("acked_at", models.DateTimeField(blank=True, null=True)),
                ("level_seen", models.CharField(blank=True, default="", max_length=16)),
                ("scope_seen", models.CharField(blank=True, default="", max_length=100)),
                ("cause", models.CharField(blank=True, default="", max_length=32)),
                ("lib_version", models.CharField(blank=True, default="", max_length=16)),
            ],
            options={
                "ordering": ["name", "client_id"],
                "indexes": [models.Index(fields=["-last_seen_at"], name="tradingclient_last_seen")],
            },
        ),
        migrations.CreateModel(
            name="Acknowledgement",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.PositiveBigIntegerField()),
                ("level", models.CharField(max_length=16)),
                ("acked_at", models.DateTimeField()),
                ("client", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="acks",
                                             to="killswitch.tradingclient")),
            ],
            options={
                "ordering": ["-version", "acked_at"],
                "indexes": [models.Index(fields=["version", "acked_at"], name="ack_version_time")],
                "constraints": [models.UniqueConstraint(fields=("client", "version"),
                                                        name="ack_client_version_unique")],
            },
        ),
        migrations.CreateModel(
            name="Propagation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.PositiveBigIntegerField(db_index=True)),
                ("expected_clients", models.PositiveIntegerField(default=0)),
                ("acked_clients", models.PositiveIntegerField(default=0)),
                ("last_ack_at", models.DateTimeField(blank=True, null=True)),
                ("seconds_to_last_ack", models.FloatField(blank=True, null=True)),
                ("complete", models.BooleanField(default=False)),
                ("late_clients", models.JSONField(blank=True, default=list)),
                ("updated_at", models.DateTimeField()),
                ("event", models.OneToOneField(on_delete=django.db.models.deletion.PROTECT,
                                               related_name="propagation", to="killswitch.event")),
            ],
            options={"ordering": ["-version"]},
        ),
    ]
