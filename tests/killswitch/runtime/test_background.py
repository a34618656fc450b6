"""The after-commit lane: ordered, never stopped by a failure, drained on exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

from killswitch.runtime import background
from tests.stack import ROOT


def test_items_run_in_order_after_the_caller_returns_and_failures_are_skipped():
    lane = background.Lane("test-lane")
    seen: list[object] = []
    gate = threading.Event()

    def first() -> None:
        gate.wait(5)
        seen.append(("first", threading.current_thread().name))

    def broken() -> None:
        raise RuntimeError("boom")

    async def coroutine(value: int) -> None:
        await asyncio.sleep(0)
        seen.append(value)

    lane.submit(first)
    lane.submit(broken)
    lane.submit(coroutine, 2)
    lane.submit(seen.append, 3)
    assert seen == []  # submit returned before any of it ran
    gate.set()
    assert lane.flush(5)
    assert seen == [("first", "test-lane"), 2, 3]


def test_a_process_that_exits_runs_what_it_queued_first(tmp_path):
    """As the CLI: activate, queue the pushes and Celery messages, exit at once."""
    marker = tmp_path / "ran"
    script = textwrap.dedent(f"""
        import time
        from killswitch.runtime import background

        def slow():
            time.sleep(0.3)
            open({str(marker)!r}, "w").write("yes")

        background.dispatch.submit(slow)
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert marker.read_text() == "yes"


def test_a_forked_child_gets_its_own_lane(tmp_path):
    lane = background.Lane("test-fork")
    lane.submit(lambda: None)
    assert lane.flush(5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            lane.submit(os.write, write, b"child")
            os._exit(0 if lane.flush(5) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(read, 16) == b"child"


def test_a_lane_whose_thread_died_starts_again():
    lane = background.Lane("test-revive")
    lane.submit(lambda: None)
    assert lane.flush(5)
    dead = threading.Thread(target=lambda: None)  # the lane's thread is gone, as if killed
    dead.start()
    dead.join()
    lane._thread = dead
    seen: list[int] = []
    lane.submit(seen.append, 1)
    assert lane.flush(5) and seen == [1]


def test_a_hung_coroutine_is_abandoned_and_the_lane_goes_on(monkeypatch):
    monkeypatch.setattr(background, "ITEM_TIMEOUT_SECONDS", 0.2)
    lane = background.Lane("test-timeout")
    seen: list[str] = []

    async def hangs() -> None:
        await asyncio.sleep(3600)

    lane.submit(hangs)
    lane.submit(seen.append, "after")
    assert lane.flush(5) and seen == ["after"]
