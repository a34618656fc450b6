"""Notifications to the configured channels (Telegram, any apprise URL).

Shape (after healthchecks.io `hc/api/transports.py`): a Transport base class with
one method, one module per kind, a registry from kind to dotted path, one error
type that says whether retrying can help, every attempt stored on a row.

Flow: `event_committed` -> services.queue_for_event (rows, after the event's commit)
-> Celery task `killswitch.notifications.deliver` per row -> services.deliver
(one attempt, recorded) -> retried with backoff while the error is transient.
"""
