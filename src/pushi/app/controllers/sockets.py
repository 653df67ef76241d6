"""Sockets: the app's live connections, read from State."""

from __future__ import annotations

import appier

from ...base.state import MAX_SKIP, SOCKETS_PAGE
from .base import PushiController


class SocketsController(PushiController):
    """Introspection of an app's connected sockets."""

    @appier.route("/sockets", "GET", json=True)
    def list(self):
        """`{"sockets": [{"socket_id", "channel": [...]}]}`, channels in join order.

        Paged, so that one call cannot hold the event loop: `skip` (default 0)
        sockets in connection order are passed over, then `count` (default and
        at most 1,000) are listed; fewer than `count` means the last page.
        """
        state = self.owner.state
        most = SOCKETS_PAGE
        count = self.integer(self.field("count"), most, 1, most)
        skip = self.integer(self.field("skip"), 0, 0, MAX_SKIP)
        page = state.call(state.sockets, self.session_app(), skip, count)
        return dict(sockets=page)

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
        socket = state.call(state.socket, self.session_app(), socket_id)
        if socket is None:
            raise appier.NotFoundError(message="Socket not found", code=404)
        return socket
