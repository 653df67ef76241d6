"""Subscription: a user's persisted interest in a channel."""

from __future__ import annotations

import appier

from ...base import auth
from .base import PushiBase


def not_personal(name: str, message: str = "value is a personal channel"):
    """Validator: a personal channel cannot alias another (it would recurse)."""

    def validation(object, ctx) -> bool:
        value = object.get(name, None)
        if not isinstance(value, str) or not value.startswith("personal-"):
            return True
        raise appier.ValidationInternalError(name, message)

    return validation


def channel_name(name: str, message: str, prefix: str = ""):
    """Validator: `prefix + value` must be a channel name clients can join."""

    def validation(object, ctx) -> bool:
        value = object.get(name, None)
        if value is None or value == "":
            return True  # not_null and not_empty say what is wrong
        if isinstance(value, str) and auth.valid_channel(prefix + value):
            return True
        raise appier.ValidationInternalError(name, message)

    return validation


class Subscription(PushiBase):
    """User `user_id` of an app follows channel `event` through its personal channel.

    The model's hooks tell State, so a subscription made or removed anywhere
    (the REST API, the back-office) applies at once to the user's sockets.
    """

    user_id = appier.field(index=True)
    event = appier.field(index=True)

    compound = (
        (("instance", 1), ("user_id", 1), ("event", 1)),
        (("instance", 1), ("user_id", 1), ("id", 1)),
        (("instance", 1), ("event", 1)),
        (("instance", 1), ("id", 1)),
    )

    @classmethod
    def validate(cls) -> list:
        """Both halves of the pair are required, and must name channels."""
        return super().validate() + [
            appier.not_null("user_id"),
            appier.not_empty("user_id"),
            channel_name(
                "user_id", "value cannot name a personal channel", "personal-"
            ),
            appier.not_null("event"),
            appier.not_empty("event"),
            channel_name("event", "value is not a channel name"),
            not_personal("event"),
        ]

    @classmethod
    def list_names(cls) -> list[str]:
        """Columns of the back-office listing."""
        return ["user_id", "event"]

    def pre_update(self) -> None:
        """A changed pair first leaves the user's sockets as it was."""
        super().pre_update()
        previous = self.__class__.get(id=self.id, raise_e=False)
        if previous is not None:
            previous._tell("subscription_removed")

    def post_create(self) -> None:
        """The user's connected personal sockets join the channel."""
        super().post_create()
        self._tell("subscription_added")

    def post_update(self) -> None:
        """The changed pair reaches the user's sockets."""
        super().post_update()
        self._tell("subscription_added")

    def post_delete(self) -> None:
        """The user's connected personal sockets leave the channel."""
        super().post_delete()
        self._tell("subscription_removed")

    def _tell(self, name: str) -> None:
        self.tell_state(name, self.instance, self.user_id, self.event)
