from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", include("killswitch.ops.urls")),  # /healthz, /readyz, /metrics
    # The dashboard is what a person opening the server's address is looking for.
    path("", RedirectView.as_view(pattern_name="admin:killswitch_risk", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("killswitch.api.urls")),
    path("api/", include("brokers.urls")),
]


def _not_found(request, exception=None):
    """Under /api/ even a path that matches no route answers in the API's one error shape."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"No API endpoint or object at {request.path}.", "code": "not_found",
                             "field": None}, status=404)
    return page_not_found(request, exception)


handler404 = _not_found
