"""Broker routes under /api/ (GET /api/risk/runs, /api/risk/runs/<id>)."""

from __future__ import annotations

from django.urls import path

from .apis import RunDetailApi, RunListApi

urlpatterns = [
    path("risk/runs", RunListApi.as_view(), name="broker-runs"),
    path("risk/runs/<int:run_id>", RunDetailApi.as_view(), name="broker-run"),
]
