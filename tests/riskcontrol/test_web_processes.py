"""Several web processes: two real daphne processes on the test database and one Redis.

What each process keeps for itself must never make two processes answer differently:
the failed-attempt limit is one count (the shared cache), the status rows are checked
against the state version on every read, a revoked token stops writing at once on
every process (and reading within the read-auth cache's 2 s), the policy each loaded
is shown in /metrics, and the counters are the database's. And two daphne processes on
one shared socket both serve it; one that hangs leaves the other serving every new
connection.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from killswitch.services.tokens import issue_token, revoke_tokens
from riskcontrol.embedded_redis import free_port
from tests.conftest import figure, wait_for
from tests.killswitch.ops.conftest import samples, value
from tests.stack import Stack

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/api/risk/kill-switch"


@pytest.fixture
def two_webs(transactional_db, tmp_path):
    """Processes A (the stack's port) and B (another port), same database, same Redis."""
    stack = Stack(tmp_path, extra_env={"KILLSWITCH_FAILED_ATTEMPTS_LIMIT": "5", "METRICS_ALLOWED_IPS": "127.0.0.1"})
    stack.start("web")
    other = free_port()
    stack.start_process("web", label="web-b", port=other)
    stack.wait_http(label="web-b", port=other)
    yield stack.base_url, f"http://127.0.0.1:{other}", stack
    stack.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


def test_two_processes_count_failed_attempts_against_one_limit(two_webs):
    a, b, _ = two_webs
    bad = auth("ks_not-a-real-token")
    statuses = [requests.get(base + STATUS, headers=bad, timeout=10).status_code for base in (a, a, a, b, b)]
    assert statuses == [401] * 5  # five refusals, three on A and two on B: the limit (5)
    assert requests.get(b + STATUS, headers=bad, timeout=10).status_code == 429  # B counted A's too
    again = requests.get(a + STATUS, headers=bad, timeout=10)
    assert again.status_code == 429 and "Too many failed attempts from 127.0.0.1" in again.json()["error"]


def test_every_per_process_cache_agrees_across_processes(two_webs, trader, viewer, risk_officer, settings,
                                                         tmp_path):
    a, b, stack = two_webs
    reader = issue_token(username=viewer.username).key
    writer = issue_token(username=trader.username).key
    officer = issue_token(username=risk_officer.username).key
    for base in (a, b):  # both processes keep the status rows and both tokens' lookups
        assert requests.get(base + STATUS, headers=auth(reader), timeout=10).json()["level"] == "running"
        assert requests.get(base + STATUS, headers=auth(writer), timeout=10).status_code == 200

    # Status rows, kept per process under the state version: a change through A is on B's next read.
    done = requests.post(a + STATUS, headers=auth(writer), timeout=10,
                         json={"action": "activate", "reason": "via A", "level": "halt"}).json()
    seen = requests.get(b + STATUS, headers=auth(reader), timeout=10).json()
    assert (seen["level"], seen["version"]) == ("halt", done["version"])
    requests.post(b + STATUS, headers=auth(writer), timeout=10,
                  json={"action": "activate", "reason": "via B", "scope": "symbol:AAPL", "level": "pause"})
    scopes = {s["scope"]: s["level"] for s in requests.get(a + STATUS, headers=auth(reader), timeout=10)
              .json()["scopes"]}
    assert scopes == {"global": "halt", "symbol:AAPL": "pause"}

    # The policy: both processes loaded the same file, so a cooldown set through A binds B.
    resume = requests.post(b + STATUS, headers=auth(officer), timeout=10, json={"action": "deactivate"})
    assert resume.status_code == 409
    assert resume.json()["message"].endswith("(cooldown: 60 minutes).")
    digests = {base: [dict(labels)["digest"] for name, labels in
                      samples(requests.get(base + "/metrics", timeout=10).text) if name == "killswitch_policy_info"]
               for base in (a, b)}
    assert digests[a] == digests[b] and len(digests[a]) == 1

    # Counters come from the database: both processes report the same figures.
    scraped = [samples(requests.get(base + "/metrics", timeout=10).text) for base in (a, b)]
    assert value(scraped[0], "killswitch_transitions_total", action="activate", outcome="applied",
                 source="api") == 2
    assert [{k: v for k, v in s.items() if k[0] == "killswitch_transitions_total"} for s in scraped] == [
        {k: v for k, v in scraped[0].items() if k[0] == "killswitch_transitions_total"}] * 2

    # A revoked token: writes refused at once on every process; reads within the 2 s cache.
    for base in (a, b):  # fresh lookups in both read caches
        assert requests.get(base + STATUS, headers=auth(writer), timeout=10).status_code == 200
    revoke_tokens(prefix=writer)  # the full key, as an operator holding a leaked one would
    t0 = time.monotonic()
    for base in (a, b):
        write = requests.post(base + STATUS, headers=auth(writer), timeout=10,
                              json={"action": "activate", "reason": "after revocation", "scope": "symbol:MSFT"})
        assert write.status_code == 401
    for base in (a, b):
        wait_for(lambda base=base: requests.get(base + STATUS, headers=auth(writer), timeout=10).status_code == 401,
                 timeout=5, interval=0.1)
    figure("two web processes", "revoked token stopped reading on both after", f"{time.monotonic() - t0:.1f} s")

    # A process started on an edited policy file shows another digest: the metric an
    # operator alerts on when processes disagree.
    edited = tmp_path / "edited.yaml"
    edited.write_text(open(settings.RISK_LIMITS_PATH).read().replace("cooldown_minutes: 60", "cooldown_minutes: 30"))
    stack.env["RISK_LIMITS_PATH"] = str(edited)
    c_port = free_port()
    stack.start_process("web", label="web-c", port=c_port)
    stack.wait_http(label="web-c", port=c_port)
    third = [dict(labels)["digest"] for name, labels in
             samples(requests.get(f"http://127.0.0.1:{c_port}/metrics", timeout=10).text)
             if name == "killswitch_policy_info"]
    assert third != digests[a]


def test_two_processes_share_one_socket_and_a_hung_one_is_bypassed(transactional_db, tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.start_redis()
        launcher = stack.start_process("web-shared")
        stack.wait_http(label="web-shared")
        served: set[int] = set()

        def pid_of_answer() -> int:
            return requests.get(stack.base_url + "/healthz", headers={"Connection": "close"}, timeout=3).json()["pid"]

        wait_for(lambda: served.add(pid_of_answer()) or len(served) == 2, timeout=30, interval=0)
        assert launcher.pid not in served
        hung, other = sorted(served)
        os.kill(hung, signal.SIGSTOP)
        try:
            answers = [pid_of_answer() for _ in range(20)]  # new connections, each must be answered
        finally:
            os.kill(hung, signal.SIGCONT)
        assert answers == [other] * 20
        os.kill(hung, signal.SIGKILL)  # a crashed web process is started again
        wait_for(lambda: (pid := pid_of_answer()) not in (hung, other) and pid, timeout=30, interval=0.05)
    finally:
        stack.stop()
