"""Several daphne processes on one port: `python -m riskcontrol.serve --processes 2`.

It opens the listening socket once and starts N daphne processes that all accept on
it (`daphne --fd N`); a process that exits is started again; SIGTERM or
Ctrl-C stops them all. This is what deploy/Procfile runs; under systemd the socket
unit (deploy/systemd/killswitch-web.socket) plays this part and each
`killswitch-web@N.service` is one daphne on the inherited socket.

Why one shared socket (and not SO_REUSEPORT, nor another server): with one socket
there is one accept queue, and whichever process is free takes the next connection;
a process that hangs (a stuck request, SIGSTOP) simply stops accepting, and the others
serve every new connection. With SO_REUSEPORT the kernel gives each process its own
queue and hashes connections onto them, so connections keep landing on the hung
process and wait there; daphne (Twisted) cannot set it anyway. daphne stays the
server: it is what serves the WebSocket of the Risk page and what bench_api measures.
Why a few lines here rather than a process manager (circus, supervisord): honcho runs
one command per process type and cannot pass a socket to several; systemd, which can,
does so in production without this module.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RESTART_BACKOFF_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A bound, listening IPv4 TCP socket its children may inherit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def daphne_command(fd: int, application: str, extra: list[str]) -> list[str]:
    daphne = str(Path(sys.executable).with_name("daphne"))
    return [daphne, "--fd", str(fd), *extra, application]


def serve(host: str, port: int, processes: int, application: str, extra: list[str]) -> int:
    """Run `processes` daphne processes on host:port until SIGTERM/SIGINT. Returns 0."""
    sock = listening_socket(host, port)
    command = daphne_command(sock.fileno(), application, extra)
    children: dict[int, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(slot: int) -> None:
        children[slot] = subprocess.Popen(command, pass_fds=(sock.fileno(),))
        print(f"serve: web process {slot} pid {children[slot].pid} on {host}:{port}", flush=True)

    for slot in range(processes):
        start(slot)
    try:
        while not stopping:
            for slot, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    print(f"serve: web process {slot} (pid {child.pid}) exited with {child.returncode}; "
                          f"starting it again", file=sys.stderr, flush=True)
                    time.sleep(RESTART_BACKOFF_SECONDS)
                    start(slot)
            time.sleep(0.2)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Several daphne processes sharing one listening socket.")
    parser.add_argument("--processes", type=int, default=int(os.environ.get("WEB_PROCESSES", "2")),
                        help="daphne processes (default: WEB_PROCESSES or 2)")
    parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1"),
                        help="address to listen on (default: BIND or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="port (default: PORT or 8000)")
    parser.add_argument("--application", default="riskcontrol.asgi:application")
    args, extra = parser.parse_known_args(argv)
    if not 1 <= args.processes <= 64:
        parser.error(f"--processes {args.processes}: expected 1 to 64")
    if ":" in args.bind:
        # Twisted adopts an inherited descriptor as IPv4 only (its fd: endpoint has no
        # usable address family option); systemd's socket units serve IPv6.
        parser.error(f"--bind {args.bind}: expected an IPv4 address (for IPv6 use deploy/systemd)")
    return serve(args.bind, args.port, args.processes, args.application, extra)


if __name__ == "__main__":
    sys.exit(main())
