"""REST routes under /api/. Each module owns its own urlpatterns."""

from __future__ import annotations

from .apis import urlpatterns as switch_urls
from .client_apis import urlpatterns as client_urls

urlpatterns = [*switch_urls, *client_urls]
