"""Subscriptions: which channels reach a user's personal channel."""

from __future__ import annotations

import appier

from ..models import Subscription
from .base import PushiController


class SubscriptionsController(PushiController):
    """Persisted `(user_id, event)` pairs; the model's hooks tell State."""

    @appier.route("/subscriptions", "POST", json=True)
    def create(self):
        """Subscribes a user to a channel: the record (the existing one if known)."""
        return self._subscribe(self.session_app(), self.fields())

    @appier.route("/apps/<str:ident>/subscribe", ("GET", "POST"), json=True)
    def create_seed(self, ident):
        """The same as `POST /subscriptions` (a route of this project's seed)."""
        return self._subscribe(self._own(ident), self.fields())

    @appier.route("/subscriptions", "GET", json=True)
    def list(self):
        """`{"subscriptions": [...]}` of the app, by `user_id` and/or `event`.

        All of them, oldest first, as published; `skip` and `count` page
        (additions of this project).
        """
        query = dict(instance=self.session_app())
        for name in ("user_id", "event"):
            value = self.field(name)
            if value:
                query[name] = value
        skip = self.integer(self.field("skip"), 0, 0, 10**9)
        count = self.integer(self.field("count"), 0, 0, 10**9)
        found = Subscription.find(skip=skip, limit=count, sort=[("id", 1)], **query)
        return dict(subscriptions=[subscription.record() for subscription in found])

    @appier.route(
        r"/subscriptions/<user_id>/<regex('[\.\w-]+'):event>", "DELETE", json=True
    )
    def delete(self, user_id, event):
        """Unsubscribes a user: the deleted record; a missing one is a success,
        or a 404 with `force=1`."""
        force = self.field("force", False, cast=bool)
        return self._unsubscribe(self.session_app(), user_id, event, force)

    @appier.route("/apps/<str:ident>/unsubscribe", ("GET", "POST"), json=True)
    def delete_seed(self, ident):
        """The same as the DELETE route (a route of this project's seed)."""
        app_id = self._own(ident)
        fields = self.fields()
        force = self.field("force", False, cast=bool)
        user_id, event = fields.get("user_id"), fields.get("event")
        return self._unsubscribe(app_id, user_id, event, force)

    def _own(self, ident: str) -> str:
        """The session's app, when `ident` names it (else a 404)."""
        app_id = self.session_app()
        if ident != app_id:
            raise appier.NotFoundError(message="App not found", code=404)
        return app_id

    @staticmethod
    def _subscribe(app_id: str, fields: dict) -> dict:
        user_id, event = _text(fields.get("user_id")), _text(fields.get("event"))
        found = None
        if isinstance(user_id, str) and isinstance(event, str):
            found = Subscription.get(
                instance=app_id, user_id=user_id, event=event, raise_e=False
            )
        if found is None:
            found = Subscription(instance=app_id, user_id=user_id, event=event)
            found.save()  # validates: 400 with errors.user_id / errors.event
        return found.record()

    @staticmethod
    def _unsubscribe(app_id: str, user_id, event, force: bool):
        found = None
        if isinstance(user_id, str) and isinstance(event, str):
            found = Subscription.get(
                instance=app_id, user_id=user_id, event=event, raise_e=False
            )
        if found is None:
            if force:
                raise appier.NotFoundError(message="Subscription not found", code=404)
            return None
        found.delete()
        return found.record()


def _text(value):
    """A request value as the model keeps it: numbers as their digits."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value
