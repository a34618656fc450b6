"""On kill a trading process runs its on_kill hook, then exits with code 1 -- checked
on real processes: the client (sync and asyncio), the example loop, the untouched
seed loop."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[3]

SYNC_LOOP = """
import sys, time
from killswitch_client import KillSwitch
url, marker = sys.argv[1], sys.argv[2]
def on_kill():
    open(marker, "w").write("liquidated")
ks = KillSwitch(url, account="DU1", on_kill=on_kill, backstop_interval=0.05)
while True:
    try:
        status = ks.check()
        print(status, flush=True)
        time.sleep(0.02)
    except Exception as exc:   # the seed's loop swallows Exceptions: kill must still exit
        print("swallowed", exc, flush=True)
"""

ASYNC_LOOP = """
import asyncio, sys
from killswitch_client import AsyncKillSwitch
url, marker = sys.argv[1], sys.argv[2]
async def on_kill():
    await asyncio.sleep(0.05)
    open(marker, "w").write("liquidated")
async def main():
    async with AsyncKillSwitch(url, account="DU1", on_kill=on_kill, backstop_interval=0.05) as ks:
        while True:
            print(ks.check(), flush=True)
            await asyncio.sleep(0.02)
asyncio.run(main())
"""


def spawn(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def read_until(proc: subprocess.Popen, needle: str) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"process ended before printing {needle!r}: {''.join(lines)}")


@pytest.mark.parametrize("program", [SYNC_LOOP, ASYNC_LOOP], ids=["sync", "asyncio"])
@pytest.mark.parametrize("scope", ["global", "account:DU1", "trading_switch"])
def test_kill_runs_on_kill_then_exits_with_code_1(program, scope, server, service, tmp_path):
    service.running()
    marker = tmp_path / "on_kill"
    proc = spawn([sys.executable, "-c", textwrap.dedent(program), server.url, str(marker)])
    try:
        read_until(proc, "running")
        if scope == "trading_switch":
            service.r.set("trading_switch", "kill")  # redis-cli SET trading_switch kill
        else:
            service.publish({scope: "kill"})
        output, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1, output
    assert marker.read_text() == "liquidated"
    assert "swallowed" not in output


def test_halt_does_not_exit(server, service, tmp_path):
    service.running()
    proc = spawn([sys.executable, "-c", textwrap.dedent(SYNC_LOOP), server.url, str(tmp_path / "m")])
    try:
        read_until(proc, "running")
        service.publish({"global": "halt"})
        read_until(proc, "halt")
        service.publish({"global": "running"})
        read_until(proc, "running")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "m").exists()


def test_example_trading_loop_exits_1_on_kill(server, service):
    service.running()
    proc = spawn([sys.executable, "examples/trading_loop.py", "--broker", "print", "--interval", "0.05",
                  "--redis-url", server.url])
    try:
        read_until(proc, "(not sent) BUY 1 AAPL")
        service.publish({"global": "pause"}, reasons={"global": "CPI"})
        read_until(proc, "kill switch: pause (pause (scope global, reason: CPI))")
        service.publish({"symbol:AAPL": "kill"})
        read_until(proc, "kill switch: running")
        read_until(proc, "order refused: Order for AAPL refused: kill switch at kill on scope symbol:AAPL")
        service.publish({"global": "kill"})
        output, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "KILL: emergency stop" in output
    # It deregistered on the way out.
    wait_for(lambda: [f for _, f in service.r.xrange("killswitch:clients") if f.get("bye")])


def test_untouched_seed_loop_follows_the_service_and_exits_1_on_kill(server, service):
    service.running()
    proc = spawn([sys.executable, "examples/seed_loop.py"], REDIS_HOST="127.0.0.1",
                 REDIS_PORT=str(server.port), SEED_LOOP_SLEEP="0.05")
    try:
        read_until(proc, ": running")
        service.publish({"global": "pause"})
        read_until(proc, "PAUSE: No new trades")
        service.publish({"global": "halt"})
        read_until(proc, "HALT: no new orders")
        service.publish({"global": "kill"})
        output, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "EMERGENCY LIQUIDATION IN PROGRESS" in output
