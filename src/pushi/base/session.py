"""What State knows of one connected socket, and what it asks of its transport."""

from __future__ import annotations

import time
import typing

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
    """What a connection offers State: semantic replies, shaped by its dialect."""

    def deliver(self, outgoing: Outgoing) -> None:
        """Writes an already encoded event shared by every recipient."""

    def subscribed(self, channel: str, info: dict) -> None:
        """Reports a successful subscription (`members`, `alias`, `events`)."""

    def unsubscribed(self, channel: str) -> None:
        """Reports that the socket left a channel it asked to leave."""

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a user's first socket joining a presence channel."""

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a user's last socket leaving a presence channel."""

    def latest(self, channel: str, events: list[dict]) -> None:
        """Answers a `pusher:latest` request."""

    def error(self, code: int, message: str, channel: str | None = None) -> None:
        """Reports a refused request without closing the connection."""


class RateLimit:
    """A token bucket: `rate` actions a second, bursts up to `rate`."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        """Takes a token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
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
        "users",
        "peers",
        "client_events",
        "open",
        "reads",
        "requests",
    )

    def __init__(
        self,
        socket_id: str,
        app: AppState,
        transport: Transport,
        rate: int,
        request_rate: int,
    ) -> None:
        self.socket_id = socket_id
        self.app = app
        self.transport = transport
        # channel -> reasons it is joined: DIRECT, a personal channel (alias)
        # or a presence channel (peer); left when no reason remains
        self.channels: dict[str, set[str]] = {}
        # presence channel -> user id this socket joined it as
        self.users: dict[str, str] = {}
        # presence channel -> peer channels joined through it
        self.peers: dict[str, set[str]] = {}
        self.client_events = RateLimit(rate)
        # subscribe, unsubscribe and latest: each may cost a database read
        self.requests = RateLimit(request_rate)
        self.reads = 0  # store reads in flight for this socket
        self.open = True

    def joined(self, channel: str) -> bool:
        """Whether the socket receives the channel's events, for any reason."""
        return channel in self.channels

    def describe(self) -> dict:
        """A JSON-ready summary for the REST `/sockets` routes."""
        return {
            "socket_id": self.socket_id,
            "channels": sorted(self.channels),
            "users": dict(self.users),
        }
