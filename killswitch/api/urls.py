"""REST routes under /api/ (riskcontrol/urls.py mounts them). Brokers add theirs in brokers/urls.py."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .breakers import BreakersApi, DeadManApi
from .clients import ClientsApi
from .history import KillSwitchHistoryApi
from .switch import KillSwitchApi, ResumeRequestsApi

urlpatterns = [
    path("risk/kill-switch", KillSwitchApi.as_view(), name="kill-switch"),
    path("risk/kill-switch/history", KillSwitchHistoryApi.as_view(), name="kill-switch-history"),
    path("risk/clients", ClientsApi.as_view(), name="kill-switch-clients"),
    path("risk/resume-requests", ResumeRequestsApi.as_view(), name="kill-switch-resume-requests"),
    path("risk/breakers", BreakersApi.as_view(), name="kill-switch-breakers"),
    path("risk/deadman/<str:name>", DeadManApi.as_view(), name="kill-switch-deadman"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
