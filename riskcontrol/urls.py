from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("killswitch.ops.urls")),  # /healthz, /readyz, /metrics
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
