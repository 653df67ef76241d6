"""PushiEvent: one stored event, as it was delivered."""

from __future__ import annotations

import appier

from .base import PushiBase

STAMPS = ("mid", "timestamp")
""" Keys the store adds to a delivered message; the record keeps them apart """


class PushiEvent(PushiBase):
    """A stored event of an app's channel, kept for `latest` and offline users.

    `data` is the delivered message without `mid` and `timestamp` (those are
    fields of their own), so it reads `{"data": ..., "channel": ..., "event": ...}`
    plus whatever else the publisher sent.
    """

    mid = appier.field(index=True, immutable=True)
    channel = appier.field(index=True, immutable=True)
    owner_id = appier.field(immutable=True)
    timestamp = appier.field(type=float, immutable=True)
    data = appier.field(type=dict, immutable=True)

    # written for every stored event: the admin base's indexes on these (in
    # every direction, on MongoDB) would cost each write B-tree inserts that
    # no query of Pushi uses
    unindexed = ("enabled", "created", "modified")

    compound = (
        (("instance", 1), ("channel", 1), ("id", -1)),
        (("instance", 1), ("id", -1)),
    )

    @classmethod
    def validate(cls) -> list:
        """What makes a record an event."""
        return super().validate() + [
            appier.not_null("mid"),
            appier.not_empty("mid"),
            appier.not_null("channel"),
            appier.not_empty("channel"),
            appier.not_null("timestamp"),
        ]

    @classmethod
    def list_names(cls) -> list[str]:
        """Columns of the back-office listing."""
        return ["mid", "channel", "owner_id", "timestamp"]

    @classmethod
    def document(cls, common: dict, message: dict, owner_id: str | None = None) -> dict:
        """The stored record of a delivered message (common fields given)."""
        document = dict(common)
        document.update(
            mid=message["mid"],
            channel=message["channel"],
            owner_id=owner_id,
            timestamp=message["timestamp"],
            data={k: v for k, v in message.items() if k not in STAMPS},
        )
        return document
