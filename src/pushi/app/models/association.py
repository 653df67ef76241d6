"""Association: an event stored for a user's personal channel."""

from __future__ import annotations

import appier

from .base import PushiBase


class Association(PushiBase):
    """Links user `user_id` to event `mid` (id: the event's, for newest-first order)."""

    app_id = appier.field(index=True)
    user_id = appier.field()
    mid = appier.field(index=True)

    compound = ((("app_id", 1), ("user_id", 1), ("id", -1)),)
