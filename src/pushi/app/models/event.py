"""PushiEvent: one persisted event, as it was delivered."""

from __future__ import annotations

import appier

from .base import PushiBase

FIELDS = ("channel", "event", "data", "mid", "timestamp")


class PushiEvent(PushiBase):
    """A stored event of an app's channel, kept for `latest` and offline users."""

    app_id = appier.field(index=True)
    mid = appier.field(index=True)
    channel = appier.field()
    event = appier.field()
    data = appier.field()
    timestamp = appier.field(type=float)
    extra = appier.field(type=dict)

    compound = (
        (("app_id", 1), ("channel", 1), ("id", -1)),
        (("app_id", 1), ("id", -1)),
    )

    @classmethod
    def document(cls, app_id: str, ident: int, message: dict) -> dict:
        """The stored form of a delivered message."""
        extra = {k: v for k, v in message.items() if k not in FIELDS}
        document = {name: message.get(name) for name in FIELDS}
        document.update(app_id=app_id, id=ident, extra=extra)
        return document

    @staticmethod
    def message(document: dict) -> dict:
        """The delivered form of a stored event."""
        message = dict(document.get("extra") or {})
        message.update({name: document.get(name) for name in FIELDS})
        return message
