"""State: the router of every app's channels, presence and personal aliases.

State lives on one thread, the WebSocket server's event loop. It knows nothing of
sockets, frames or HTTP: connections reach it through `Session` objects and hear
back through their `Transport`; database work goes through the `Store` worker and
comes back onto the loop. `python -m pushi.base.state` starts the whole process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import time
import typing
import uuid

from . import auth, strict_json
from .channels import AppState, Channel, Member
from .session import DIRECT, Outgoing, Session, Transport

if typing.TYPE_CHECKING:
    from ..store import Store
    from .config import Settings

LOGGER = logging.getLogger("pushi")

RESERVED = frozenset(("mid", "timestamp", "socket_id", "channel", "event", "data"))
""" Keys of a delivered event that callers can never set through `extra` """

SYSTEM_EVENT_PREFIXES = ("pusher:", "pusher_internal:")

MAX_SKIP = 10**9

UNKNOWN_KEY_SECONDS = 5.0
UNKNOWN_KEYS = 10_000

# error codes of the protocol (Pusher's ranges, see protocol.md §2)
ERROR_GENERIC = 4000
ERROR_UNKNOWN_APP = 4001
ERROR_UNAUTHORIZED = 4009
ERROR_OVER_LIMIT = 4004
ERROR_RATE = 4301


class StateError(Exception):
    """A request State refuses: carries the protocol error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _named(channel: typing.Any) -> str | None:
    """A channel name fit to echo back in an error, or None."""
    return channel if auth.valid_channel(channel) else None


def _page(skip: typing.Any, count: typing.Any, most: int) -> tuple[int, int]:
    """`skip` and `count` of a `pusher:latest`, as bounded integers."""
    try:
        skip = min(MAX_SKIP, max(0, int(skip or 0)))
        count = min(most, max(1, int(10 if count is None else count)))
    except (TypeError, ValueError, OverflowError):
        raise StateError(ERROR_GENERIC, "skip and count must be integers") from None
    return skip, count


def encode_data(data: typing.Any) -> str:
    """Event payloads travel as strings: a string as is, anything else as JSON."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


class State:
    """Owner of all live state; every method runs on the event loop thread."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.apps: dict[str, AppState] = {}  # ident -> live state
        self.keys: dict[str, AppState] = {}  # key -> live state
        # key -> when its "unknown" answer expires: a client retrying a bad key
        # must not cost a store read each time (bounded, oldest dropped first)
        self.unknown: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._call_soon: typing.Callable[[typing.Callable[[], None]], None] | None
        self._call_soon = None
        self._loop_thread: int | None = None

    # -- the loop ---------------------------------------------------------------

    def attach_loop(self, call_soon: typing.Callable, thread_id: int) -> None:
        """Binds State to the event loop that owns it (a thread-safe scheduler)."""
        self._call_soon = call_soon
        self._loop_thread = thread_id

    def call_soon(self, callable: typing.Callable[[], None]) -> None:
        """Runs a callable on the loop thread, from any thread."""
        if self._call_soon is None:
            raise RuntimeError("state is not attached to an event loop")
        self._call_soon(callable)

    def call(self, function: typing.Callable, *args, timeout: float = 10.0):
        """Runs `function(*args)` on the loop; waits for its result (other threads)."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(function(*args))
            except BaseException as exception:
                future.set_exception(exception)

        self.call_soon(run)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            # not started yet: never run it, the caller was told it failed
            future.cancel()
            raise

    # -- apps -------------------------------------------------------------------

    def load_apps(self, apps: typing.Iterable[dict]) -> None:
        """Registers apps known at start (or created later): ident, key, secret."""
        for app in apps:
            self.app_changed(app)

    def app_changed(self, app: dict) -> None:
        """Creates or refreshes an app's credentials, keeping its live channels."""
        current = self.apps.get(app["ident"])
        if current is None:
            current = AppState(app["ident"], app["key"], app["secret"])
            self.apps[current.ident] = current
        self.keys.pop(current.key, None)
        self.unknown.pop(app["key"], None)
        current.key, current.secret = app["key"], app["secret"]
        current.name = app.get("name", "")
        self.keys[current.key] = current

    # -- connections ------------------------------------------------------------

    def connect(self, app_key: str, transport: Transport, done: typing.Callable):
        """Opens a session for a socket; `done(session | None)` once the app is known.

        Apps created by another process are not in memory yet, so a miss asks the
        store (off the loop) before refusing the key.
        """
        app = self.keys.get(app_key)
        known_bad = self.unknown.get(app_key, 0) > time.monotonic()
        if app is not None or known_bad or not auth.APP_KEY.fullmatch(app_key or ""):
            done(self._open(app, transport))
            return

        def found(result, error) -> None:
            if result:
                self.app_changed(result)
            elif error is None:
                self.unknown[app_key] = time.monotonic() + UNKNOWN_KEY_SECONDS
                self.unknown.move_to_end(app_key)
                while len(self.unknown) > UNKNOWN_KEYS:
                    self.unknown.popitem(last=False)
            done(self._open(self.keys.get(app_key), transport))

        self.store.submit(self.store.find_app, (app_key,), found)

    def _open(self, app: AppState | None, transport: Transport) -> Session | None:
        if app is None:
            return None
        socket_id = auth.new_socket_id()
        while socket_id in app.sessions:
            socket_id = auth.new_socket_id()
        session = Session(
            socket_id,
            app,
            transport,
            self.settings.client_event_rate,
            self.settings.request_rate,
        )
        app.sessions[socket_id] = session
        return session

    def disconnect(self, session: Session) -> None:
        """Removes a closed socket from every channel, announcing presence changes."""
        if not session.open:
            return
        for channel in list(session.channels):
            self._leave(session, channel, None)
        session.open = False
        session.app.sessions.pop(session.socket_id, None)

    # -- subscriptions ----------------------------------------------------------

    def subscribe(
        self,
        session: Session,
        channel: typing.Any,
        auth_value: typing.Any = None,
        channel_data: typing.Any = None,
    ) -> None:
        """Handles `pusher:subscribe`: checks auth, joins, replies on the transport."""
        try:
            self._admit(session)
            self._subscribe(session, channel, auth_value, channel_data)
        except StateError as error:
            session.transport.error(error.code, error.message, _named(channel))

    def _admit(self, session: Session, read: bool = False) -> None:
        """Applies a socket's request limits: rate, and store reads in flight."""
        if not session.requests.allow():
            raise StateError(ERROR_RATE, "request rate limit exceeded")
        if read and session.reads >= self.settings.max_pending_reads:
            raise StateError(ERROR_RATE, "too many requests waiting for the store")

    def _read(self, session: Session, function, args: tuple, callback) -> None:
        """Runs a store read for a socket, counting it while in flight."""
        session.reads += 1

        def done(result, error) -> None:
            session.reads -= 1
            if session.open:
                callback(result, error)

        self.store.submit(function, args, done)

    def _subscribe(self, session, channel, auth_value, channel_data) -> None:
        if not auth.valid_channel(channel):
            raise StateError(ERROR_GENERIC, "invalid channel name")
        if (
            channel not in session.channels
            and len(session.channels) >= self.settings.max_channels
        ):
            raise StateError(ERROR_OVER_LIMIT, "too many channels on this connection")
        kind = auth.channel_kind(channel)
        if kind == auth.PRESENCE:
            self._subscribe_presence(session, channel, auth_value, channel_data)
            return
        if kind != auth.PUBLIC:
            self._check_auth(session, channel, auth_value, None)
        if kind == auth.PERSONAL:
            self._subscribe_personal(session, channel)
            return
        self._join(session, channel, DIRECT)
        session.transport.subscribed(channel, {})

    def _check_auth(self, session, channel, auth_value, channel_data) -> None:
        app = session.app
        if not auth.verify_channel_auth(
            app.key, app.secret, session.socket_id, channel, auth_value, channel_data
        ):
            raise StateError(ERROR_UNAUTHORIZED, "invalid signature for channel")

    def _subscribe_presence(self, session, channel, auth_value, channel_data) -> None:
        legacy = isinstance(channel_data, dict)
        if legacy and self.settings.legacy_presence_auth:
            self._check_auth(session, channel, auth_value, None)
            data = channel_data
        elif isinstance(channel_data, str):
            self._check_auth(session, channel, auth_value, channel_data)
            try:
                data = strict_json.loads(channel_data)
            except ValueError:
                raise StateError(
                    ERROR_GENERIC, "channel_data is not valid JSON"
                ) from None
        else:
            raise StateError(
                ERROR_UNAUTHORIZED, "presence channels need signed channel_data"
            )
        user_id = data.get("user_id") if isinstance(data, dict) else None
        if isinstance(user_id, (int, float)) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str) or not user_id:
            raise StateError(ERROR_GENERIC, "channel_data needs a user_id")
        previous = session.users.get(channel)
        if previous is not None and previous != user_id:
            raise StateError(ERROR_GENERIC, "socket already present as another user")
        if previous is None:
            self._join(session, channel, DIRECT)
            self._add_member(session, channel, user_id, data)
        members = session.app.channels[channel].members
        info = {"members": {uid: m.channel_data for uid, m in members.items()}}
        session.transport.subscribed(channel, info)
        if previous is None:
            self._join_peers(session, channel, user_id)

    def _add_member(self, session, channel_name, user_id, data) -> None:
        channel = session.app.channel(channel_name)
        session.users[channel_name] = user_id
        member = channel.members.get(user_id)
        if member is None:
            member = Member(user_id, data, bool(data.get("peer")))
            channel.members[user_id] = member
            for other in channel.sessions.values():
                if other is not session:
                    other.transport.member_added(channel_name, user_id, data)
        else:
            member.channel_data = data
            member.peer = member.peer or bool(data.get("peer"))
        member.sockets.add(session.socket_id)

    def _join_peers(self, session: Session, presence: str, user_id: str) -> None:
        """Opens a peer channel between this user and each member, if either asks."""
        app = session.app
        channel = app.channels[presence]
        member = channel.members[user_id]
        base = presence[len("presence-") :]
        for other in list(channel.members.values()):
            if other.user_id == user_id or not (member.peer or other.peer):
                continue
            peer = auth.peer_channel(base, user_id, other.user_id)
            if peer is None:
                continue
            for socket_id in list(member.sockets) + list(other.sockets):
                target = app.sessions.get(socket_id)
                if target is None or peer in target.peers.get(presence, ()):
                    continue
                target.peers.setdefault(presence, set()).add(peer)
                fresh = not target.joined(peer)
                self._join(target, peer, presence)
                if fresh:
                    target.transport.subscribed(peer, {})

    def _subscribe_personal(self, session: Session, channel: str) -> None:
        self._admit(session, read=True)
        # joining first lets subscriptions changed while the aliases load apply
        # live; a load that a change overtook is repeated (see Channel.version)
        self._join(session, channel, DIRECT)
        self._load_personal(session, channel)

    def _load_personal(self, session: Session, channel: str) -> None:
        personal = session.app.channels[channel]
        started = personal.version

        def loaded(result, error) -> None:
            if not session.joined(channel):
                return
            if error is not None:
                self._leave(session, channel, DIRECT)
                session.transport.error(
                    ERROR_GENERIC, "could not load personal channel", channel
                )
                return
            if personal.version != started:
                self._load_personal(session, channel)
                return
            aliases, events = result
            for alias in aliases:
                self._join(session, alias, channel)
            names = sorted(c for c, why in session.channels.items() if channel in why)
            session.transport.subscribed(channel, {"alias": names, "events": events})

        user_id = auth.personal_user(channel)
        self._read(
            session,
            self.store.personal,
            (session.app.ident, user_id, self.settings.personal_events),
            loaded,
        )

    def unsubscribe(self, session: Session, channel: typing.Any) -> None:
        """Handles `pusher:unsubscribe` of a channel the socket joined itself."""
        try:
            self._admit(session)
        except StateError as error:
            session.transport.error(error.code, error.message, _named(channel))
            return
        if not auth.valid_channel(channel) or DIRECT not in session.channels.get(
            channel, ()
        ):
            session.transport.error(
                ERROR_GENERIC, "not subscribed to channel", _named(channel)
            )
            return
        self._leave(session, channel, DIRECT)
        session.transport.unsubscribed(channel)

    def _join(self, session: Session, name: str, reason: str) -> None:
        reasons = session.channels.get(name)
        if reasons is None:
            reasons = session.channels[name] = set()
            session.app.channel(name).sessions[session.socket_id] = session
        reasons.add(reason)

    def _leave(self, session: Session, name: str, reason: str | None) -> None:
        """Drops one reason (None: all) for a membership; leaves when none remain."""
        reasons = session.channels.get(name)
        if reasons is None:
            return
        if reason is None:
            reasons.clear()
        else:
            reasons.discard(reason)
        if reasons:
            return
        del session.channels[name]
        app = session.app
        channel = app.channels.get(name)
        if channel is None:
            return
        channel.sessions.pop(session.socket_id, None)
        kind = auth.channel_kind(name)
        if kind == auth.PRESENCE:
            self._remove_member(session, channel)
            for peer in session.peers.pop(name, ()):
                self._leave(session, peer, name)
        elif kind == auth.PERSONAL:
            for alias in [c for c, why in session.channels.items() if name in why]:
                self._leave(session, alias, name)
        app.discard_if_empty(channel)

    def _remove_member(self, session: Session, channel: Channel) -> None:
        user_id = session.users.pop(channel.name, None)
        member = channel.members.get(user_id) if user_id is not None else None
        if member is None:
            return
        member.sockets.discard(session.socket_id)
        if member.sockets:
            return
        del channel.members[user_id]
        for other in channel.sessions.values():
            other.transport.member_removed(channel.name, user_id, member.channel_data)
        self._close_peers(session.app, channel, user_id)

    def _close_peers(self, app: AppState, presence: Channel, gone: str) -> None:
        """Takes the remaining members out of their peer channels with a user gone."""
        base = presence.name[len("presence-") :]
        for other in presence.members.values():
            peer = auth.peer_channel(base, gone, other.user_id)
            for socket_id in other.sockets:
                target = app.sessions.get(socket_id)
                peers = target.peers.get(presence.name) if target else None
                if peers and peer in peers:
                    peers.discard(peer)
                    self._leave(target, peer, presence.name)

    # -- reading stored events --------------------------------------------------

    def latest(
        self, session: Session, channel: typing.Any, skip: typing.Any, count: typing.Any
    ) -> None:
        """Handles `pusher:latest`: stored events of a channel the socket may read."""
        try:
            self._admit(session, read=True)
            if not auth.valid_channel(channel) or not session.joined(channel):
                raise StateError(
                    ERROR_UNAUTHORIZED, "latest needs a subscribed channel"
                )
            skip, count = _page(skip, count, self.settings.latest_max)
        except StateError as error:
            session.transport.error(error.code, error.message, _named(channel))
            return

        def loaded(result, error) -> None:
            if error is not None:
                session.transport.error(ERROR_GENERIC, "could not read events", channel)
                return
            session.transport.latest(channel, result)

        app_id = session.app.ident
        if auth.channel_kind(channel) == auth.PERSONAL:
            reader, key = self.store.user_events, auth.personal_user(channel)
        else:
            reader, key = self.store.channel_events, channel
        self._read(session, reader, (app_id, key, skip, count), loaded)

    # -- publishing -------------------------------------------------------------

    def client_event(
        self,
        session: Session,
        channel: typing.Any,
        event: str,
        data: typing.Any,
        echo: bool = False,
        persist: bool = True,
    ) -> None:
        """Publishes an event a socket sent to a channel it has joined."""
        if event.startswith(SYSTEM_EVENT_PREFIXES):
            session.transport.error(ERROR_GENERIC, "reserved event name", None)
            return
        if not auth.valid_channel(channel) or not session.joined(channel):
            session.transport.error(
                ERROR_UNAUTHORIZED,
                "client events need a subscribed channel",
                _named(channel),
            )
            return
        if not session.client_events.allow():
            session.transport.error(
                ERROR_RATE, "client event rate limit exceeded", channel
            )
            return
        extra = {}
        user_id = self._user_of(session, channel)
        if user_id is not None:
            extra["user_id"] = user_id
        self._publish(
            session.app,
            channel,
            event,
            data,
            persist,
            extra,
            None if echo else session.socket_id,
        )

    def _user_of(self, session: Session, channel: str) -> str | None:
        """The user id a socket speaks as on a presence or peer channel."""
        user_id = session.users.get(channel)
        if user_id is not None:
            return user_id
        for presence, peers in session.peers.items():
            if channel in peers:
                return session.users.get(presence)
        return None

    def publish(
        self,
        app_id: str,
        channels: list[str],
        event: str,
        data: typing.Any,
        persist: bool = True,
        extra: dict | None = None,
        exclude: str | None = None,
    ) -> list[dict]:
        """Publishes a back end's event to channels; returns what was delivered."""
        app = self.apps.get(app_id)
        if app is None:
            raise StateError(ERROR_UNKNOWN_APP, "unknown app")
        clean = {k: v for k, v in (extra or {}).items() if k not in RESERVED}
        return [
            self._publish(app, channel, event, data, persist, clean, exclude)
            for channel in channels
        ]

    def _publish(self, app, channel, event, data, persist, extra, exclude) -> dict:
        message = dict(extra)
        message["channel"] = channel
        message["event"] = event
        message["data"] = encode_data(data)
        if persist:
            message["mid"] = str(uuid.uuid4())
            message["timestamp"] = time.time()
        target = app.channels.get(channel)
        if target is not None and target.sessions:
            outgoing = Outgoing(json.dumps(message, separators=(",", ":")).encode())
            for socket_id, session in list(target.sessions.items()):
                if socket_id != exclude:
                    session.transport.deliver(outgoing)
        if persist:
            self.store.persist(app.ident, message)
        return message

    # -- persisted subscriptions (REST) -------------------------------------------

    def subscription_added(self, app_id: str, user_id: str, channel: str) -> None:
        """Joins a user's live personal sockets to a newly subscribed channel."""
        personal = self._personal(app_id, user_id)
        if personal is None:
            return
        personal.version += 1
        for session in list(personal.sessions.values()):
            self._join(session, channel, personal.name)

    def subscription_removed(self, app_id: str, user_id: str, channel: str) -> None:
        """Drops a removed subscription from the user's live personal sockets."""
        personal = self._personal(app_id, user_id)
        if personal is None:
            return
        personal.version += 1
        for session in list(personal.sessions.values()):
            self._leave(session, channel, personal.name)

    def _personal(self, app_id: str, user_id: str) -> Channel | None:
        app = self.apps.get(app_id)
        return app.channels.get("personal-" + user_id) if app else None

    # -- introspection ------------------------------------------------------------

    def sockets(self, app_id: str) -> list[dict]:
        """Live sockets of an app and their channels."""
        app = self.apps.get(app_id)
        return [s.describe() for s in app.sessions.values()] if app else []

    def channel_info(self, app_id: str, channel: str) -> dict:
        """Occupancy of one channel (presence: its users)."""
        app = self.apps.get(app_id)
        target = app.channels.get(channel) if app else None
        if target is None:
            return {
                "occupied": False,
                "subscription_count": 0,
                "user_count": 0,
                "users": [],
            }
        return {
            "occupied": bool(target.sessions),
            "subscription_count": len(target.sessions),
            "user_count": len(target.members),
            "users": sorted(target.members),
        }

    def stats(self) -> dict:
        """Counts for health checks."""
        return {
            "apps": len(self.apps),
            "sockets": sum(len(a.sessions) for a in self.apps.values()),
            "channels": sum(len(a.channels) for a in self.apps.values()),
        }


def main() -> None:
    """Starts the WebSocket server and the API application in this process."""
    from ..runner import run

    run()


if __name__ == "__main__":
    main()
