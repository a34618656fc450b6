from __future__ import annotations

# Broker runs and their per-order actions (GET /api/risk/runs).
urlpatterns: list = []
