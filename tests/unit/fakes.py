"""Fakes for the unit tests of State: recording transports and a dict-backed store.

No sockets, no threads, no clock. A `Harness` plays the WebSocket server: it opens
sessions of one app, calls State the way `net/server.py` does and, once State's
call is over, closes the connections whose transport asked to be dropped (the
server closes them on the next loop turn). Every transport call of every session
goes into one ordered log, so tests can check what happened before what.

`check_consistent` and `check_empty` walk State's structures (app sessions,
channels, personal channels, presence members, each session's memberships) and
fail on anything left behind.
"""

from __future__ import annotations

import copy
import json
import typing

from pushi.base.auth import channel_auth
from pushi.base.config import Settings
from pushi.base.session import Outgoing, Session
from pushi.base.state import State

APP = {
    "ident": "f" * 64,
    "key": "a" * 64,
    "secret": "b" * 64,
    "name": "unit",
}
""" The one app every harness serves """

REPLIES = ("subscribed", "unsubscribed", "latest")
""" Transport methods that answer the socket's own request """


class Raised(Exception):
    """What a misbehaving fake transport raises."""


class FakeTransport:
    """A connection as State sees it: records every call, can run a hook in one.

    `hooks[method]` runs inside that call, after it is recorded: a hook closes
    sockets (`Harness.closer`), raises (`Harness.raiser`), or inspects State.
    """

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.session: Session | None = None
        self.calls: list[tuple] = []
        self.outgoing: list[Outgoing] = []
        self.hooks: dict[str, typing.Callable] = {}
        self.views: dict[str, set[str]] = {}  # presence channel -> members seen

    def _record(self, method: str, *args) -> None:
        entry = (method, *copy.deepcopy(args))
        self.calls.append(entry)
        self.harness.log.append((self.name, *entry))
        self._follow(method, args)
        hook = self.hooks.get(method)
        if hook is not None:
            hook(*args)

    def deliver(self, outgoing: Outgoing) -> None:
        """Records the decoded event (and the shared Outgoing object)."""
        self.outgoing.append(outgoing)
        self._record("deliver", json.loads(outgoing.text))

    def subscribed(self, channel: str, info: dict) -> None:
        """Records a subscription reply."""
        self._record("subscribed", channel, info)

    def unsubscribed(self, channel: str, info: dict) -> None:
        """Records an unsubscription reply."""
        self._record("unsubscribed", channel, info)

    def latest(self, channel: str, info: dict) -> None:
        """Records a `latest` reply."""
        self._record("latest", channel, info)

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Records a member announcement."""
        self._record("member_added", channel, user_id, channel_data)

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Records a member's departure."""
        self._record("member_removed", channel, user_id, channel_data)

    def error(self, code: int, message: str, channel: str | None = None) -> None:
        """Records a refusal."""
        self._record("error", code, message, channel)

    def drop(self) -> None:
        """Records the request and queues the close for after the dispatch."""
        self._record("drop")
        if self not in self.harness.dropping:
            self.harness.dropping.append(self)

    # -- reading what was recorded ---------------------------------------------------

    def of(self, method: str) -> list[tuple]:
        """The recorded calls of one method, without the method name."""
        return [call[1:] for call in self.calls if call[0] == method]

    def delivered(self) -> list[dict]:
        """The events delivered, decoded."""
        return [call[0] for call in self.of("deliver")]

    def errors(self) -> list[tuple]:
        """`(code, message, channel)` of every refusal."""
        return self.of("error")

    def presence_view(self, channel: str) -> set[str]:
        """The members this connection believes present, from its own messages:
        its last subscription reply to the channel, then the member messages
        that came after it (kept across `Harness.forget`)."""
        return set(self.views.get(channel, ()))

    def _follow(self, method: str, args: tuple) -> None:
        if method == "subscribed":
            self.views[args[0]] = set(args[1]["members"])
        elif method == "unsubscribed":
            self.views.pop(args[0], None)
        elif method == "member_added":
            self.views.setdefault(args[0], set()).add(args[1])
        elif method == "member_removed":
            self.views.setdefault(args[0], set()).discard(args[1])


class FakeStore:
    """The store worker's interface over dicts.

    `submit` runs the read at once (the default) or, with `manual`, keeps it
    until `run` is called, as the real worker answers on a later loop turn.
    Reads named in `failing` raise. `persist` only records.
    """

    def __init__(self) -> None:
        self.manual = False
        self.queue: list[tuple] = []
        self.persisted: list[tuple] = []
        self.reads: list[tuple] = []
        self.failing: set[str] = set()
        self.apps: dict[str, dict] = {}  # key -> credentials
        self.aliases: dict[str, list[str]] = {}  # user id -> subscribed channels
        self.channel_records: dict[str, list[dict]] = {}  # newest first
        self.user_records: dict[str, list[dict]] = {}  # newest first

    def submit(self, function, args: tuple, callback) -> None:
        """Queues a read; runs it now unless `manual`."""
        self.queue.append((function, args, callback))
        if not self.manual:
            self.run()

    def run(self) -> int:
        """Answers every queued read in order; returns how many it answered."""
        answered = 0
        while self.queue:
            function, args, callback = self.queue.pop(0)
            answered += 1
            try:
                result = function(*args)
            except Exception as error:  # handed to State like the real worker
                callback(None, error)
            else:
                callback(result, None)
        return answered

    def _reading(self, name: str, *args) -> None:
        self.reads.append((name, *args))
        if name in self.failing:
            raise Raised("store read %s failed" % name)

    def persist(self, app_id: str, messages: list[dict], owner_id: str | None) -> None:
        """Records one trigger's messages."""
        self.persisted.append((app_id, copy.deepcopy(messages), owner_id))

    def find_app(self, key: str) -> dict | None:
        """Credentials by key."""
        self._reading("find_app", key)
        return self.apps.get(key)

    def channel_events(self, app_id: str, channel: str, skip: int, count: int):
        """A page of a channel's records, newest first."""
        self._reading("channel_events", app_id, channel, skip, count)
        return list(self.channel_records.get(channel, [])[skip : skip + count])

    def user_events(self, app_id: str, user_id: str, skip: int, count: int):
        """A page of a user's personal history, newest first."""
        self._reading("user_events", app_id, user_id, skip, count)
        return list(self.user_records.get(user_id, [])[skip : skip + count])

    def personal(self, app_id: str, user_id: str, count: int):
        """A user's aliases (in creation order) and latest personal records."""
        self._reading("personal", app_id, user_id, count)
        aliases = list(self.aliases.get(user_id, []))
        return aliases, list(self.user_records.get(user_id, [])[:count])


class Harness:
    """One State, one app, fake connections; plays the server around State."""

    def __init__(self, **settings) -> None:
        self.store = FakeStore()
        self.state = State(Settings(**settings), self.store)
        self.state.load_apps([APP])
        self.app = self.state.apps[APP["ident"]]
        self.log: list[tuple] = []
        self.dropping: list[FakeTransport] = []
        self.transports: list[FakeTransport] = []

    # -- connections ---------------------------------------------------------------

    def connect(self, name: str | None = None) -> Session:
        """A new session of the app (its transport named `name`)."""
        transport = FakeTransport(self, name or "s%d" % len(self.transports))
        opened: list = []
        self.state.connect(APP["key"], transport, opened.append)
        assert opened and opened[0] is not None, "connect refused a known key"
        transport.session = opened[0]
        self.transports.append(transport)
        return opened[0]

    def settle(self) -> None:
        """Closes the dropped connections, as the server's next loop turn does."""
        while self.dropping:
            transport = self.dropping.pop(0)
            self.state.disconnect(transport.session)

    def flush(self) -> None:
        """Answers queued store reads and settles, until nothing is left."""
        while self.store.run() or self.dropping:
            self.settle()

    def close(self, session: Session) -> None:
        """The socket went away (a reset, a close)."""
        self.state.disconnect(session)
        self.settle()

    # -- requests, each followed by the end of the dispatch ----------------------

    def auth(self, session: Session, channel: str, channel_data: str | None = None):
        """A valid `auth` for the socket and channel (and signed channel_data)."""
        return channel_auth(
            APP["key"], APP["secret"], session.socket_id, channel, channel_data
        )

    def subscribe(self, session, channel, auth=None, channel_data=None) -> None:
        """`pusher:subscribe` as given."""
        self.state.subscribe(session, channel, auth, channel_data)
        self.settle()

    def subscribe_signed(self, session: Session, channel: str) -> None:
        """Subscribes a protected channel (no channel_data) with a valid auth."""
        self.subscribe(session, channel, self.auth(session, channel))

    def join(self, session: Session, channel: str, user_id: str, **extra) -> dict:
        """Joins a presence channel as `user_id` (signed string channel_data)."""
        data = dict(user_id=user_id, **extra)
        text = json.dumps(data)
        self.subscribe(session, channel, self.auth(session, channel, text), text)
        return data

    def unsubscribe(self, session: Session, channel) -> None:
        """`pusher:unsubscribe`."""
        self.state.unsubscribe(session, channel)
        self.settle()

    def latest(self, session: Session, channel, skip=None, count=None) -> None:
        """`pusher:latest`."""
        self.state.latest(session, channel, skip, count)
        self.settle()

    def client_event(self, session, channel, event, data, echo=False, persist=True):
        """A client event frame."""
        self.state.client_event(session, channel, event, data, echo, persist)
        self.settle()

    def publish(self, channels, event="message", data="hi", body=None, persist=True):
        """A REST publish (the controller's call)."""
        channels = [channels] if isinstance(channels, str) else list(channels)
        if body is None:
            body = {"channel": channels[0], "event": event, "data": data}
        self.state.publish(APP["ident"], channels, event, data, body, persist)
        self.settle()

    # -- observing -----------------------------------------------------------------

    def transport(self, session: Session) -> FakeTransport:
        """The fake transport of a session."""
        return typing.cast(FakeTransport, session.transport)

    def forget(self) -> None:
        """Clears every recorded call (after a test's setup)."""
        self.log.clear()
        self.store.persisted.clear()
        for transport in self.transports:
            transport.calls.clear()
            transport.outgoing.clear()

    def closer(self, *sessions: Session) -> typing.Callable:
        """A hook that closes sessions (as the server would on a reset)."""

        def hook(*_args) -> None:
            for session in sessions:
                self.state.disconnect(session)

        return hook

    @staticmethod
    def raiser(*_args) -> None:
        """A hook that fails, as a buggy or broken connection would."""
        raise Raised("transport failed")


def check_consistent(harness: Harness) -> None:
    """Fails if State's structures disagree or keep a closed session anywhere."""
    app = harness.app
    for socket_id, session in app.sessions.items():
        assert session.open, "closed session %s still in app.sessions" % socket_id
        assert session.socket_id == socket_id
        for name, reasons in session.channels.items():
            assert reasons, "%s joined %s for no reason" % (socket_id, name)
            channel = app.channels.get(name)
            assert channel is not None, "%s in unknown channel %s" % (socket_id, name)
            assert (
                channel.sessions.get(socket_id) is session
            ), "%s thinks it is in %s, the channel disagrees" % (socket_id, name)
        for name, user_id in session.users.items():
            assert name in session.channels, "%s member of unjoined %s" % (
                socket_id,
                name,
            )
            member = app.channels[name].members.get(user_id)
            assert (
                member is not None and socket_id in member.sockets
            ), "%s is %s in %s but not among its members" % (socket_id, user_id, name)
        assert set(session.channel_data) == set(session.users)
        for presence, peers in session.peers.items():
            assert presence in session.users, "%s peers of %s, no member" % (
                socket_id,
                presence,
            )
            for peer in peers:
                assert presence in session.channels.get(
                    peer, ()
                ), "%s lists peer %s of %s it is not joined through" % (
                    socket_id,
                    peer,
                    presence,
                )
        for personal in session.personal:
            channel = app.personal.get(personal)
            assert (
                channel is not None and socket_id in channel.sessions
            ), "%s subscribed %s, unknown to the app" % (socket_id, personal)
    for name, channel in app.channels.items():
        assert channel.sessions or channel.members, "empty channel %s kept" % name
        for socket_id, session in channel.sessions.items():
            assert (
                app.sessions.get(socket_id) is session
            ), "ghost session %s in channel %s" % (socket_id, name)
            assert name in session.channels
        for user_id, member in channel.members.items():
            assert member.sockets, "member %s of %s has no socket" % (user_id, name)
            for socket_id in member.sockets:
                session = app.sessions.get(socket_id)
                assert session is not None, "ghost member %s (%s) in %s" % (
                    user_id,
                    socket_id,
                    name,
                )
                assert session.users.get(name) == user_id
    for name, channel in app.personal.items():
        assert channel.sessions, "empty personal channel %s kept" % name
        for socket_id, session in channel.sessions.items():
            assert app.sessions.get(socket_id) is session, "ghost session %s in %s" % (
                socket_id,
                name,
            )
            assert name in session.personal


def check_empty(harness: Harness) -> None:
    """Fails unless every session, channel and member is gone."""
    check_consistent(harness)
    app = harness.app
    assert not app.sessions, "sessions left: %r" % list(app.sessions)
    assert not app.channels, "channels left: %r" % {
        name: (list(c.sessions), list(c.members)) for name, c in app.channels.items()
    }
    assert not app.personal, "personal channels left: %r" % list(app.personal)
    stats = harness.state.stats()
    assert stats["sockets"] == 0 and stats["channels"] == 0, stats
