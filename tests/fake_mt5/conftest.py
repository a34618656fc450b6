"""Fixtures for the fake MT5 terminal: one fake process per test session, reset per test.

``fake_mt5`` (hedging) and ``netting_fake_mt5`` hand out the same process after
:meth:`~tests.fake_mt5.harness.FakeMT5.reset`, so every test starts from the
default catalogue with no positions, no faults and the module not initialized.
``mt5`` is a real ``mt5linux.MetaTrader5`` client already initialized against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_mt5.harness import FakeMT5, close_client

LOGIN = 5012345


@pytest.fixture(scope="session")
def fake_mt5_process() -> Iterator[FakeMT5]:
    fake = FakeMT5.start(login=LOGIN)
    yield fake
    fake.stop()


@pytest.fixture
def fake_mt5(fake_mt5_process: FakeMT5) -> FakeMT5:
    fake_mt5_process.reset(netting=False)
    return fake_mt5_process


@pytest.fixture
def netting_fake_mt5(fake_mt5_process: FakeMT5) -> FakeMT5:
    fake_mt5_process.reset(netting=True)
    return fake_mt5_process


def _client(fake: FakeMT5) -> Iterator[Any]:
    client = fake.mt5linux(timeout=10)
    assert client.initialize(login=LOGIN) is True, client.last_error()
    yield client
    close_client(client)


@pytest.fixture
def mt5(fake_mt5: FakeMT5) -> Iterator[Any]:
    """The real mt5linux client, initialized against the (hedging) fake."""
    yield from _client(fake_mt5)


@pytest.fixture
def netting_mt5(netting_fake_mt5: FakeMT5) -> Iterator[Any]:
    """The real mt5linux client, initialized against the netting fake."""
    yield from _client(netting_fake_mt5)
