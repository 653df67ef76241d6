"""Subscriptions: which channels reach a user's personal channel."""

from __future__ import annotations

import appier

from ...base import auth
from ..models import Subscription
from .base import PushiController


class SubscriptionsController(PushiController):
    """Persisted `(user_id, event)` pairs, applied live to connected users."""

    @appier.route("/subscriptions", "POST", json=True)
    def create(self):
        """Subscribes a user to a channel (idempotent)."""
        return self._subscribe(self.session_app(), self.body())

    @appier.route("/apps/<str:ident>/subscribe", ("GET", "POST"), json=True)
    def create_legacy(self, ident):
        """The same as `POST /subscriptions`, as the seed README names it."""
        return self._subscribe(self.own_app(ident), self.body())

    @appier.route("/subscriptions", "GET", json=True)
    def list(self):
        """Subscriptions of the app, filtered by `user_id` and/or `event`."""
        query = {"app_id": self.session_app()}
        for name in ("user_id", "event"):
            value = self.field(name)
            if value:
                query[name] = value
        count = self.integer(self.field("count"), 100, 1, 1000)
        skip = self.integer(self.field("skip"), 0, 0, 10**9)
        found = Subscription.find(skip=skip, limit=count, sort=[("id", 1)], **query)
        return [subscription.public() for subscription in found]

    @appier.route(
        "/subscriptions/<regex('[^/]+'):user_id>/<regex('[^/]+'):event>",
        "DELETE",
        json=True,
    )
    def delete(self, user_id, event):
        """Unsubscribes a user from a channel."""
        return self._unsubscribe(self.session_app(), user_id, event)

    @appier.route("/apps/<str:ident>/unsubscribe", ("GET", "POST"), json=True)
    def delete_legacy(self, ident):
        """The same as the DELETE route, as the seed README names it."""
        user_id, event = self.required(self.body(), "user_id", "event")
        return self._unsubscribe(self.own_app(ident), user_id, event)

    def _subscribe(self, app_id: str, fields: dict) -> dict:
        user_id, event = self.required(fields, "user_id", "event")
        self._check(user_id, event)
        found = Subscription.get(
            app_id=app_id, user_id=user_id, event=event, raise_e=False
        )
        if found is None:
            found = Subscription(app_id=app_id, user_id=user_id, event=event)
            found.save()
        state = self.owner.state
        state.call(state.subscription_added, app_id, user_id, event)
        return found.public()

    def _unsubscribe(self, app_id: str, user_id: str, event: str) -> dict:
        self._check(user_id, event)
        found = Subscription.find(app_id=app_id, user_id=user_id, event=event)
        if not found:
            raise appier.AppierException(message="subscription not found", code=404)
        for subscription in found:
            subscription.delete()
        state = self.owner.state
        state.call(state.subscription_removed, app_id, user_id, event)
        return dict(user_id=user_id, event=event, deleted=True)

    @staticmethod
    def _check(user_id: str, event: str) -> None:
        if not auth.valid_channel(event) or not auth.valid_channel(
            "personal-" + user_id
        ):
            raise appier.AppierException(message="invalid user_id or event", code=400)
        if auth.channel_kind(event) not in (auth.PUBLIC, auth.PRIVATE):
            # presence needs a member of its own, personal and peer channels are
            # per user: none of them can be another channel's alias
            raise appier.AppierException(
                message="only public and private- channels can be subscribed",
                code=400,
            )
