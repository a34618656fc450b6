"""The admin site with the Risk page at /admin/risk/.

Kept apart from killswitch/web/admin.py: the site class is imported while `admin.site` is
being set up, and a module that registers models at import must not be the one that
defines the site (the registrations would land on a half-built site).
"""

from __future__ import annotations

from functools import partial

from django.contrib import admin
from django.urls import path

from . import risk as risk_views


class RiskAdminSite(admin.AdminSite):
    """The default admin site plus the Risk page.

    Installed as the default site by killswitch.apps.RiskAdminConfig (in INSTALLED_APPS
    in place of django.contrib.admin), so `admin.site` is this class everywhere.
    """

    site_header = "Kill switch"
    site_title = "Kill switch"
    index_title = "Risk control"
    # The model list down the left would take a fifth of a 1366 px screen from the audit log
    # and the Risk page; the header's Risk link and the landing page lead everywhere.
    enable_nav_sidebar = False

    def get_urls(self) -> list:
        risk = [
            path("risk/", self.admin_view(partial(risk_views.risk_page, site=self)), name="killswitch_risk"),
            path("risk/state.json", self.admin_view(partial(risk_views.risk_state, site=self)),
                 name="killswitch_risk_state"),
            path("risk/activate/", self.admin_view(partial(risk_views.risk_activate, site=self)),
                 name="killswitch_risk_activate"),
            path("risk/open.json", self.admin_view(partial(risk_views.risk_open, site=self)),
                 name="killswitch_risk_open"),
            path("risk/resume/", self.admin_view(partial(risk_views.risk_resume, site=self)),
                 name="killswitch_risk_resume"),
        ]
        return risk + super().get_urls()

    def index(self, request, extra_context=None):
        """The admin's landing page, with the switch's global state and the way to the
        Risk page on top (for people who may see it)."""
        from killswitch.services.authorization import VIEW, user_may

        extra = dict(extra_context or {})
        if user_may(request.user, VIEW):
            extra["killswitch_summary"] = risk_views.landing_summary()
        return super().index(request, extra_context=extra)
