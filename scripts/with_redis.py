"""Run a command with REDIS_URL pointing at a Redis that answers (embedded if needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from riskcontrol.embedded_redis import ensure_redis_env  # noqa: E402

if __name__ == "__main__":
    server = ensure_redis_env()
    try:
        sys.exit(subprocess.call(sys.argv[1:]))
    finally:
        if server:
            server.cleanup()
