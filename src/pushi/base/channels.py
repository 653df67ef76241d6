"""Live state of one app: its channels, their sockets and presence members."""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from .session import Session


DEFAULT_MAX_PAYLOAD = 10240
""" Bytes of an event payload an app accepts unless it says otherwise (Pusher's) """


class Channel:
    """One channel of one app: who is joined and, for presence, who is present."""

    __slots__ = ("members", "name", "sessions", "version")

    def __init__(self, name: str) -> None:
        self.name = name
        # insertion-ordered dict used as an ordered set: O(1) join/leave/lookup
        self.sessions: dict[str, Session] = {}
        # presence only: user_id -> Member
        self.members: dict[str, Member] = {}
        # personal only: bumped by every subscription change of the user, so an
        # alias load that started before a change knows it is stale
        self.version = 0

    def __len__(self) -> int:
        return len(self.sessions)


class Member:
    """A presence member: one user, possibly on several sockets."""

    __slots__ = ("user_id", "channel_data", "sockets")

    def __init__(self, user_id: str, channel_data: dict) -> None:
        self.user_id = user_id
        # the channel_data of the user's latest connection
        self.channel_data = channel_data
        # socket ids, in join order (an ordered set)
        self.sockets: dict[str, None] = {}


class AppState:
    """The live state of one app: credentials, settings, channels and sockets.

    `app_id` is the numeric id the Pusher HTTP API names the app by; the
    settings after it are those of the Pusher dialect and HTTP API (per app,
    Pusher's defaults): client events allowed, the largest event payload in
    bytes, whether Pusher-API publishes are stored, and the webhooks wanted.
    """

    __slots__ = (
        "ident",
        "key",
        "secret",
        "name",
        "app_id",
        "client_events",
        "max_payload",
        "persist",
        "webhooks",
        "channels",
        "personal",
        "sessions",
    )

    def __init__(self, ident: str, key: str, secret: str, name: str = "") -> None:
        self.ident = ident
        self.key = key
        self.secret = secret
        self.name = name
        self.app_id = ""
        self.client_events = True
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self.persist = False
        self.webhooks: list[dict] = []
        self.channels: dict[str, Channel] = {}
        # personal-<user_id> -> its subscribed sockets; apart from `channels`
        # because a personal channel is never joined itself: nothing published
        # on its name reaches anyone
        self.personal: dict[str, Channel] = {}
        self.sessions: dict[str, Session] = {}

    def channel(self, name: str) -> Channel:
        """The channel of that name, created on first use."""
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(name)
        return channel

    def personal_channel(self, name: str) -> Channel:
        """The personal channel of that name, created on first use."""
        channel = self.personal.get(name)
        if channel is None:
            channel = self.personal[name] = Channel(name)
        return channel

    def discard_if_empty(self, channel: Channel) -> None:
        """Forgets a channel nobody is joined to, so idle names cost nothing."""
        if not channel.sessions and not channel.members:
            registry = self.personal if channel.name in self.personal else self.channels
            if registry.get(channel.name) is channel:
                del registry[channel.name]
