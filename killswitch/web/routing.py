"""WebSocket routes (served by daphne through riskcontrol/asgi.py)."""

from __future__ import annotations

from django.urls import path

from .consumers import RiskConsumer

websocket_urlpatterns: list = [
    path("ws/risk/", RiskConsumer.as_asgi()),
]
