"""Models for connected trading processes and their acknowledgements (client library).

Written only by killswitch.services.acknowledgements, from what the clients
report in Redis (`killswitch:clients`, `killswitch:acks`). Event rows are never
touched: the propagation of each change is kept in its own table.
"""

from __future__ import annotations

from django.db import models


class TradingClient(models.Model):
    """One trading process that runs the client library (one per process start)."""

    client_id = models.CharField(max_length=200, unique=True)
    name = models.CharField(max_length=150)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    account = models.CharField(max_length=64, blank=True, default="")
    strategy = models.CharField(max_length=64, blank=True, default="")
    registered_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Set when the process deregistered or its entry vanished from Redis.
    disconnected_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.PositiveBigIntegerField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    level_seen = models.CharField(max_length=16, blank=True, default="")
    scope_seen = models.CharField(max_length=100, blank=True, default="")
    # The fail-closed cause the process reported (e.g. heartbeat_stale), if any.
    cause = models.CharField(max_length=32, blank=True, default="")
    lib_version = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["name", "client_id"]
        indexes = [models.Index(fields=["-last_seen_at"], name="tradingclient_last_seen")]

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.pid})"


class Acknowledgement(models.Model):
    """A process reported that it applied state `version` at `acked_at` (its clock)."""

    client = models.ForeignKey(TradingClient, on_delete=models.CASCADE, related_name="acks")
    version = models.PositiveBigIntegerField()
    level = models.CharField(max_length=16)
    acked_at = models.DateTimeField()

    class Meta:
        ordering = ["-version", "acked_at"]
        constraints = [
            models.UniqueConstraint(fields=["client", "version"], name="ack_client_version_unique"),
        ]
        indexes = [models.Index(fields=["version", "acked_at"], name="ack_version_time")]

    def __str__(self) -> str:
        return f"{self.client_id} v{self.version} {self.level}"


class Propagation(models.Model):
    """How one applied change reached the trading processes connected when it was made.

    A client that applied a later version also applied this one: its time is its
    first acknowledgement of any version >= this one.
    """

    event = models.OneToOneField("killswitch.Event", on_delete=models.PROTECT,
                                 related_name="propagation")
    version = models.PositiveBigIntegerField(db_index=True)
    expected_clients = models.PositiveIntegerField(default=0)
    acked_clients = models.PositiveIntegerField(default=0)
    last_ack_at = models.DateTimeField(null=True, blank=True)
    # From the event's created_at to the last expected acknowledgement.
    seconds_to_last_ack = models.FloatField(null=True, blank=True)
    complete = models.BooleanField(default=False)
    # Client ids that had not acknowledged within kill_switch.ack_timeout_seconds.
    late_clients = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version}: {self.acked_clients}/{self.expected_clients}"
