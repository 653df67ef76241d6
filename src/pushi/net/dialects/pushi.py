"""The Pushi dialect: message shapes of pushi.js and the published Pushi clients.

A dialect turns State's semantic replies into JSON messages. Fields the published
server sends string-encoded (`data` of channel replies, `member`) use Python's
`json.dumps` defaults, as it does: clients compare those strings. Delivered events
are encoded once by State and never pass through here.
"""

from __future__ import annotations

import json

from ...base.session import PUSHI_RULES


def dumps(value) -> str:
    """Compact JSON, the form every frame travels in."""
    return json.dumps(value, separators=(",", ":"))


class Dialect:
    """The Pushi dialect, spoken by pushi.js and the published Pushi clients."""

    name = "pushi"
    rules = PUSHI_RULES
    # protocol commands by name, with `:` spelt `_`; any other name is a
    # client event
    commands = {
        "pusher_subscribe": "subscribe",
        "pusher_unsubscribe": "unsubscribe",
        "pusher_latest": "latest",
        "pusher_ping": "ping",
        "pusher_pong": "pong",
    }

    def connected(self, socket_id: str, activity_timeout: int = 0) -> dict:
        """The first message of a connection (the published one: no activity
        timeout, pushi.js pings nobody)."""
        data = json.dumps({"socket_id": socket_id})
        return {"event": "pusher:connection_established", "data": data}

    def subscribed(self, channel: str, info: dict) -> dict:
        """`pusher_internal:subscription_succeeded` with the channel's details."""
        return self._reply("pusher_internal:subscription_succeeded", channel, info)

    def unsubscribed(self, channel: str, info: dict) -> dict:
        """`pusher_internal:unsubscription_succeeded`: the state after leaving."""
        return self._reply("pusher_internal:unsubscription_succeeded", channel, info)

    def latest(self, channel: str, info: dict) -> dict:
        """`pusher_internal:latest`: stored events, newest first."""
        return self._reply("pusher_internal:latest", channel, info)

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """A user's first socket joined a presence channel."""
        return self._member("pusher:member_added", channel, channel_data)

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """A user's last socket left a presence channel."""
        return self._member("pusher:member_removed", channel, channel_data)

    def error(self, code: int, message: str, channel: str | None = None) -> dict:
        """`pusher:error`; `channel` always there (pushi.js reads it on every
        message), empty when the error concerns no channel."""
        return {
            "event": "pusher:error",
            "channel": channel or "",
            "data": {"code": code, "message": message},
        }

    def pong(self) -> dict:
        """The answer to `pusher:ping`."""
        return {"event": "pusher:pong", "data": {}}

    def ping(self) -> dict | None:
        """The server's probe of a silent connection as a message: none, the
        Pushi dialect is probed with RFC 6455 ping frames its clients never see."""
        return None

    @staticmethod
    def _reply(event: str, channel: str, info: dict) -> dict:
        # always exactly these four keys, in this order
        data = {
            "name": channel,
            "members": info["members"],
            "alias": info["alias"],
            "events": info["events"],
        }
        return {"event": event, "data": json.dumps(data), "channel": channel}

    @staticmethod
    def _member(event: str, channel: str, channel_data: dict) -> dict:
        return {"event": event, "member": json.dumps(channel_data), "channel": channel}


PUSHI = Dialect()
