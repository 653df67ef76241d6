"""Association: an event stored for a user's personal channel."""

from __future__ import annotations

import appier

from .base import PushiBase


class Association(PushiBase):
    """Links user `user_id` to the event `mid`, made when the event was stored.

    A user's personal history is their associations, newest first: events
    stored before they subscribed are absent, and associated ones survive the
    subscription's deletion.
    """

    user_id = appier.field(index=True, immutable=True)
    mid = appier.field(index=True, immutable=True)

    # written for every stored event: the admin base's indexes on these (in
    # every direction, on MongoDB) would cost each write B-tree inserts that
    # no query of Pushi uses
    unindexed = ("enabled", "created", "modified")

    compound = ((("instance", 1), ("user_id", 1), ("id", -1)),)

    @classmethod
    def validate(cls) -> list:
        """Both halves of the link are required."""
        return super().validate() + [
            appier.not_null("user_id"),
            appier.not_empty("user_id"),
            appier.not_null("mid"),
            appier.not_empty("mid"),
        ]

    @classmethod
    def list_names(cls) -> list[str]:
        """Columns of the back-office listing."""
        return ["user_id", "mid", "created"]

    @staticmethod
    def document(common: dict, user_id: str, mid: str) -> dict:
        """The stored record linking a user to an event (common fields given)."""
        document = dict(common)
        document.update(user_id=user_id, mid=mid)
        return document
