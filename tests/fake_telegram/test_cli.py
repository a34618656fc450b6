"""``python -m tests.fake_telegram``: the fake as a process for manual demos."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.fake_telegram import DEFAULT_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def test_the_process_reports_ready_plays_users_and_echoes_the_bot():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_telegram", "--port", "0", "--token", DEFAULT_TOKEN],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in process.stdout], daemon=True).start()

    def say(command: str) -> None:
        process.stdin.write(command + "\n")
        process.stdin.flush()

    try:
        ready = lines.get(timeout=20)
        assert ready.startswith("READY ")
        base = f"http://127.0.0.1:{ready.split()[1]}/bot{DEFAULT_TOKEN}"
        say("say 42 42 /status now")
        assert lines.get(timeout=10).startswith("UPDATE ")
        [update] = httpx.post(f"{base}/getUpdates").json()["result"]
        assert update["message"]["text"] == "/status now"
        sent = httpx.post(f"{base}/sendMessage", data={"chat_id": 42, "text": "Trading is running"}).json()
        assert lines.get(timeout=10) == f"BOT 42 {sent['result']['message_id']} Trading is running"
        say("bogus")
        assert lines.get(timeout=10).startswith("ERROR unknown command")
        say("quit")
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
