"""Dashboard fixtures: staff personas, a real daphne serving the test database, a real
Celery worker, a headless Debian chromium, and a local HTTP endpoint for notifications."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings

from riskcontrol.embedded_redis import free_port
from riskcontrol.env import current_database_url
from tests.stack import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


# --- Personas: the admin needs is_staff -------------------------------------------------------


def _staff(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def viewer(viewer):
    return _staff(viewer)


@pytest.fixture
def trader(trader):
    return _staff(trader)


@pytest.fixture
def risk_officer(risk_officer):
    return _staff(risk_officer)


@pytest.fixture
def nobody(nobody):
    return _staff(nobody)


# --- Processes ---------------------------------------------------------------------------------


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
        "PYTHONPATH": str(ROOT),
        "KILLSWITCH_TESTING": "1",
        "LOG_LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_daphne(django_db_blocker, tmp_path_factory, **env: str) -> Iterator[str]:
    """A real daphne (the production ASGI app + static files) on the test database, with
    `env` over the test's environment (e.g. RISK_LIMITS_PATH for another policy)."""
    port = free_port()
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with django_db_blocker.unblock():
        child = _child_env(**env)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "riskcontrol.asgi:application"],
            cwd=ROOT, env=child, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url + "/admin/login/", timeout=1)
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError(f"daphne did not answer within 30 s:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    """daphne on the test database and the shipped policy.

    Tests that use it must be transactional so that what they write is committed and
    visible to the server process.
    """
    yield from start_daphne(django_db_blocker, tmp_path_factory)


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory,
                  notify_endpoints) -> Iterator[subprocess.Popen]:
    """A real `celery -A riskcontrol worker --pool=solo` on the test database and Redis,
    configured with the test's notification endpoints and a short retry backoff."""
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    with django_db_blocker.unblock():
        env = _child_env(NOTIFY_URLS=notify_endpoints.env, NOTIFY_RETRY_BACKOFF_SECONDS="0.2",
                         NOTIFY_MAX_ATTEMPTS="3")
    hostname = f"dashboard-{os.getpid()}@%h"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo", "-n", hostname,
             "-Q", f"{settings.BROKER_QUEUE},{settings.NOTIFY_QUEUE}",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"celery worker not ready within 60 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    process.log_path = log  # type: ignore[attr-defined]
    yield process
    _stop(process)


# --- Browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"chromium not found at {CHROMIUM}: browser tests skipped")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # are plain synchronous code, which Django would otherwise refuse next to that loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshot(request):
    """screenshot(page, "state") saves artifacts/screenshots/<test>-<state>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, state: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{state}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# --- A local HTTP endpoint for notifications --------------------------------------------------------


class Inbox:
    """Requests received by the local endpoint; `fail_next` makes it answer 500 n times."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.failures: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()


class Endpoints:
    """The notification URLs the worker and the test share: one that answers (`good`)
    and one where nothing listens (`dead`)."""

    def __init__(self, good: str, dead: str, inbox: Inbox) -> None:
        self.good, self.dead, self.inbox = good, dead, inbox

    @property
    def env(self) -> str:
        return f"{self.good},{self.dead}"


@pytest.fixture(scope="module")
def notify_endpoints() -> Iterator[Endpoints]:
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with inbox.lock:
                if inbox.fail_next > 0:
                    inbox.fail_next -= 1
                    inbox.failures.append(self.path)
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    inbox.received.append({"path": self.path, "json": json.loads(body)})
                except ValueError:
                    inbox.received.append({"path": self.path, "raw": body.decode("utf-8", "replace")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    good = f"json://127.0.0.1:{server.server_address[1]}/hook"
    dead = f"json://127.0.0.1:{free_port()}/dead"  # nothing listens there
    yield Endpoints(good, dead, inbox)
    server.shutdown()
    server.server_close()
