"""The Pusher dialect: Pusher Channels protocol 7 (5 to 7), as pusher-js speaks it.

Message shapes follow Pusher's protocol documentation: string-encoded `data` on
connection and channel messages, `presence: {ids, hash, count}` in a presence
subscription's reply, `pusher_internal:member_added` / `member_removed`,
`pusher:subscription_error` for a refused authorisation, and `pusher:error`
without a channel. The rules State asks a session about (socket ids, channel
names, client events, cache channels) are `PusherRules`. Delivered events are
encoded once by State, the same bytes for every socket of either dialect.
"""

from __future__ import annotations

import secrets
import typing

from ...base import auth
from ...base.session import Rules
from ...base.state import encode_data
from .pushi import Dialect, dumps

if typing.TYPE_CHECKING:
    from ...base.session import Session

PROTOCOLS = (5, 6, 7)
""" Protocol versions served (the `protocol` query parameter) """

CLIENT_EVENT_RATE = 10
""" Client events a second per connection (Pusher's limit) """

# Pusher's codes (its protocol documentation, "Error Codes")
NO_PROTOCOL = 4008
UNSUPPORTED_PROTOCOL = 4007
UNAUTHORIZED = 4009
OTHER_ERROR = 4300

CLIENT_PREFIX = "client-"


class PusherRules(Rules):
    """State's questions answered the Pusher way.

    Socket ids `<digits>.<digits>`; Pusher's channel names (plus the signed-in
    user's `#server-to-user-<id>`); client events only `client-*`, only on
    private and presence channels (never encrypted ones), when the app allows
    them, within the app's payload limit, 10 a second, never echoed nor stored,
    with the sender's `user_id` on presence channels; cache channels replay.
    """

    name = "pusher"
    refused_subscription = "subscription_error"
    cache_channels = True
    echo_client_events = False
    persist_client_events = False
    client_user_id = True
    client_event_rate = CLIENT_EVENT_RATE

    def new_socket_id(self) -> str:
        """`<digits>.<digits>`, random (State retries the rare collision)."""
        return "%d.%d" % (secrets.randbelow(10**10), secrets.randbelow(10**10))

    def valid_channel(self, channel: object) -> bool:
        """Pusher's names (`[A-Za-z0-9_\\-=@,.;]`, at most 164), and the user
        channels `#server-to-user-<id>`: the names its HTTP API takes too."""
        return auth.valid_pusher_channel(channel)

    def refuse_client_event(
        self, session: Session, channel: str, event: str, data: typing.Any
    ) -> tuple[int, str] | None:
        """Pusher's rules ("Triggering Channel Client Events" in its protocol)."""
        if not event.startswith(CLIENT_PREFIX):
            return UNAUTHORIZED, "client event names must start with client-"
        kind = auth.channel_kind(channel)
        if kind not in (auth.PRIVATE, auth.PRESENCE) or auth.is_encrypted(channel):
            return UNAUTHORIZED, "client events need a private or presence channel"
        app = session.app
        if not app.client_events:
            return UNAUTHORIZED, "client events are not enabled for this app"
        if len(encode_data(data).encode("utf-8")) > app.max_payload:
            return OTHER_ERROR, "client event payload over %d bytes" % app.max_payload
        return None


PUSHER_RULES = PusherRules()


class PusherDialect(Dialect):
    """Pusher protocol 7: the messages pusher-js and the other Pusher clients read."""

    name = "pusher"
    rules = PUSHER_RULES
    # no `pusher:latest` (a Pushi extension); `pusher:signin` is Pusher's
    commands = {
        "pusher_subscribe": "subscribe",
        "pusher_unsubscribe": "unsubscribe",
        "pusher_ping": "ping",
        "pusher_pong": "pong",
        "pusher_signin": "signin",
    }

    def connected(self, socket_id: str, activity_timeout: int = 120) -> dict:
        """`pusher:connection_established` with the socket id and the activity
        timeout after which the client should ping a silent server."""
        data = dumps({"socket_id": socket_id, "activity_timeout": activity_timeout})
        return {"event": "pusher:connection_established", "data": data}

    def subscribed(self, channel: str, info: dict) -> dict:
        """`pusher_internal:subscription_succeeded`: presence's members, else `{}`."""
        if auth.channel_kind(channel) == auth.PRESENCE:
            members = info["members"]
            data = {
                "presence": {
                    "ids": list(members),
                    "hash": {
                        uid: (cd or {}).get("user_info") for uid, cd in members.items()
                    },
                    "count": len(members),
                }
            }
        else:
            data = {}
        return {
            "event": "pusher_internal:subscription_succeeded",
            "channel": channel,
            "data": dumps(data),
        }

    def unsubscribed(self, channel: str, info: dict) -> None:
        """Pusher answers no unsubscription."""
        return None

    def latest(self, channel: str, info: dict) -> None:
        """Not part of the Pusher dialect (never asked)."""
        return None

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """`pusher_internal:member_added` with the user and its `user_info`."""
        data: dict = {"user_id": user_id}
        if isinstance(channel_data, dict) and "user_info" in channel_data:
            data["user_info"] = channel_data["user_info"]
        return self._internal("pusher_internal:member_added", channel, data)

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> dict:
        """`pusher_internal:member_removed` with the user's id only."""
        return self._internal(
            "pusher_internal:member_removed", channel, {"user_id": user_id}
        )

    def error(self, code: int, message: str, channel: str | None = None) -> dict:
        """`pusher:error` as Pusher sends it: `{code, message}`, no channel."""
        return {"event": "pusher:error", "data": {"code": code, "message": message}}

    def subscription_error(
        self, code: int, message: str, channel: str | None = None
    ) -> dict:
        """A refused authorisation is `pusher:subscription_error` on the channel
        (`type`, `error`, `status`, as pusher-js reports them); any other
        refusal of a subscription is a `pusher:error`."""
        if code != UNAUTHORIZED or channel is None:
            return self.error(code, message, channel)
        return {
            "event": "pusher:subscription_error",
            "channel": channel,
            "data": {"type": "AuthError", "error": message, "status": 401},
        }

    def signed_in(self, user_data: str) -> dict:
        """`pusher:signin_success` with the user data the client sent."""
        return {"event": "pusher:signin_success", "data": {"user_data": user_data}}

    def cache_miss(self, channel: str) -> dict:
        """`pusher:cache_miss`: a cache channel had nothing to replay."""
        return {"event": "pusher:cache_miss", "channel": channel}

    def ping(self) -> dict | None:
        """The server's liveness probe of a silent connection."""
        return {"event": "pusher:ping", "data": {}}

    @staticmethod
    def _internal(event: str, channel: str, data: dict) -> dict:
        return {"event": event, "channel": channel, "data": dumps(data)}


PUSHER = PusherDialect()


def parse_protocol(query: dict[str, list[str]]) -> tuple[int, str] | None:
    """Pusher's refusal of a connection's protocol version: `(code, message)` or None.

    4008 without a `protocol` parameter, 4007 for one that is not 5, 6 or 7.
    """
    values = query.get("protocol")
    if not values or not values[0]:
        return NO_PROTOCOL, "no protocol version supplied"
    try:
        version = int(values[0])
    except ValueError:
        return UNSUPPORTED_PROTOCOL, "unsupported protocol version"
    if version not in PROTOCOLS:
        return UNSUPPORTED_PROTOCOL, "unsupported protocol version %d" % version
    return None
