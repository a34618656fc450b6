"""Models for connected trading processes and their acknowledgements (client library)."""

from __future__ import annotations
