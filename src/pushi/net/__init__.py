"""The WebSocket side of Pushi (netius + wsproto)."""
