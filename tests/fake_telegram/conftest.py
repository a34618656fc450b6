"""Fixtures for the fake Bot API's own tests: a started server and the people who write
to the bot (a trader in a private chat, a risk officer, the desk's group)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_telegram import FakeBotApi

TRADER = 4242  # a private chat's id is its user's id
RISK_OFFICER = 4343
DESK_GROUP = -1001234567890


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi() as fake:
        yield fake


@pytest.fixture
def http(api: FakeBotApi) -> Iterator[httpx.Client]:
    """A plain HTTP client on the fake's API URL, for wire-level checks."""
    with httpx.Client(base_url=api.api_url, timeout=10) as client:
        yield client
