"""Redis Sentinel: a failover under a live client. A master, a replica and a sentinel
from the bundled redis-server binary (free ports, a temp dir, stopped by pid); the
master is killed; the client must never allow an order while the state is unknown, and
must recover by itself once the stand-in service republishes onto the new master."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from killswitch_client.views import order_decision
from redis.sentinel import Sentinel

from riskcontrol.embedded_redis import free_port, server_binary
from tests.clients.python.conftest import Service, build
from tests.conftest import wait_for

MASTER = "killswitch"
pytestmark = pytest.mark.fault  # a fault drill (make test-fault): it waits for a real failover


class Cluster:
    """master + replica + one sentinel, each a process this test started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> None:
        workdir = self.folder / name
        workdir.mkdir()
        self.procs[name] = subprocess.Popen(
            [server_binary(), *args, "--port", str(self.ports[name]), "--bind", "127.0.0.1",
             "--dir", str(workdir), "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> Cluster:
        self._start("master")
        wait_for(lambda: self.answers("master"))
        self._start("replica", "--replicaof", "127.0.0.1", str(self.ports["master"]))
        wait_for(lambda: self.r("replica").info("replication").get("master_link_status") == "up")
        conf = self.folder / "sentinel.conf"
        conf.write_text(f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['master']} 1\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 3000\n")
        self._start("sentinel", str(conf), "--sentinel")
        wait_for(lambda: self.answers("sentinel"))
        # The sentinel learns the replica from the master's INFO; a failover needs it.
        wait_for(lambda: self.r("sentinel").execute_command("SENTINEL", "REPLICAS", MASTER), timeout=15)
        return self

    def r(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], decode_responses=True, socket_timeout=1)

    def answers(self, name: str) -> bool:
        try:
            return bool(self.r(name).ping())
        except redis.RedisError:
            return False

    def master_port(self) -> int:
        _host, port = self.r("sentinel").execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path).start()
    yield c
    c.stop()


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_a_failover_reads_halt_until_the_new_master_has_the_state(cluster, flavour):
    sentinels = [("127.0.0.1", cluster.ports["sentinel"])]
    master = Sentinel(sentinels, socket_timeout=1).master_for(MASTER, decode_responses=True,
                                                              socket_timeout=1)
    service = Service.__new__(Service)
    service.r, service.version, service.stale_after = master, 0, 0.5
    service.running()
    beating = threading.Event()
    beating.set()
    last_beat = [time.time()]  # wall time just after the newest heartbeat was written

    def heartbeats() -> None:
        while beating.is_set():
            service.heartbeat()
            last_beat[0] = time.time()
            time.sleep(0.1)

    beater = threading.Thread(target=heartbeats, daemon=True)
    beater.start()
    client = build(flavour, sentinels=sentinels, sentinel_master=MASTER, exit_on_kill=False,
                   backstop_interval=0.1)
    samples: list[tuple[float, bool, str | None]] = []  # (wall time, order allowed, cause)
    sampling = threading.Event()

    def sample() -> None:
        while sampling.is_set():
            at = time.time()
            view = client.view  # one snapshot: its level and its cause belong together
            samples.append((at, order_decision(view, "AAPL", False)[0], view.cause))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        wait_for(lambda: client.allows_order("AAPL") and client.cause is None, timeout=10)
        # The service goes down with the master: no heartbeat proves the state any more,
        # and the failover (>= down-after 1 s) takes longer than the 0.5 s bound.
        beating.clear()
        beater.join()
        sampling.set()
        sampler.start()
        old_port = cluster.ports["master"]
        cluster.kill("master")
        wait_for(lambda: cluster.master_port() != old_port, timeout=30)
        # Connected to the new master, whose replicated heartbeat is stale.
        wait_for(lambda: client.cause == "heartbeat_stale", timeout=10)
        sampling.clear()
        sampler.join()
        # The state is unknown once the client saw the connection go, or at the latest once
        # the last heartbeat's bound passed: from then on, not one order may pass.
        noticed = next(t for t, _, cause in samples if cause is not None)
        unknown_from = min(noticed, last_beat[0] + service.stale_after)
        assert [t for t, allowed, _ in samples if allowed and t >= unknown_from] == []
        assert client.check() == "halt"

        version = service.publish({"global": "pause"})  # the service, back, republishes
        service.heartbeat()
        beating.set()
        beater = threading.Thread(target=heartbeats, daemon=True)
        beater.start()
        wait_for(lambda: client.check() == "pause" and client.version == version, timeout=10)
        assert client.allows_order("AAPL", reduce_only=True) and not client.allows_order("AAPL")
    finally:
        sampling.clear()
        beating.clear()
        client.close()
        master.close()
