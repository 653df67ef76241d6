"""Events: publishing from back ends and reading what was stored.

A persisted `POST /events` answers once its event is committed: the controller
queues the event and leaves its storage ticket in the WSGI environ, and the
`Acknowledging` layer (`pushi.app.acknowledge`) holds the answer until then.
"""

from __future__ import annotations

import logging
import typing

import appier

from ...base import auth
from ...base.state import StateError
from ..acknowledge import TICKET
from ..models import PushiEvent
from .base import PushiController

LOGGER = logging.getLogger("pushi")

MAX_CHANNELS = 100
""" Channels one publish may name """

COUNT_DEFAULT, COUNT_MOST = 10, 100
""" `GET /events?count=`: default and bound (clamped to 1..100, contract §4.10) """


class EventsController(PushiController):
    """`POST /events` publishes through State; `GET /events` reads the store."""

    @appier.route("/events", "POST", json=True)
    def create(self):
        """Publishes `data` as `event` on `channel` (a name or a list of names).

        The body is JSON only and is delivered whole, with `channel`, `event`
        and `data` set, as the published server does. Answers `{"result":
        "success"}` once the event is delivered and, with `persist` (the
        default), committed to the store (see `Acknowledging`); a full store
        queue is a 503 and the event is neither delivered nor stored.
        """
        app_id = self.session_app()
        body = self._publish_body()
        channels, event, data, persist = publish_fields(body)
        state = self.owner.state
        try:
            ticket = state.call(
                state.publish, app_id, channels, event, data, body, persist
            )
        except StateError:
            raise appier.NotFoundError(message="App not found", code=404) from None
        if ticket is not None:
            self.request.environ[TICKET] = ticket

    @appier.route("/events", "GET", json=True)
    def list(self):
        """`{"events": [...]}`: the app's stored event records, newest first.

        `count` (default 10) is clamped to 1..100; `skip` and `channel` are
        additions of this project (the published server ignores them).
        """
        app_id = self.session_app()
        count = self.integer(self.field("count"), COUNT_DEFAULT, 1, COUNT_MOST)
        skip = self.integer(self.field("skip"), 0, 0, 10**9)
        query = dict(instance=app_id)
        channel = self.field("channel")
        if channel:
            query["channel"] = channel
        # storage is asynchronous and in publish order: reading on the store
        # worker orders this read after every event published before it
        store = self.owner.store
        found = store.call(_find_events, query, skip, count)
        return dict(events=found)

    def _publish_body(self) -> dict:
        """The JSON object body of a publish (anything else has no data)."""
        content_type = self.request.get_header("Content-Type") or "application/json"
        if "json" not in content_type:
            return {}
        return self.json_body()


def publish_fields(body: dict) -> tuple[list[str], str, typing.Any, bool]:
    """The channels, event name, data and persist flag of a publish body.

    :raises appier.OperationalError: 400 for what the body may not be: no (or
        falsy) `data`, a caller's `mid` or `timestamp`, a bad channel or event.
    """
    data = body.get("data")
    if not data:
        raise appier.OperationalError(message="No data set for event", code=400)
    for stamp in ("mid", "timestamp"):
        if stamp in body:
            # the server stamps stored events: a caller's stamp would be
            # relayed as if the event had been stored
            raise appier.OperationalError(
                message="Reserved key in event: %s" % stamp, code=400
            )
    channels = _channels(body.get("channel"))
    event = body.get("event", "message")
    if not isinstance(event, str) or not event:
        raise appier.OperationalError(
            message="Event name must be a non-empty string", code=400
        )
    return channels, event, data, bool(body.get("persist", True))


def _channels(channel) -> list[str]:
    if not channel:
        # as published: no channel, an empty name or an empty list is global
        return ["global"]
    channels = channel if isinstance(channel, list) else [channel]
    if len(channels) > MAX_CHANNELS:
        raise appier.OperationalError(
            message="Expected at most %d channels" % MAX_CHANNELS, code=400
        )
    for name in channels:
        if not auth.valid_channel(name):
            shown = repr(name)[:80]
            raise appier.OperationalError(
                message="Invalid channel name: %s" % shown, code=400
            )
    return channels


def _find_events(query: dict, skip: int, count: int) -> list[dict]:
    """Event records as the REST API answers them (with `_id`)."""
    found = PushiEvent.find(skip=skip, limit=count, sort=[("id", -1)], **query)
    return [event.record() for event in found]
