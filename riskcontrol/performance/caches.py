"""Per-process caches of the API's reads (see riskcontrol/performance/__init__.py for
what each buys): a token's lookup for reads, and the status rows keyed by what
changes when they may have changed."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ReadAuthCache:
    """Tokens recently authenticated for reads, with their user and permissions, for
    KILLSWITCH_READ_AUTH_CACHE_SECONDS (2 by default; 0 turns it off), per process.

    A status poller would otherwise pay three queries (token, user permissions, group
    permissions) on every read, which is most of the read's cost. Only reads use it:
    a write always looks the token and the roles up in the database, so a revoked
    token or a removed role cannot change anything from the moment of the change; it
    stops reading within the cache's lifetime. Bounded in size; entries are handed out
    as copies (each request gets its own user object, sharing the loaded permissions).
    """

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _lifetime() -> float:
        from django.conf import settings

        return float(getattr(settings, "KILLSWITCH_READ_AUTH_CACHE_SECONDS", 2.0))

    def get(self, key_hash: str) -> tuple[Any, Any] | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, user, token = entry
        if time.monotonic() >= expires:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return copy.copy(user), token

    def put(self, key_hash: str, user: Any, token: Any) -> None:
        lifetime = self._lifetime()
        if lifetime <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                now = time.monotonic()
                for stale in [k for k, (expires, _, _) in self._entries.items() if expires <= now]:
                    del self._entries[stale]
                while len(self._entries) >= self.MAX_ENTRIES:  # oldest first (insertion order)
                    del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (time.monotonic() + lifetime, copy.copy(user), token)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()



read_auth_cache = ReadAuthCache()


class KeyedRows(Generic[T]):
    """A value read from the database, kept per process under a key that is cheap to
    read and changes whenever the value may have (e.g. the state version).

    `get(key, load, key_of)`: the kept value when it was kept under `key`; otherwise
    `load()`, kept only when `key_of(value) == key`, i.e. when the value read is the
    one the key describes (a value read while a change commits describes another key
    and is returned but not kept). Thread-safe: one tuple is swapped in at a time.
    """

    def __init__(self) -> None:
        self._kept: tuple[Hashable, T] | None = None

    def get(self, key: Hashable, load: Callable[[], T], key_of: Callable[[T], Hashable]) -> T:
        kept = self._kept
        if kept is not None and kept[0] == key:
            return kept[1]
        value = load()
        if key_of(value) == key:
            self._kept = (key, value)
        return value

    def clear(self) -> None:
        self._kept = None
