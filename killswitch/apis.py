from __future__ import annotations

# The kill switch REST API (POST/GET /api/risk/kill-switch, history).
urlpatterns: list = []
