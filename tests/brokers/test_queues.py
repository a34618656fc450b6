"""Broker work and notifications on separate Celery queues, each with its own worker:
a notification channel that hangs for 30 s never delays a cancel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from brokers import demo as demo_data
from brokers.models import PaperOrder
from killswitch import services as ks
from killswitch.models import Notification, NotificationAttempt
from tests.conftest import wait_for

from .conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}
HANG_SECONDS = 30


@dataclass
class Hanging:
    url: str
    release: threading.Event = field(default_factory=threading.Event)
    entered: int = 0
    answered: int = 0


@pytest.fixture(scope="module")
def hanging() -> Iterator[Hanging]:
    """A webhook that takes every request and answers only after 30 s (or when released)."""
    state = Hanging(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.entered += 1
            state.release.wait(HANG_SECONDS)
            state.answered += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"json://127.0.0.1:{server.server_address[1]}/hang"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def workers(start_worker, module_tmp, hanging):
    policy = write_policy(module_tmp / "queues.yaml", BROKERS)
    notify_env = {"NOTIFY_URLS": hanging.url, "NOTIFY_MAX_ATTEMPTS": "1"}
    return (start_worker(policy, queues=settings.BROKER_QUEUE),
            start_worker(policy, queues=settings.NOTIFY_QUEUE, extra_env=notify_env))


def test_a_channel_that_hangs_never_delays_a_cancel(workers, hanging, monkeypatch):
    monkeypatch.setenv("NOTIFY_URLS", hanging.url)
    use_config(monkeypatch, BROKERS)
    demo_data.seed_demo_data()
    try:
        ks.activate(scope="account:DU111111", level="halt", reason="first", actor="cli:tester", source="cli")
        wait_for(lambda: hanging.entered >= 1, timeout=30)  # the notify worker is stuck in the channel
        ks.activate(scope="account:DU222222", level="halt", reason="second", actor="cli:tester", source="cli")
        runs = wait_runs_finished(timeout=30)
        # Every order is cancelled while the first delivery is still hanging: no try has
        # ended, the second notification still waits behind it.
        tries = NotificationAttempt.objects.count()
        pending = Notification.objects.filter(status="pending").count()
        answered = hanging.answered
    finally:
        hanging.release.set()
    assert sorted((r.account, r.state) for r in runs) == [("DU111111", "completed"), ("DU222222", "completed")]
    assert not PaperOrder.objects.filter(status__in=["working", "partially_filled"]).exists()
    assert (tries, answered) == (0, 0)
    assert pending == 2
    # Released, the deliveries go out on their own worker.
    wait_for(lambda: Notification.objects.filter(status="sent").count() == 2, timeout=60)
