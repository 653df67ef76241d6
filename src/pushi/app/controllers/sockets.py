"""Sockets: the app's live connections, read from State."""

from __future__ import annotations

import appier

from .base import PushiController


class SocketsController(PushiController):
    """Introspection of an app's connected sockets."""

    @appier.route("/sockets", "GET", json=True)
    def list(self):
        """`{"sockets": [{"socket_id", "channel": [...]}]}`, channels in join order."""
        state = self.owner.state
        return dict(sockets=state.call(state.sockets, self.session_app()))

    @appier.route("/sockets/<str:socket_id>", "POST", json=True)
    def channels(self, socket_id):
        """`{"channels": [...]}` one socket joined (never `personal-*`); `[]` if
        unknown, as published."""
        state = self.owner.state
        app_id = self.session_app()
        return dict(channels=state.call(state.socket_channels, app_id, socket_id))

    @appier.route("/sockets/<str:socket_id>", "GET", json=True)
    def show(self, socket_id):
        """One live socket of the app, as `GET /sockets` lists it (an addition)."""
        state = self.owner.state
        for socket in state.call(state.sockets, self.session_app()):
            if socket["socket_id"] == socket_id:
                return socket
        raise appier.NotFoundError(message="Socket not found", code=404)
