"""Fixtures of this package's tests: the MT5 stack (mt5_stack.py)."""

from __future__ import annotations

from .mt5_stack import mt5_stack, terminal  # noqa: F401 - fixtures
