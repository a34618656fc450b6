"""The Risk page's WebSocket: forwards every live push (killswitch.web.live) to the page.

Guarantees:
- Only an authenticated, active user with `killswitch.view_killswitch` is accepted;
  anyone else is refused during the handshake (HTTP 403), before joining the group.
  The Origin header is checked by AllowedHostsOriginValidator in riskcontrol/asgi.py.
- Messages reach a page in the order the channel layer delivers them to the group
  (per sender, the order sent). Each event carries its `seq`.
- Nothing the page sends can change anything: the only message understood is
  `{"type": "ping"}`; anything else is answered with an error and otherwise ignored.
- A page whose person logged out, was deactivated or lost the viewer role is closed
  within a few seconds: the reconciler's liveness ping (every heartbeat) makes each
  consumer re-read the session and the user's roles, at most every RECHECK_SECONDS.

Synchronous, as the house style asks: authorization reads the database.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import JsonWebsocketConsumer

from killswitch.services.authorization import VIEW, user_may

from .live import GROUP

# The page only ever sends pings; anything larger is not ours.
MAX_MESSAGE_BYTES = 1024
RECHECK_SECONDS = 2.0
CLOSED_NO_LONGER_PERMITTED = 4403


def still_permitted(user_id: int | None, session_key: str | None) -> bool:
    """The session still exists (no logout, not expired) and its user is active and has
    the viewer role, read from the database now (roles are not taken from the socket's
    copy of the user)."""
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    if user_id is None or not session_key:
        return False
    if not Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now()).exists():
        return False
    user = get_user_model().objects.filter(pk=user_id).first()
    return user_may(user, VIEW)


class RiskConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        user = self.scope.get("user")
        if not user_may(user, VIEW):
            self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.joined = True
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.checked_at = time.monotonic()
        async_to_sync(self.channel_layer.group_add)(GROUP, self.channel_name)
        self.accept()
        self.send_json({"kind": "hello", "payload": {"user": user.get_username()}, "sent_at": time.time()})

    def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
                async_to_sync(self.channel_layer.group_discard)(GROUP, self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # Parse defensively: hostile or broken clients get an error, never a crash.
        if bytes_data is not None or text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
            self.send_json({"kind": "error", "payload": {"error": "unsupported message"}})
            return
        try:
            content = self.decode_json(text_data)
        except ValueError:
            self.send_json({"kind": "error", "payload": {"error": "not JSON"}})
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            self.send_json({"kind": "pong", "payload": {}, "sent_at": time.time()})
        else:
            self.send_json({"kind": "error", "payload": {"error": "unsupported message"}})

    def killswitch_push(self, message: dict[str, Any]) -> None:
        """Group message from killswitch.web.live.push."""
        now = time.monotonic()
        if now - getattr(self, "checked_at", 0.0) >= RECHECK_SECONDS:
            self.checked_at = now
            if not still_permitted(getattr(self, "user_id", None), getattr(self, "session_key", None)):
                self.send_json({"kind": "closed", "payload": {
                    "reason": "your session ended or you no longer have the viewer role; log in again"}})
                self.close(code=CLOSED_NO_LONGER_PERMITTED)
                return
        self.send_json({"kind": message["kind"], "payload": message["payload"],
                        "sent_at": message.get("sent_at")})
