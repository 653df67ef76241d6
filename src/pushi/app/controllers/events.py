"""Events: publishing from back ends and reading what was stored."""

from __future__ import annotations

import appier

from ...base import auth
from ...base.state import StateError
from .base import PushiController

MAX_CHANNELS = 100


class EventsController(PushiController):
    """`POST /events` publishes through State; `GET /events` reads the store."""

    @appier.route("/events", "POST", json=True)
    def create(self):
        """Publishes `data` as `event` on one or more channels."""
        app_id = self.session_app()
        fields = self.body()
        if "data" not in fields:
            raise appier.AppierException(message="missing field(s): data", code=400)
        channels = fields.pop("channel", None) or "global"
        channels = channels if isinstance(channels, list) else [channels]
        if len(channels) > MAX_CHANNELS or not all(map(auth.valid_channel, channels)):
            raise appier.AppierException(message="invalid channel name(s)", code=400)
        event = fields.pop("event", None) or "message"
        if not isinstance(event, str) or event.startswith(
            ("pusher:", "pusher_internal:")
        ):
            raise appier.AppierException(message="invalid event name", code=400)
        persist = fields.pop("persist", True) not in (False, "false", "0", 0)
        data = fields.pop("data")
        exclude = fields.pop("socket_id", None)
        state = self.owner.state
        try:
            messages = state.call(
                state.publish, app_id, channels, event, data, persist, fields, exclude
            )
        except StateError as error:
            raise appier.AppierException(message=error.message, code=404) from None
        result = dict(messages[0]) if len(messages) == 1 else {}
        result["events"] = messages
        return result

    @appier.route("/events", "GET", json=True)
    def list(self):
        """Latest stored events of the app (or of `channel`), newest first."""
        app_id = self.session_app()
        count = self.integer(self.field("count"), 10, 1, 100)
        skip = self.integer(self.field("skip"), 0, 0, 10**9)
        channel = self.field("channel")
        store = self.owner.store
        if channel:
            if not auth.valid_channel(channel):
                raise appier.AppierException(message="invalid channel name", code=400)
            return store.call(store.channel_events, app_id, channel, skip, count)
        return store.call(store.app_events, app_id, skip, count)
