"""Test helper: the audit event a transition result names."""

from __future__ import annotations


def event_of(result):
    """The Event with the result's sequence number (the result carries only `seq`)."""
    from killswitch.models import Event

    assert result.seq is not None, f"no audit event yet (pending_audit={result.pending_audit})"
    return Event.objects.get(seq=result.seq)
