"""Subscription: a user's persisted interest in a channel."""

from __future__ import annotations

import appier

from .base import PushiBase


class Subscription(PushiBase):
    """User `user_id` of an app follows channel `event` through its personal channel."""

    app_id = appier.field(index=True)
    user_id = appier.field(index=True)
    event = appier.field(index=True)

    compound = (
        (("app_id", 1), ("user_id", 1), ("event", 1)),
        (("app_id", 1), ("event", 1)),
    )

    @classmethod
    def validate(cls) -> list:
        """Both halves of the pair are required and bounded."""
        return super().validate() + [
            appier.not_empty("user_id"),
            appier.not_empty("event"),
            appier.string_lt("user_id", 201),
            appier.string_lt("event", 201),
        ]

    def public(self) -> dict:
        """The JSON shape returned by the REST API."""
        return dict(user_id=self.user_id, event=self.event)
