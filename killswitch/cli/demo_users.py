from __future__ import annotations

from ..services.demo import ensure_demo_users

NAME = "demo-users"
HELP = "Create the demo users (viewer, trader, risk, admin) and print their credentials."


def add_arguments(parser) -> None:
    pass


def run(options, out, err) -> int:
    for username, entry in ensure_demo_users().items():
        out.write(f"  {username:<8} password {entry['password']:<20} role {entry['role']}\n")
    return 0
