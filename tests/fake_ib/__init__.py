"""Fake Interactive Brokers gateway speaking the TWS API wire protocol (for tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FakeGateway"]

if TYPE_CHECKING:
    from .gateway import FakeGateway


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.fake_ib.gateway` does not import the module
    # twice (runpy warns when the package already imported it).
    if name == "FakeGateway":
        from .gateway import FakeGateway

        return FakeGateway
    raise AttributeError(name)
