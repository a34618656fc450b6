"""The Risk page's Breakers panel in a real browser against a real daphne: the breakers
with their figure, limit and state, updated live when the breaker loop trips one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from brokers import config as broker_config
from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.feeds import BrokerFeed
from killswitch.breakers import config as breaker_config
from killswitch.breakers.engine import Engine
from killswitch.runtime.leadership import Lease
from riskcontrol.embedded_redis import free_port

from .conftest import ROOT, _child_env, _stop
from .test_browser import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}}
BREAKERS = [
    {"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt", "limit": 500},
    {"name": "ops-loop", "kind": "dead_man", "scope": "global", "level": "halt", "timeout_seconds": 60},
]


@pytest.fixture(scope="module")
def breakers_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne with a policy that configures the breakers (the panel lists what it configures)."""
    tmp = tmp_path_factory.mktemp("breakers-web")
    policy = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    policy.update(brokers=BROKERS, breakers=BREAKERS)
    (tmp / "risk_limits.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    port = free_port()
    with django_db_blocker.unblock():
        env = _child_env(RISK_LIMITS_PATH=str(tmp / "risk_limits.yaml"))
    with open(tmp / "daphne.log", "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                    "riskcontrol.asgi:application"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/admin/login/", timeout=1)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError((tmp / "daphne.log").read_text()[-3000:]) from None
            time.sleep(0.1)
    yield url
    _stop(process)


@pytest.fixture
def breaker_loop(monkeypatch, redis_client):
    parsed_brokers = broker_config.parse_brokers_config(BROKERS)
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed_brokers)
    parsed = breaker_config.parse_breakers(BREAKERS)
    monkeypatch.setattr(breaker_config, "_cached", lambda: parsed)
    demo_data.seed_demo_data()
    engine = Engine(breakers=parsed, feeds=[BrokerFeed()], interval=0.1, lease=Lease("breakers", ttl=2))
    stop = threading.Event()
    thread = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield engine
    stop.set()
    thread.join(timeout=10)


def test_the_breakers_panel_shows_each_breaker_and_follows_a_trip_live(
        browser, breakers_server, breaker_loop, viewer, screenshot):
    page = login(browser, breakers_server, viewer)
    page.wait_for_selector('#breakers tr[data-breaker="desk-loss"][data-state="armed"]')
    row = page.inner_text('#breakers tr[data-breaker="desk-loss"]')
    assert "max_loss" in row and "account:DU111111" in row and "P&L 0.00 USD since 00:00 UTC" in row
    assert "-500.00 USD" in row and "never" in row
    assert "waiting for its first heartbeat" in page.inner_text('#breakers tr[data-breaker="ops-loop"]')
    screenshot(page, "1-armed")
    page.evaluate("window.__loadedOnce = 'still here'")
    paper.set_price("AAPL", "184")
    page.wait_for_selector('#breakers tr[data-breaker="desk-loss"][data-state="tripped"]')
    page.wait_for_function("document.querySelector('#breakers tr[data-breaker=\"desk-loss\"] td.last-trip')"
                           ".textContent.indexOf('→ halt') > 0")
    assert page.evaluate("window.__loadedOnce") == "still here"  # no reload: pushed
    row = page.inner_text('#breakers tr[data-breaker="desk-loss"]')
    assert "TRIPPED" in row and "P&L -600.00 USD" in row
    page.wait_for_selector('tr[data-scope="account:DU111111"][data-level="halt"]')  # the page's own table too
    screenshot(page, "2-tripped")
