"""Where the client finds Redis when no URL is given: the seed's environment."""

from __future__ import annotations

import os
from urllib.parse import quote


def redis_url_from_env() -> str:
    """REDIS_URL, else the seed's REDIS_HOST / REDIS_PORT / REDIS_PASSWORD (defaults
    localhost:6379, no password), database 0."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    host = os.environ.get("REDIS_HOST", "localhost")
    port = os.environ.get("REDIS_PORT", "6379")
    password = os.environ.get("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"
