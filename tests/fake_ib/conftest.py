"""Fixtures for the fake gateway's tests: a gateway on a background thread and a factory
of real ib_async clients connected to it over TCP.

A decoder error inside ib_async (it only logs those) fails the test, so a
misaligned message layout cannot pass silently; so do internal errors of the
fake and messages it does not implement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from ib_async import IB

from tests.fake_ib import FakeGateway

from .support import ACC1, ACC2, CONTRACTS, ErrorLog


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def gateway(request: pytest.FixtureRequest) -> Iterator[FakeGateway]:
    """A started gateway with accounts ACC1, ACC2 (or ``indirect`` parametrization's)."""
    gw = FakeGateway(accounts=getattr(request, "param", (ACC1, ACC2))).start()
    try:
        yield gw
        assert gw.internal_errors == []
        assert gw.unhandled_messages == []
    finally:
        gw.stop()


@pytest.fixture
def desk(gateway: FakeGateway) -> FakeGateway:
    """The gateway with one contract of every secType registered (support.CONTRACTS)."""
    for fields in CONTRACTS.values():
        gateway.add_contract(**fields)
    return gateway


@pytest.fixture
def connect(gateway: FakeGateway) -> Iterator[Callable[..., tuple[IB, ErrorLog]]]:
    """Factory: connect a fresh ib_async IB with ``clientId``; returns (ib, error events)."""
    decode_errors = _Collect()
    decoder_log = logging.getLogger("ib_async.Decoder")
    decoder_log.addHandler(decode_errors)
    clients: list[IB] = []

    def _connect(client_id: int, **kwargs: object) -> tuple[IB, ErrorLog]:
        ib = IB()
        ib.RequestTimeout = 5  # a missing reply must fail the test, not hang it
        errors: ErrorLog = []
        ib.errorEvent += lambda req_id, code, msg, _contract: errors.append((req_id, code, msg))
        ib.connect("127.0.0.1", gateway.port, clientId=client_id, timeout=5, **kwargs)
        clients.append(ib)
        return ib, errors

    try:
        yield _connect
        assert [r.getMessage() for r in decode_errors.records] == []
    finally:
        decoder_log.removeHandler(decode_errors)
        for ib in clients:
            ib.disconnect()
