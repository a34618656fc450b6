"""`make run`: the whole stack on embedded defaults, in one terminal.

Redis (the configured one, or an embedded redis-server when none answers), migrations,
demo users and paper broker data, then daphne (HTTP + WebSocket), the Celery worker,
the reconciler and the broker sweep. Ctrl-C (or SIGTERM) stops everything it started.
Safe to run twice: every set-up step is idempotent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from riskcontrol.embedded_redis import cli_binary, ensure_redis_env  # noqa: E402

PY = sys.executable


def manage(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "manage.py", *args], check=True, text=True,
                          capture_output=capture)


def main() -> int:
    (ROOT / "var").mkdir(exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    redis_server = ensure_redis_env()
    port = os.environ.get("PORT", "8000")
    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server:
            redis_server.cleanup()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        users = manage("killswitch", "demo-users", capture=True).stdout
        try:
            manage("paper", "seed")
        except subprocess.CalledProcessError:
            print("warning: paper broker demo data could not be seeded", file=sys.stderr)

        processes = {
            "web": ["daphne", "-b", "127.0.0.1", "-p", port, "riskcontrol.asgi:application"],
            "worker": ["celery", "-A", "riskcontrol", "worker", "--loglevel", "INFO",
                       "--concurrency", "2", "-n", "killswitch@%h"],
            "reconciler": [PY, "manage.py", "killswitch", "reconcile"],
        }
        if "sweep" in subprocess.run([PY, "manage.py", "killswitch", "--help"], text=True,
                                     capture_output=True).stdout:
            processes["sweep"] = [PY, "manage.py", "killswitch", "sweep"]
        bindir = Path(PY).parent
        for cmd in processes.values():
            if not cmd[0].startswith("/"):
                cmd[0] = str(bindir / cmd[0])
            children.append(subprocess.Popen(cmd))

        redis_url = os.environ["REDIS_URL"]
        print(f"""
================================================================================
 Kill switch is up.
   Dashboard (Risk page): http://127.0.0.1:{port}/admin/risk/
   API:                   http://127.0.0.1:{port}/api/risk/kill-switch   (docs: /api/docs/)
   Redis:                 {redis_url}{'  (embedded)' if redis_server else ''}
   redis-cli:             {cli_binary()} -u {redis_url} GET trading_switch
 Demo users (log in at http://127.0.0.1:{port}/admin/):
{users.rstrip()}
 API token for a user:   .venv/bin/python manage.py killswitch token risk
 Stop with Ctrl-C.
================================================================================
""", flush=True)
        while True:
            for child in children:
                if child.poll() is not None:
                    print(f"{child.args[0]} exited with {child.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
