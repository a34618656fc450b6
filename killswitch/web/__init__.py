"""The dashboard: the admin site with the Risk page, its live WebSocket, its panels."""
