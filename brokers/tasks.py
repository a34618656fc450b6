"""Celery tasks of the broker work. They take ids, re-read the world and call one service.

Acknowledged late (riskcontrol/celery.py sets acks_late and reject_on_worker_lost), so
a worker killed mid-run leaves the message to be delivered again; the service is
idempotent, so a second delivery resumes the run instead of repeating it.
"""

from __future__ import annotations

from celery import shared_task

from . import runs


@shared_task(bind=True, name="brokers.execute_run", acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def execute_run(self, run_id: int) -> str:
    """Run (or resume) broker run `run_id`; retried with the backoff the service decides."""
    result = runs.execute_run(run_id=run_id)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.run.state if result.run else "missing"
