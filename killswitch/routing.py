from __future__ import annotations

# WebSocket routes; the Risk page consumer is added by the dashboard.
websocket_urlpatterns: list = []
