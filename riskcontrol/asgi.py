"""ASGI entry point served by daphne: HTTP (Django) and WebSocket (Channels)."""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from riskcontrol.performance.handler import get_http_application, settle_server_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
# daphne serves no static files itself; the admin and the Risk page's JS/CSS are small
# and few, so the application serves them (a reverse proxy may take over in production).
# The handler runs each request's middleware and view in one worker-thread hop (riskcontrol/performance/handler.py).
django_asgi_app = ASGIStaticFilesHandler(get_http_application())

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from killswitch.web.routing import websocket_urlpatterns  # noqa: E402
from riskcontrol.performance.admission import ReadsYieldToWrites  # noqa: E402
from riskcontrol.performance.replay import StatusReplay, connect_signals  # noqa: E402

connect_signals()

application = ProtocolTypeRouter(
    {
        # Reads are admitted a few at a time so an activation never queues behind them;
        # the status read is replayed on the event loop while the state is unchanged.
        "http": ReadsYieldToWrites(StatusReplay(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

settle_server_process()
