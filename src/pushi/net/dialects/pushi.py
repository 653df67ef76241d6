"""The Pushi dialect: message shapes of pushi.js and the published Pushi clients.

A dialect turns State's semantic replies into JSON messages and says how a URL
path names the app. Delivered events share one shape in both dialects, so they
are encoded once by State and never pass through here.
"""

from __future__ import annotations

import json


def dumps(value) -> str:
    """Compact JSON, the form every message travels in."""
    return json.dumps(value, separators=(",", ":"))


class Dialect:
    """The Pushi dialect, spoken by pushi.js and the published Pushi clients."""

    name = "pushi"
    activity_timeout = 120

    def connected(self, socket_id: str) -> dict:
        """The first message of a connection."""
        data = {"socket_id": socket_id, "activity_timeout": self.activity_timeout}
        return {"event": "pusher:connection_established", "data": dumps(data)}

    def subscribed(self, channel: str, info: dict) -> dict:
        """`pusher_internal:subscription_succeeded` with the channel's details."""
        data = {"name": channel}
        data.update(info)
        return self._reply("pusher_internal:subscription_succeeded", channel, data)

    def unsubscribed(self, channel: str) -> dict:
        """`pusher_internal:unsubscription_succeeded`."""
        return self._reply(
            "pusher_internal:unsubscription_succeeded", channel, {"name": channel}
        )

    def latest(self, channel: str, events: list) -> dict:
        """`pusher_internal:latest`: stored events, newest first."""
        data = {"name": channel, "events": events}
        return self._reply("pusher_internal:latest", channel, data)

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """A user's first socket joined a presence channel."""
        return {
            "event": "pusher:member_added",
            "channel": channel,
            "member": dumps(channel_data),
        }

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """A user's last socket left a presence channel."""
        return {
            "event": "pusher:member_removed",
            "channel": channel,
            "member": dumps(channel_data),
        }

    def error(self, code: int, message: str, channel: str | None = None) -> dict:
        """`pusher:error`, naming the channel when a channel request failed."""
        reply = {"event": "pusher:error", "data": {"code": code, "message": message}}
        if channel is not None:
            reply["channel"] = channel
        return reply

    def pong(self) -> dict:
        """The answer to `pusher:ping`."""
        return {"event": "pusher:pong", "data": {}}

    def _reply(self, event: str, channel: str, data: dict) -> dict:
        return {"event": event, "channel": channel, "data": dumps(data)}


PUSHI = Dialect()
