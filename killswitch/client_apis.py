from __future__ import annotations

# Connected trading processes and their acknowledgements (GET /api/risk/clients).
urlpatterns: list = []
