"""Sockets: the app's live connections, read from State."""

from __future__ import annotations

import appier

from .base import PushiController


class SocketsController(PushiController):
    """Introspection of an app's connected sockets."""

    @appier.route("/sockets", "GET", json=True)
    def list(self):
        """Every live socket of the app with its channels."""
        state = self.owner.state
        return state.call(state.sockets, self.session_app())

    @appier.route("/sockets/<str:socket_id>", "GET", json=True)
    def show(self, socket_id):
        """One live socket of the app."""
        state = self.owner.state
        for socket in state.call(state.sockets, self.session_app()):
            if socket["socket_id"] == socket_id:
                return socket
        raise appier.AppierException(message="socket not found", code=404)
