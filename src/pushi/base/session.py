"""What State knows of one connected socket, and what it asks of its transport."""

from __future__ import annotations

import time
import typing

from . import auth

if typing.TYPE_CHECKING:
    from .channels import AppState

DIRECT = "direct"
""" The reason recorded when a socket subscribed to a channel itself """


class Outgoing:
    """One message for many sockets: encoded once, framed once by the first writer."""

    __slots__ = ("text", "frame")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.frame: bytes | None = None


class Transport(typing.Protocol):
    """What a connection offers State: semantic replies, shaped by its dialect.

    `info` of the channel replies always holds `members` (presence: user_id ->
    channel_data), `alias` (personal: aliased channels) and `events` (records).
    A transport never closes its connection from inside one of these calls:
    `drop` asks for a close after the current dispatch (see design.md).
    """

    def deliver(self, outgoing: Outgoing) -> None:
        """Writes an already encoded event shared by every recipient."""

    def subscribed(self, channel: str, info: dict) -> None:
        """Reports a successful subscription."""

    def unsubscribed(self, channel: str, info: dict) -> None:
        """Reports that the socket left a channel (the state after leaving)."""

    def latest(self, channel: str, info: dict) -> None:
        """Answers a `pusher:latest` request (`info["events"]`: the page)."""

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a user's first socket joining a presence channel."""

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a user's last socket leaving a presence channel."""

    def error(self, code: int, message: str, channel: str | None = None) -> None:
        """Reports a refused request without closing the connection."""

    def drop(self) -> None:
        """Closes the connection once the current dispatch is over."""

    # the Pusher dialect's replies (State calls them only for sessions whose
    # Rules ask for them: a Pushi transport need not have them)

    def subscription_error(self, code: int, message: str, channel: str | None) -> None:
        """Reports a refused subscription (`Rules.refused_subscription`)."""

    def signed_in(self, user_data: str) -> None:
        """Confirms a `pusher:signin`; `user_data` as the client sent it."""

    def cache_miss(self, channel: str) -> None:
        """Tells a cache channel's new subscriber that nothing is cached."""

    def terminate(self, code: int, message: str) -> None:
        """Closes the connection with a close code, after the current dispatch."""


class Rules:
    """What State asks a session's dialect: the rules that differ between dialects.

    State stays the one router; where the dialects' rules differ it asks the
    session's Rules instead of branching on a dialect. These defaults are the
    Pushi dialect's (pushi-contract.md): uuid4 socket ids, Pushi channel names,
    any client event name on any joined channel, echo and persistence as the
    frame asks, refusals as `pusher:error`. The Pusher dialect subclasses it
    (net/dialects/pusher.py).
    """

    name = "pushi"
    # the Transport method a refused subscription is reported through
    refused_subscription = "error"
    # whether `cache-` channels replay their last event on subscribe
    cache_channels = False
    # client events: echo on request, stored on request, sender's user_id added
    echo_client_events = True
    persist_client_events = True
    client_user_id = False
    # client events a second (None: the process's PUSHI_CLIENT_EVENT_RATE)
    client_event_rate: int | None = None

    def new_socket_id(self) -> str:
        """A fresh random socket id (State retries the rare collision)."""
        return auth.new_socket_id()

    def valid_channel(self, channel: object) -> bool:
        """Whether a value is a channel name this dialect accepts."""
        return auth.valid_channel(channel)

    def refuse_client_event(
        self, session: "Session", channel: str, event: str, data: typing.Any
    ) -> tuple[int, str] | None:
        """`(code, message)` when a client event on a joined channel is refused.

        State has checked the name is no protocol event and the socket joined
        the channel; this adds the dialect's own rules (None: accepted).
        """
        return None


PUSHI_RULES = Rules()
""" The Pushi dialect's rules, the default of every session """


class RateLimit:
    """A token bucket: `rate` actions a second, bursts up to `burst` (`rate`)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: int, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = max(rate, burst or 0)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        """Takes a token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One socket of one app as State sees it: memberships and identity."""

    __slots__ = (
        "socket_id",
        "app",
        "transport",
        "channels",
        "personal",
        "users",
        "channel_data",
        "peers",
        "direct",
        "client_events",
        "open",
        "reads",
        "requests",
        "rules",
        "user_id",
    )

    def __init__(
        self,
        socket_id: str,
        app: AppState,
        transport: Transport,
        rate: int,
        request_rate: int,
        request_burst: int | None = None,
        rules: Rules = PUSHI_RULES,
    ) -> None:
        self.socket_id = socket_id
        self.app = app
        self.transport = transport
        # channel -> reasons it is joined: DIRECT, a personal channel (alias)
        # or a presence channel (peer); left when no reason remains. Insertion
        # order is join order, which `/sockets` reports
        self.channels: dict[str, set[str]] = {}
        # personal channels subscribed (never joined themselves), in order
        self.personal: dict[str, None] = {}
        # presence channel -> user id this socket is a member as
        self.users: dict[str, str] = {}
        # presence channel -> this socket's channel_data there
        self.channel_data: dict[str, dict] = {}
        # presence channel -> peer channels joined through it
        self.peers: dict[str, set[str]] = {}
        # channels in `channels` with DIRECT among their reasons (kept by State)
        self.direct = 0
        self.client_events = RateLimit(rate)
        # subscribe, unsubscribe and latest: each may cost a database read
        self.requests = RateLimit(request_rate, request_burst)
        self.reads = 0  # store reads in flight for this socket
        self.open = True
        # the rules of the socket's dialect, and the user it signed in as
        # (`pusher:signin`; None until then)
        self.rules = rules
        self.user_id: str | None = None

    def joined(self, channel: str) -> bool:
        """Whether the socket receives the channel's events, for any reason."""
        return channel in self.channels

    def subscriptions(self) -> int:
        """Channels the socket subscribed to itself (the per-socket limit), O(1)."""
        return self.direct + len(self.personal)

    def peer_channels(self) -> int:
        """Peer channels the socket is in, through all its presence channels."""
        return sum(map(len, self.peers.values()))

    def describe(self) -> dict:
        """A JSON-ready summary for the REST `/sockets` routes."""
        return {"socket_id": self.socket_id, "channel": list(self.channels)}
