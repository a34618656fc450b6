"""`make run`: the whole stack on embedded defaults, in one terminal.

Redis (the configured one, or an embedded redis-server with the Redis users of the trust
model when none answers), migrations, demo users and paper broker data, then every
process the apps register (killswitch.runtime.processes: daphne, the Celery workers, the
reconciler, the broker sweep, the Telegram bot when enabled). Ctrl-C (or SIGTERM) stops
everything it started. Safe to run twice in a row; a second stack while one is up is
refused at once, before anything is written. The running stack is recorded in
var/stack.json, so every command of the project finds its Redis from any terminal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from killswitch_client.config import (  # noqa: E402
    pid_alive,
    read_stack_record,
    remove_stack_record,
    write_stack_record,
)

from riskcontrol.embedded_redis import cli_binary, ensure_redis_env  # noqa: E402

PY = sys.executable
VAR = ROOT / "var"
STACK_FILE = VAR / "stack.json"


def manage(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "manage.py", *args], check=True, text=True, capture_output=capture)


def already_running(port: str) -> str | None:
    """Why another stack is in the way (its record is alive, or the port is taken), or None."""
    try:
        record = read_stack_record(STACK_FILE)
    except ValueError:
        record = None
    if record is not None and pid_alive(record.pid):
        return f"already running (PID {record.pid}, port {record.port}); stop it first (Ctrl-C in its terminal)"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", int(port))) == 0:
            return f"port {port} is already in use; another stack or program listens there (set PORT=...)"
    return None


def check_configuration() -> str | None:
    """The one-line reason the settings or the policy cannot be used, or None."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        import django

        django.setup()
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


def main() -> int:
    VAR.mkdir(exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    port = os.environ.get("PORT", "8000")
    busy = already_running(port)
    if busy:
        print(f"make run: {busy}", file=sys.stderr)
        return 1
    redis_server = ensure_redis_env(users_file=VAR / "redis_users.json")
    os.environ["LOG_FORMAT"] = os.environ.get("LOG_FORMAT", "json")  # services log JSON lines
    if redis_server is not None:
        # The reconciler's first round finds the new embedded Redis empty: that is this
        # start, not a loss (killswitch.services.reconcile.restore_after_loss).
        os.environ["KILLSWITCH_REDIS_STARTED_EMPTY"] = "1"
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
        remove_stack_record(STACK_FILE, pid=os.getpid())
        if redis_server:
            redis_server.cleanup()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Ctrl-C even when started in the background of a shell without job control (which
    # starts it with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        problem = check_configuration()
        if problem:
            print(f"make run: {problem}", file=sys.stderr)
            return 2
        from django.conf import settings

        users = getattr(redis_server, "users", {}) if redis_server else {}
        write_stack_record(STACK_FILE, pid=os.getpid(), redis_url=os.environ["REDIS_URL"], port=int(port),
                           database=str(settings.DATABASES["default"]["NAME"]),
                           client_redis_url=users.get("trader"))
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        credentials = manage("killswitch", "demo-users", capture=True).stdout
        try:
            manage("paper", "seed")
        except subprocess.CalledProcessError:
            print("warning: paper broker demo data could not be seeded", file=sys.stderr)

        from killswitch.runtime.processes import processes

        for process in processes():  # each app registers its own (AppConfig.ready)
            cmd = [part.replace("{port}", port) for part in process.command(python=PY)]
            children.append(subprocess.Popen(cmd))
        print(banner(port, redis_server, users, credentials), flush=True)
        while True:
            for child in children:
                if child.poll() is not None:
                    print(f"{child.args[0]} exited with {child.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except subprocess.CalledProcessError as exc:
        print(f"make run: `{' '.join(exc.cmd[1:])}` failed (exit {exc.returncode}); see the lines above",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def banner(port: str, redis_server, users: dict[str, str], credentials: str) -> str:
    redis_url = os.environ["REDIS_URL"]
    redis_lines = [f"   Redis:                 {redis_url}{'  (embedded, service user)' if redis_server else ''}"]
    if users:
        redis_lines += [
            f"   trading processes use: {users['trader']}",
            "                          (killswitch_client finds it by itself from this directory)",
            "   redis-cli (operator):  .venv/bin/python manage.py killswitch redis-cli GET trading_switch",
        ]
    else:
        redis_lines.append(f"   redis-cli:             {cli_binary()} -u {redis_url} GET trading_switch")
    return "\n".join([
        "", "=" * 80, " Kill switch is up.",
        f"   Dashboard (Risk page): http://127.0.0.1:{port}/admin/risk/",
        f"   API:                   http://127.0.0.1:{port}/api/risk/kill-switch   (docs: /api/docs/)",
        *redis_lines,
        f" Demo users (log in at http://127.0.0.1:{port}/admin/):",
        credentials.rstrip(),
        " API token for a user:   .venv/bin/python manage.py killswitch token risk",
        " From another terminal:  .venv/bin/python manage.py killswitch status",
        " Stop with Ctrl-C.", "=" * 80, "",
    ])


if __name__ == "__main__":
    sys.exit(main())
