"""A Redis master, its replica and a Sentinel watching them, all from the bundled
redis-server, for the Sentinel tests and the failover drill."""

from __future__ import annotations

import time

import redis

from riskcontrol.embedded_redis import EmbeddedRedis, EmbeddedSentinel

MASTER_NAME = "killswitch"


class SentinelGroup:
    """master + replica + one sentinel (a quorum of one). `acl` adds Redis ACL users
    (name -> password, every permission) on both servers: ACLs are not replicated, so a
    promoted replica must know them already."""

    def __init__(self, *, password: str | None = None, sentinel_password: str | None = None,
                 acl: dict[str, str] | None = None) -> None:
        self.password = password
        self.master = EmbeddedRedis(password=password).start()
        self.replica = EmbeddedRedis(password=password, replica_of=self.master.port).start()
        for server in (self.master, self.replica):
            with self._direct(server.port) as client:
                for user, secret in (acl or {}).items():
                    client.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"],
                                       channels=["*"], commands=["+@all"])
        self.sentinel = EmbeddedSentinel(self.master.port, name=MASTER_NAME, password=password,
                                         sentinel_password=sentinel_password).start()
        self.wait_replica_known()

    def _direct(self, port: int, db: int = 0) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, db=db, password=self.password, decode_responses=True,
                           socket_timeout=2)

    @property
    def sentinels(self) -> str:
        """The REDIS_SENTINELS value naming this group's sentinel."""
        return f"127.0.0.1:{self.sentinel.port}"

    def wait_replica_known(self, timeout: float = 20.0) -> None:
        """Until the replica is in sync and the sentinel knows it (it learns replicas
        from the master's INFO): only then can it fail over."""
        deadline = time.monotonic() + timeout
        with redis.Redis("127.0.0.1", self.sentinel.port, password=self.sentinel.sentinel_password,
                         decode_responses=True, socket_timeout=2) as sentinel:
            while time.monotonic() < deadline:
                replicas = sentinel.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                if replicas and any("s_down" not in str(r) for r in replicas):
                    with self._direct(self.replica.port) as client:
                        if client.info("replication").get("master_link_status") == "up":
                            return
                time.sleep(0.1)
        raise RuntimeError("the sentinel did not learn the replica in time")

    def master_client(self, db: int = 0) -> redis.Redis:
        """A direct client of the server the sentinel names as master now."""
        _, port = self.sentinel.master_address() or ("127.0.0.1", self.master.port)
        return self._direct(port, db)

    def wait_failover(self, timeout: float = 30.0) -> tuple[str, int]:
        """Until the sentinel names the replica as master; returns its address."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sentinel.master_address()
            if found and found[1] == self.replica.port:
                with self._direct(self.replica.port) as client:
                    if client.info("replication").get("role") == "master":
                        return found
            time.sleep(0.05)
        raise RuntimeError("the sentinel did not promote the replica in time")

    def cleanup(self) -> None:
        self.sentinel.cleanup()
        self.replica.cleanup()
        self.master.cleanup()
