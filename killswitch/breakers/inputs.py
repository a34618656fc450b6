"""What trading processes report for the breakers, read by the breaker process itself.

Market data times and dead-man heartbeats travel in the registration each process
appends to the `killswitch:clients` stream (killswitch_client.contract,
REGISTRATION_FIELDS) at least every second. The breaker process reads that stream
with its own cursor rather than from the TradingClient rows the reconciler ingests:
the reconciler keeps no market data or heartbeats, it runs on its own schedule (a
breaker would see a heartbeat a reconciler round late, and not at all while the
reconciler is down), and writing every process' market data to the database every
second would load the database for nothing. A restarted breaker process re-reads the
last LOOKBACK_SECONDS, which holds every connected process' newest registration.

Times are bounded by the stream entry's own id (the Redis server's clock when the
entry arrived): a process whose clock runs ahead can never renew a heartbeat or
freshen its data into the future; one whose clock runs behind looks older, which
fails safe.

Dead-man renewals are kept in the hash `killswitch:deadman` (name -> {"at", "by"}),
newest only, written through one script by the breaker process (renewals it read in
registrations) and by the API (`POST /api/risk/deadman/<name>`, at the Redis server's
time), so a restart keeps a heartbeat that no process sends any more.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from killswitch.domain import KEY_CLIENTS

from .kinds import ProcessInputs, Renewal

logger = logging.getLogger("killswitch.breakers")

DEADMAN_KEY = "killswitch:deadman"
# A process whose newest registration is older than this is not connected (as the
# reconciler counts it: services.acknowledgements.CONNECTED_WITHIN).
CONNECTED_WITHIN_SECONDS = 10.0
LOOKBACK_SECONDS = 15.0
BATCH = 5000

# KEYS[1] = DEADMAN_KEY; ARGV = name, at (unix seconds, or "" for the server's time now), by.
# Keeps the newest renewal; returns the stored JSON.
_RENEW = """
local at = tonumber(ARGV[2])
if not at then
  local t = redis.call('TIME')
  at = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, previous = pcall(cjson.decode, old)
  if ok and type(previous) == 'table' and tonumber(previous['at']) and tonumber(previous['at']) >= at then
    return old
  end
end
local new = cjson.encode({at = string.format('%.3f', at), by = ARGV[3]})
redis.call('HSET', KEYS[1], ARGV[1], new)
return new
"""


def renew(client: redis.Redis, name: str, *, by: str, at: float | None = None) -> Renewal:
    """Record a renewal of the dead-man's switch `name` (at the Redis server's time when
    `at` is None) unless a newer one is stored; returns the renewal in force."""
    stored = client.eval(_RENEW, 1, DEADMAN_KEY, name, "" if at is None else repr(float(at)), by)
    return _renewal(stored) or Renewal(at or time.time(), by)


def _renewal(raw: str | None) -> Renewal | None:
    try:
        data = json.loads(raw) if raw else None
        return Renewal(float(data["at"]), str(data.get("by", ""))) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def renewals(client: redis.Redis) -> dict[str, Renewal]:
    """Every dead-man's switch's newest renewal; unreadable entries are skipped."""
    found = {}
    for name, raw in client.hgetall(DEADMAN_KEY).items():
        renewal = _renewal(raw)
        if renewal is not None:
            found[name] = renewal
    return found


def _entry_time(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000


def _times(value: object, bound: float) -> dict[str, float]:
    """{name: unix seconds} from a registration field, each bounded by the arrival time."""
    if not isinstance(value, dict):
        return {}
    found = {}
    for name, ts in value.items():
        if isinstance(name, str) and name and isinstance(ts, int | float) and not isinstance(ts, bool) \
                and ts == ts:
            found[name] = min(float(ts), bound)
    return found


class ProcessReports:
    """The newest registration of every trading process, from the stream, with a cursor
    of its own. One per breaker process; kept while following, so a process that leads
    again reads what it missed (arrival times say who is still connected)."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.latest: dict[str, tuple[float, ProcessInputs]] = {}  # client_id -> (arrival, inputs)

    def reset(self) -> None:
        self.__init__()

    def poll(self, client: redis.Redis) -> list[tuple[str, float, str]]:
        """Read what arrived since the last poll. Returns the dead-man heartbeats it
        carried, [(name, at, by)], newest per name. Raises redis errors."""
        if self.cursor is None:
            now_ms = int(client.time()[0] * 1000)
            self.cursor = f"{now_ms - int(LOOKBACK_SECONDS * 1000)}-0"
            start = self.cursor
        else:
            start = f"({self.cursor}"
        beats: dict[str, tuple[float, str]] = {}
        while True:
            batch = client.xrange(KEY_CLIENTS, min=start, max="+", count=BATCH)
            for entry_id, fields in batch:
                self._take(entry_id, fields, beats)
            if batch:
                self.cursor = batch[-1][0]
                start = f"({self.cursor}"
            if len(batch) < BATCH:
                break
        return [(name, at, by) for name, (at, by) in beats.items()]

    def _take(self, entry_id: str, fields: dict[str, str], beats: dict[str, tuple[float, str]]) -> None:
        cid = fields.get("client_id", "")
        if not cid:
            return
        if fields.get("bye"):
            self.latest.pop(cid, None)
            return
        try:
            data = json.loads(fields.get("registration") or "")
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        arrived = _entry_time(entry_id)
        name = str(data.get("name") or "")[:150] or cid
        market = {symbol.upper(): ts for symbol, ts in _times(data.get("market_data"), arrived).items()}
        self.latest[cid] = (arrived, ProcessInputs(cid, name, str(data.get("account") or ""),
                                                   str(data.get("strategy") or ""), market))
        for switch, at in _times(data.get("deadman"), arrived).items():
            if switch not in beats or beats[switch][0] < at:
                beats[switch] = (at, f"{name} ({cid})")

    def connected(self, now: float) -> list[ProcessInputs]:
        """Processes whose newest registration arrived within CONNECTED_WITHIN_SECONDS."""
        return [inputs for arrived, inputs in self.latest.values() if now - arrived <= CONNECTED_WITHIN_SECONDS]
