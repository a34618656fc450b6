"""Hooks for what happens after a kill switch event is committed.

`event_committed` is sent once per event, after its transaction commits, with
`event` (killswitch.models.Event) and `changed` (True when a scope's level
changed). Broker work, live dashboard pushes and notifications connect to it, so
the switch itself never waits on them and never depends on them succeeding.
"""

from __future__ import annotations

from django.dispatch import Signal

event_committed = Signal()
