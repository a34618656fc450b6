"""Fixtures for the REST API tests: a token per persona, clients that send it,
and a clean failed-attempt counter for every test."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from killswitch.services.tokens import issue_token
from riskcontrol.performance.caches import read_auth_cache as _read_cache

URL = "/api/risk/kill-switch"
HISTORY_URL = "/api/risk/kill-switch/history"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The personas are created with passwords; the default PBKDF2 costs ~0.3 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    caches["default"].clear()
    _read_cache.clear()
    yield
    caches["default"].clear()
    _read_cache.clear()


@pytest.fixture
def token_for() -> Callable[..., str]:
    """token_for(user) -> a fresh secret for that user, minted as the CLI does."""

    def mint(user) -> str:
        return issue_token(username=user.username, name="test").key

    return mint


@pytest.fixture
def client_for(token_for) -> Callable[..., APIClient]:
    """client_for(user) -> an APIClient sending that user's token; client_for(None) -> anonymous."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
        return client

    return make
