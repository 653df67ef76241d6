"""What State tells the world about an app's channels: the observer seam.

State calls one `Observer` (webhooks today; handlers or metrics could follow) at
the moments Pusher's webhooks name: a channel's first socket and its last, a
presence user's first socket and its last, a relayed client event, a cache
channel found empty. Calls happen on the event loop, inside State's dispatch:
an observer only records what it is told (a bounded queue, a counter) and
never blocks, never calls back into State and never raises.

State tells it only about apps that have webhooks (`AppState.webhooks`): that
one attribute check is all the other apps pay.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from .channels import AppState


class Observer:
    """An observer of State's channel events; this base ignores them all.

    `app` is the live app (loop-owned: read it during the call, keep no
    reference to its channels), `channel` a channel name.
    """

    def channel_occupied(self, app: AppState, channel: str) -> None:
        """A channel got its first socket (either dialect, any reason)."""

    def channel_vacated(self, app: AppState, channel: str) -> None:
        """A channel lost its last socket."""

    def member_added(self, app: AppState, channel: str, user_id: str) -> None:
        """A user's first socket joined a presence channel as a member."""

    def member_removed(self, app: AppState, channel: str, user_id: str) -> None:
        """A user's last socket left a presence channel."""

    def client_event(
        self,
        app: AppState,
        channel: str,
        event: str,
        data: typing.Any,
        socket_id: str,
        user_id: str | None,
    ) -> None:
        """A client event was relayed; `data` as the client sent it (not yet
        encoded), `user_id` the sender's in a presence channel, else None."""

    def cache_miss(self, app: AppState, channel: str) -> None:
        """A subscription to a cache channel found no event to replay."""


NO_OBSERVER = Observer()
""" The observer of a State nobody observes """
