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

        import django

        django.setup()
        from killswitch.runtime.processes import processes

        for process in processes():  # each app registers its own (AppConfig.ready)
            cmd = [part.replace("{port}", port) for part in process.command(python=PY)]
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
