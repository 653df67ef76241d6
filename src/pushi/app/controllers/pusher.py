"""The Pusher HTTP API: what the `pusher` server SDKs call, on the API port.

Every route is under `/apps/<app_id>/` with the app's numeric `app_id` (an
ident is 64 hex characters, so these never meet the Pushi REST routes
`/apps/<ident>`), and every request is signed as Pusher signs it (see
`pushi.base.auth.verify_api_request`). Refusals are Appier's JSON error body:
401 for a bad signature, 400 for bad input, 413 for a payload over the app's
`max_payload`, 404 for an unknown app id.

Events published here reach both dialects' sockets as `{"event", "channel",
"data"}` (`data` the string as sent). They are stored only when the app's
`persist` setting says so; then the answer waits for the commit as a persisted
`POST /events` does (`pushi.app.acknowledge`).
"""

from __future__ import annotations

import re
import threading
import time
import typing
import urllib.parse

import appier

from ...base import auth
from ...base.state import StateError, is_system_event
from ...store.worker import Ticket
from ..acknowledge import TICKET
from ..models import App
from .base import PushiController

MAX_CHANNELS = 100
""" Channels one event may go to (Pusher's limit) """
MAX_BATCH = 10
""" Events one `batch_events` call may carry (Pusher's limit) """
MAX_EVENT_NAME = 200
""" Characters of an event name, at most (Pusher's limit) """
USER_ID = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,200}")
""" A user id (the Pusher SDKs' rule: channel-name characters, at most 200) """
MAX_SOCKET_ID = 100
""" Characters of an excluded `socket_id`, at most """
ATTRIBUTES = ("subscription_count", "user_count")
""" What `info` may ask for """

APP_ID = '<regex("[0-9]{1,20}"):app_id>'
CHANNEL = '<regex("[^/]+"):channel>'
USER = '<regex("[^/]+"):user_id>'


class PusherController(PushiController):
    """Pusher's HTTP API over State: publish, channel queries, terminate."""

    # -- events -----------------------------------------------------------------

    @appier.route("/apps/%s/events" % APP_ID, "POST", json=True)
    def trigger(self, app_id):
        """`POST /apps/<app_id>/events`: one event to one or more channels.

        Body: `name`, `data` (a string), `channels` (a list, at most 100) or
        `channel`, optional `socket_id` (that socket is left out) and `info`
        (`subscription_count`, `user_count`). Answers `{}`, or with `info`
        `{"channels": {name: {attributes}}}` as they are after the publish.
        """
        app, snapshot = self._signed(app_id)
        body = self._object_body()
        event = self._event(body, snapshot, many=True)
        state = self.owner.state

        def publish():
            ticket = self._publish(state, snapshot, event)
            return ticket, self._info_of(state, app, event)

        ticket, info = self._call(publish)
        self._hold(ticket)
        if event["info"] is None:
            return self._empty()
        return dict(channels=info)

    @appier.route("/apps/%s/batch_events" % APP_ID, "POST", json=True)
    def trigger_batch(self, app_id):
        """`POST /apps/<app_id>/batch_events`: `{"batch": [event, ...]}`, at
        most 10 events, each with one `channel`. All are checked before any
        is published. Answers `{}`, or when any event asks for `info`
        `{"batch": [{attributes}, ...]}` (one entry per event, in order)."""
        app, snapshot = self._signed(app_id)
        batch = self._object_body().get("batch")
        if not isinstance(batch, list) or not batch:
            raise _bad("batch must be a non-empty list of events")
        if len(batch) > MAX_BATCH:
            raise _bad("at most %d events in a batch" % MAX_BATCH)
        events = []
        for item in batch:
            if not isinstance(item, dict):
                raise _bad("each event of a batch must be an object")
            events.append(self._event(item, snapshot, many=False))
        state = self.owner.state

        def publish():
            tickets, infos = [], []
            for event in events:
                tickets.append(self._publish(state, snapshot, event))
                infos.append(self._info_of(state, app, event))
            return tickets, infos

        tickets, infos = self._call(publish)
        self._hold(_all_of([ticket for ticket in tickets if ticket is not None]))
        if all(event["info"] is None for event in events):
            return self._empty()
        # one entry per event: its only channel's attributes ({} without info)
        return dict(batch=[next(iter(info.values()), {}) for info in infos])

    # -- channels ---------------------------------------------------------------

    @appier.route("/apps/%s/channels" % APP_ID, "GET", json=True)
    def channels(self, app_id):
        """`GET /apps/<app_id>/channels`: the occupied channels.

        `filter_by_prefix` narrows them; `info` may ask for `user_count`
        (only with a `presence-` prefix, as Pusher) and `subscription_count`.
        Answers `{"channels": {name: {attributes}}}`.
        """
        app, _ = self._signed(app_id)
        prefix = self._param("filter_by_prefix") or ""
        attributes = self._attributes(self._param("info"))
        if "user_count" in attributes and not prefix.startswith("presence-"):
            raise _bad("user_count needs filter_by_prefix=presence-")
        state = self.owner.state
        found = self._call(lambda: state.occupied_channels(app, prefix))
        return dict(
            channels={
                name: _pick(counts, attributes, name) for name, counts in found.items()
            }
        )

    @appier.route("/apps/%s/channels/%s" % (APP_ID, CHANNEL), "GET", json=True)
    def channel(self, app_id, channel):
        """`GET /apps/<app_id>/channels/<name>`: `{"occupied": bool}` plus the
        `info` attributes asked for (`user_count`: presence channels only)."""
        app, _ = self._signed(app_id)
        self._channel_name(channel)
        attributes = self._attributes(self._param("info"))
        if "user_count" in attributes and not channel.startswith("presence-"):
            raise _bad("user_count is only for presence channels")
        state = self.owner.state
        counts = self._call(lambda: state.channel_counts(app, channel))
        return dict(occupied=counts["occupied"], **_pick(counts, attributes, channel))

    @appier.route("/apps/%s/channels/%s/users" % (APP_ID, CHANNEL), "GET", json=True)
    def users(self, app_id, channel):
        """`GET /apps/<app_id>/channels/<name>/users`: `{"users": [{"id"}]}`
        of a presence channel (any other kind is a 400)."""
        app, _ = self._signed(app_id)
        self._channel_name(channel)
        if not channel.startswith("presence-"):
            raise _bad("users are only listed for presence channels")
        state = self.owner.state
        found = self._call(lambda: state.presence_users(app, channel))
        return dict(users=[dict(id=user_id) for user_id in found])

    # -- users --------------------------------------------------------------------

    @appier.route(
        "/apps/%s/users/%s/terminate_connections" % (APP_ID, USER), "POST", json=True
    )
    def terminate(self, app_id, user_id):
        """`POST /apps/<app_id>/users/<user_id>/terminate_connections`: closes
        every connection signed in as that user. Answers `{}`."""
        app, _ = self._signed(app_id)
        self._terminate(app, user_id)
        return self._empty()

    @appier.route("/users/%s/terminate_connections" % USER, "POST", json=True)
    def terminate_keyed(self, user_id):
        """The same, for SDKs that leave `/apps/<app_id>` out of this path
        (the Python SDK 3.x): the app is the one whose key signed it."""
        key = self._param("auth_key") or ""
        found = App.get(key=key, rules=False, raise_e=False) if key else None
        if found is None or not found.app_id:
            raise appier.AppierException(message="Unknown auth_key", code=401)
        app, _ = self._signed(found.app_id)
        self._terminate(app, user_id)
        return self._empty()

    def _terminate(self, app, user_id: str) -> None:
        if not USER_ID.fullmatch(user_id):
            raise _bad("invalid user id")
        state = self.owner.state
        self._call(lambda: state.terminate_user(app, user_id))

    # -- requests -----------------------------------------------------------------

    def _signed(self, app_id: str) -> tuple:
        """The app of `app_id` once the request's signature checks (else 401).

        State knows every app of this process; an app another process made
        is read from the store and handed to State first.
        """
        state = self.owner.state
        found = self._call(lambda: state.pusher_app(app_id))
        if found is None:
            stored = App.get(app_id=app_id, rules=False, raise_e=False)
            if stored is not None:
                credentials = stored.credentials()
                found = self._call(
                    lambda: state.app_changed(credentials) or state.pusher_app(app_id)
                )
        if found is None:
            raise appier.NotFoundError(message="App not found", code=404)
        app, snapshot = found
        request = self.request
        params = urllib.parse.parse_qsl(request.query or "", keep_blank_values=True)
        reason = auth.verify_api_request(
            snapshot["key"],
            snapshot["secret"],
            request.method,
            request.path,
            params,
            request.get_data() or b"",
            time.time(),
        )
        if reason is not None:
            raise appier.AppierException(message=reason, code=401)
        return app, snapshot

    def _param(self, name: str) -> str | None:
        for key, value in urllib.parse.parse_qsl(
            self.request.query or "", keep_blank_values=True
        ):
            if key == name:
                return value
        return None

    def _object_body(self) -> dict:
        body = self.json_body()
        if not body:
            raise _bad("expected a JSON object body")
        return body

    def _call(self, function: typing.Callable):
        """Runs a function on State's loop; an unknown app is a 404."""
        state = self.owner.state
        try:
            return state.call(function)
        except StateError:
            raise appier.NotFoundError(message="App not found", code=404) from None

    def _empty(self) -> str:
        """Pusher's `{}` reply (Appier would answer an empty dict with
        `{"result": "success"}`), as JSON."""
        self.request.set_content_type("application/json")
        return "{}"

    def _hold(self, ticket: Ticket | None) -> None:
        """A stored publish answers once committed (`Acknowledging`)."""
        if ticket is not None:
            self.request.environ[TICKET] = ticket

    # -- checks -------------------------------------------------------------------

    def _event(self, body: dict, snapshot: dict, many: bool) -> dict:
        """One event of a request, checked by Pusher's rules (400 / 413)."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("name must be a non-empty string")
        if len(name) > MAX_EVENT_NAME:
            raise _bad("event name over %d characters" % MAX_EVENT_NAME)
        if is_system_event(name):
            raise _bad("event names starting pusher: are reserved")
        data = body.get("data")
        if not isinstance(data, str):
            raise _bad("data must be a string")
        if len(data.encode("utf-8")) > snapshot["max_payload"]:
            raise appier.OperationalError(
                message="data over %d bytes" % snapshot["max_payload"], code=413
            )
        channels = body.get("channels") if many else None
        if channels is None:
            channel = body.get("channel")
            if not isinstance(channel, str):
                what = "channels (a list) or channel" if many else "channel"
                raise _bad("%s is required" % what)
            channels = [channel]
        if not isinstance(channels, list) or not channels:
            raise _bad("channels must be a non-empty list")
        if len(channels) > MAX_CHANNELS:
            raise _bad("at most %d channels per event" % MAX_CHANNELS)
        for channel in channels:
            self._channel_name(channel)
        channels = list(dict.fromkeys(channels))
        if len(channels) > 1 and any(auth.is_encrypted(c) for c in channels):
            raise _bad("an encrypted channel takes an event alone")
        socket_id = body.get("socket_id")
        if socket_id is not None and (
            not isinstance(socket_id, str) or not 0 < len(socket_id) <= MAX_SOCKET_ID
        ):
            raise _bad("socket_id must be a socket id")
        info = body.get("info")
        if info is not None and not isinstance(info, str):
            raise _bad("info must be a comma-separated string")
        attributes = self._attributes(info) if info is not None else None
        return dict(
            name=name,
            data=data,
            channels=channels,
            socket_id=socket_id,
            info=attributes,
        )

    @staticmethod
    def _channel_name(channel: typing.Any) -> None:
        if not auth.valid_pusher_channel(channel):
            shown = repr(channel)[:80]
            raise _bad("invalid channel name: %s" % shown)

    @staticmethod
    def _attributes(info: str | None) -> tuple[str, ...]:
        if not info:
            return ()
        asked = tuple(dict.fromkeys(a.strip() for a in info.split(",") if a.strip()))
        unknown = [a for a in asked if a not in ATTRIBUTES]
        if unknown:
            raise _bad("unknown info attribute(s): %s" % ", ".join(unknown)[:200])
        return asked

    # -- on the loop ----------------------------------------------------------------

    @staticmethod
    def _publish(state, snapshot: dict, event: dict) -> Ticket | None:
        return state.publish(
            snapshot["ident"],
            event["channels"],
            event["name"],
            event["data"],
            None,
            snapshot["persist"],
            event["socket_id"],
        )

    @staticmethod
    def _info_of(state, app, event: dict) -> dict:
        """The attributes `info` asked for, per channel, after the publish."""
        attributes = event["info"]
        if not attributes:
            return {}
        return {
            channel: _pick(state.channel_counts(app, channel), attributes, channel)
            for channel in event["channels"]
        }


def _pick(counts: dict, attributes: typing.Iterable[str], channel: str) -> dict:
    """The attributes asked for; `user_count` only for presence channels."""
    return {
        name: counts[name]
        for name in attributes
        if name != "user_count" or channel.startswith("presence-")
    }


def _bad(message: str) -> appier.OperationalError:
    return appier.OperationalError(message=message, code=400)


def _all_of(tickets: list[Ticket]) -> Ticket | None:
    """One ticket for several: committed when all are, else the first failure."""
    if not tickets:
        return None
    if len(tickets) == 1:
        return tickets[0]
    combined = Ticket()
    left = [len(tickets)]
    lock = threading.Lock()  # the worker and a deadline may complete them

    def done(outcome) -> None:
        if outcome is not True:
            combined.complete(outcome)
            return
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            combined.complete(True)

    for ticket in tickets:
        ticket.then(done)
    return combined
