"""The Lua scripts the service runs on Redis, loaded from `lua/*.lua`.

Each script's severity table is written from killswitch.domain (`{{SEVERITY}}` in the
file), so the order of levels is stated once for Python, Lua and the client alike.
Scripts are sent with EVAL: a few hundred bytes per transition, and no NOSCRIPT
fallback to get wrong after a Redis restart.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import redis

from killswitch import domain as L

LUA_DIR = Path(__file__).with_name("lua")
PLACEHOLDER = "{{SEVERITY}}"


@cache
def source(name: str) -> str:
    """The script `name` (without .lua) with the severity table filled in."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    if PLACEHOLDER not in text:
        raise RuntimeError(f"{name}.lua has no {PLACEHOLDER}: its severity order would be a copy")
    return text.replace(PLACEHOLDER, L.lua_severity_table())


def run(client: redis.Redis | redis.client.Pipeline, name: str, keys: list[str], args: list) -> object:
    """Run script `name` on `client` (a connection or a pipeline)."""
    return client.eval(source(name), len(keys), *keys, *args)
