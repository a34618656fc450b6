"""The Risk page's WebSocket: forwards every live push (killswitch.web.live) to the page.

Guarantees:
- Only an authenticated, active user with `killswitch.view_killswitch` is accepted;
  anyone else is refused during the handshake (HTTP 403), before joining the group.
  The Origin header is checked by AllowedHostsOriginValidator in riskcontrol/asgi.py.
- Messages reach a page in the order the channel layer delivers them to the group
  (per sender, the order sent). Each event carries its `seq`.
- Nothing the page sends can change anything: the only message understood is
  `{"type": "ping"}`; anything else is answered with an error and otherwise ignored.

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


class RiskConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        user = self.scope.get("user")
        if not user_may(user, VIEW):
            self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.joined = True
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
        self.send_json({"kind": message["kind"], "payload": message["payload"],
                        "sent_at": message.get("sent_at")})
