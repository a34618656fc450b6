from __future__ import annotations

# REST routes live in killswitch/apis.py (added by the API).
urlpatterns: list = []
