"""`make bench`: run every bench/bench_*.py in turn, each printing its figures as ratios
against a baseline measured in the same run. Redis is provided like `make run` does
(the configured one, or an embedded redis-server)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riskcontrol.embedded_redis import ensure_redis_env  # noqa: E402


def main(argv: list[str]) -> int:
    selected = argv[1:]
    scripts = sorted((ROOT / "bench").glob("bench_*.py"))
    if selected:
        scripts = [s for s in scripts if any(name in s.stem for name in selected)]
    server = ensure_redis_env()
    failures = 0
    try:
        for script in scripts:
            print(f"\n=== {script.name} ===", flush=True)
            started = time.monotonic()
            code = subprocess.call([sys.executable, str(script)], cwd=ROOT)
            print(f"=== {script.name}: exit {code} in {time.monotonic() - started:.1f}s ===", flush=True)
            failures += code != 0
    finally:
        if server:
            server.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
