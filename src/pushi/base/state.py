"""State: the router of every app's channels, presence and personal aliases.

State lives on one thread, the WebSocket server's event loop. It knows nothing of
sockets, frames or HTTP: connections reach it through `Session` objects and hear
back through their `Transport`; database work goes through the store worker and
comes back onto the loop. `python -m pushi.base.state` starts the whole process.

Re-entrancy: a transport never closes its connection while State runs (it is
asked to `drop` and closes after the dispatch), State walks snapshots wherever a
callee could change what it walks, and a transport that raises costs its own
connection only.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # run by path from a checkout, as the published README does
    # (`python src/pushi/base/state.py`): the same server as `-m pushi.base.state`
    import os
    import runpy
    import sys

    here = os.path.abspath(__file__)
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    runpy.run_module("pushi.base.state", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

import collections
import concurrent.futures
import itertools
import json
import logging
import time
import typing
import uuid

from . import auth, strict_json
from .channels import DEFAULT_MAX_PAYLOAD, AppState, Channel, Member
from .errors import StoreError
from .observer import NO_OBSERVER, Observer
from .session import DIRECT, PUSHI_RULES, Outgoing, Rules, Session, Transport

if typing.TYPE_CHECKING:
    from ..store import Store, Ticket
    from .config import Settings

LOGGER = logging.getLogger("pushi")

MAX_SKIP = 10**9

SOCKETS_PAGE = 1000
""" `GET /sockets`: sockets listed per call, by default and at most """

UNKNOWN_KEY_SECONDS = 5.0
UNKNOWN_KEYS = 10_000

CACHE_CHANNELS = 10_000
""" Cache channels whose last event is kept (all apps; the least recent go first) """
CACHE_SECONDS = 30 * 60.0
""" How long a cache channel's last event is replayed (Pusher keeps it 30 minutes) """

SIGNIN = "signin"
""" The reason a signed-in socket is joined to its user's channel """

# error codes of the protocol (Pusher's ranges, see protocol.md §2)
ERROR_GENERIC = 4000
ERROR_UNKNOWN_APP = 4001
ERROR_UNAUTHORIZED = 4009
ERROR_OVER_LIMIT = 4004
ERROR_OVER_CAPACITY = 4100
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
    """Event payloads travel as strings: a string as is, anything else as JSON.

    Python's `json.dumps` defaults (`", "` and `": "`, `\\uXXXX` escapes), as the
    published server encodes them: clients compare these strings.
    """
    return data if isinstance(data, str) else json.dumps(data)


def is_system_event(event: str) -> bool:
    """Names of the protocol itself (`:` and `_` are interchangeable in them)."""
    return event.replace(":", "_").startswith("pusher_")


class State:
    """Owner of all live state; every method runs on the event loop thread."""

    def __init__(
        self, settings: Settings, store: Store, observer: Observer | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        # told of occupancy, presence, client events and cache misses of the
        # apps with webhooks (base/observer.py); the runner passes hooks/'s
        self.observer = observer or NO_OBSERVER
        self.apps: dict[str, AppState] = {}  # ident -> live state
        self.keys: dict[str, AppState] = {}  # key -> live state
        self.app_ids: dict[str, AppState] = {}  # numeric app_id -> live state
        # key -> when its "unknown" answer expires: a client retrying a bad key
        # must not cost a store read each time (bounded, oldest dropped first)
        self.unknown: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._call_soon: typing.Callable[[typing.Callable[[], None]], None] | None
        self._call_soon = None
        self._loop_thread: int | None = None
        # (app ident, cache channel) -> (expiry, encoded last event), LRU order
        self.cache: collections.OrderedDict[tuple[str, str], tuple[float, bytes]]
        self.cache = collections.OrderedDict()

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
        """Creates or refreshes an app's credentials and settings, keeping its
        live channels. `app` holds `ident`, `key`, `secret` and optionally
        `name`, `app_id` and the settings of `AppState`."""
        current = self.apps.get(app["ident"])
        if current is None:
            current = AppState(app["ident"], app["key"], app["secret"])
            self.apps[current.ident] = current
        self.keys.pop(current.key, None)
        self.app_ids.pop(current.app_id, None)
        self.unknown.pop(app["key"], None)
        current.key, current.secret = app["key"], app["secret"]
        current.name = app.get("name", "")
        current.app_id = str(app.get("app_id") or "")
        current.client_events = bool(app.get("client_events", True))
        current.max_payload = int(app.get("max_payload") or DEFAULT_MAX_PAYLOAD)
        current.persist = bool(app.get("persist", False))
        current.webhooks = list(app.get("webhooks") or ())
        self.keys[current.key] = current
        if current.app_id:
            self.app_ids[current.app_id] = current

    def app_by_id(self, app_id: str) -> AppState | None:
        """The live app of a numeric `app_id` (the Pusher HTTP API's name)."""
        return self.app_ids.get(app_id)

    # -- talking to connections ---------------------------------------------------

    def _tell(self, session: Session, method: str, *args) -> None:
        """Calls one transport method; a failure costs that connection only."""
        if not session.open:
            return
        try:
            getattr(session.transport, method)(*args)
        except Exception:
            LOGGER.exception("failed sending %s to %s", method, session.socket_id)
            self._drop(session)

    @staticmethod
    def _drop(session: Session) -> None:
        try:
            session.transport.drop()
        except Exception:
            LOGGER.exception("failed dropping %s", session.socket_id)

    def _refuse(self, session: Session, error: StateError, channel) -> None:
        self._tell(session, "error", error.code, error.message, _named(channel))

    # -- connections ------------------------------------------------------------

    def connect(
        self,
        app_key: str,
        transport: Transport,
        done: typing.Callable,
        rules: Rules = PUSHI_RULES,
    ):
        """Opens a session for a socket; `done(session | None)` once the app is known.

        `rules` are those of the socket's dialect. Apps created by another
        process are not in memory yet, so a miss asks the store (off the loop)
        before refusing the key.
        """
        app = self.keys.get(app_key)
        known_bad = self.unknown.get(app_key, 0) > time.monotonic()
        well_formed = auth.ANY_APP_KEY.fullmatch(app_key or "")
        if app is not None or known_bad or not well_formed:
            done(self._open(app, transport, rules))
            return

        def found(result, error) -> None:
            if result:
                self.app_changed(result)
            elif error is None:
                self.unknown[app_key] = time.monotonic() + UNKNOWN_KEY_SECONDS
                self.unknown.move_to_end(app_key)
                while len(self.unknown) > UNKNOWN_KEYS:
                    self.unknown.popitem(last=False)
            done(self._open(self.keys.get(app_key), transport, rules))

        self.store.submit(self.store.find_app, (app_key,), found)

    def _open(
        self, app: AppState | None, transport: Transport, rules: Rules
    ) -> Session | None:
        if app is None:
            return None
        socket_id = rules.new_socket_id()
        while socket_id in app.sessions:
            socket_id = rules.new_socket_id()
        session = Session(
            socket_id,
            app,
            transport,
            rules.client_event_rate or self.settings.client_event_rate,
            self.settings.request_rate,
            self.settings.request_bucket,
            rules,
        )
        app.sessions[socket_id] = session
        return session

    def disconnect(self, session: Session) -> None:
        """Removes a closed socket from every channel, announcing presence changes."""
        if not session.open:
            return
        session.open = False
        for personal in tuple(session.personal):
            self._leave_personal(session, personal)
        for channel in tuple(session.channels):
            self._leave(session, channel, None)
        session.app.sessions.pop(session.socket_id, None)

    # -- requests ---------------------------------------------------------------

    def _admit(self, session: Session) -> None:
        """Applies a socket's request rate."""
        if not session.requests.allow():
            raise StateError(ERROR_RATE, "request rate limit exceeded")

    def _check_reads(self, session: Session) -> None:
        """Bounds the store reads a socket may have in flight."""
        if session.reads >= self.settings.max_pending_reads:
            raise StateError(ERROR_RATE, "too many requests waiting for the store")

    def _read(self, session: Session, function, args: tuple, callback) -> None:
        """Runs a store read for a socket, counting it while in flight."""
        session.reads += 1

        def done(result, error) -> None:
            session.reads -= 1
            if session.open:
                callback(result, error)

        self.store.submit(function, args, done)

    @staticmethod
    def _info(app: AppState, name: str, alias=(), events=()) -> dict:
        """What a channel reply tells: members (presence), aliases, events."""
        channel = app.channels.get(name)
        members = channel.members if channel is not None else {}
        return {
            "members": {uid: m.channel_data for uid, m in members.items()},
            "alias": list(alias),
            "events": list(events),
        }

    # -- subscribing --------------------------------------------------------------

    def subscribe(
        self,
        session: Session,
        channel: typing.Any,
        auth_value: typing.Any = None,
        channel_data: typing.Any = None,
    ) -> None:
        """Handles `pusher:subscribe`: checks auth, joins, replies on the transport.

        Every side effect (member messages to others, peer and alias joins)
        happens before the subscriber's reply.
        """
        try:
            self._admit(session)
            self._subscribe(session, channel, auth_value, channel_data)
        except StateError as error:
            # the dialect says how: Pushi's pusher:error, Pusher's subscription_error
            method = session.rules.refused_subscription
            self._tell(session, method, error.code, error.message, _named(channel))

    def _subscribe(self, session, channel, auth_value, channel_data) -> None:
        if not session.rules.valid_channel(channel):
            raise StateError(ERROR_GENERIC, "invalid channel name")
        kind = auth.channel_kind(channel)
        again = (
            channel in session.personal
            if kind == auth.PERSONAL
            else DIRECT in session.channels.get(channel, ())
        )
        if not again and session.subscriptions() >= self.settings.max_channels:
            raise StateError(ERROR_OVER_LIMIT, "too many channels on this connection")
        if kind == auth.PRESENCE:
            self._subscribe_presence(session, channel, auth_value, channel_data)
            return
        if kind == auth.USER:
            # only the user signed in on this socket: no signature to check
            if session.user_id is None or channel != auth.user_channel(session.user_id):
                raise StateError(
                    ERROR_UNAUTHORIZED, "a user's channel needs that user signed in"
                )
        elif kind != auth.PUBLIC:
            self._check_auth(session, channel, auth_value, None)
        if kind == auth.PERSONAL:
            self._subscribe_personal(session, channel)
            return
        self._join(session, channel, DIRECT)
        self._tell(session, "subscribed", channel, self._info(session.app, channel))
        self._replay_cache(session, channel)

    def _check_auth(self, session, channel, auth_value, channel_data) -> None:
        app = session.app
        if not auth.verify_channel_auth(
            app.key, app.secret, session.socket_id, channel, auth_value, channel_data
        ):
            raise StateError(ERROR_UNAUTHORIZED, "invalid signature for channel")

    def _presence_data(self, session, channel, auth_value, channel_data):
        """The checked `(user_id, channel_data)` of a presence subscription.

        None: valid auth without channel_data, a socket that is no member.
        """
        if channel_data is None:
            # valid auth without channel_data: receives events, is no member
            self._check_auth(session, channel, auth_value, None)
            return None
        if isinstance(channel_data, dict):
            if not self.settings.legacy_presence_auth:
                raise StateError(
                    ERROR_UNAUTHORIZED,
                    "presence channel_data must be a signed JSON string",
                )
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
            raise StateError(ERROR_GENERIC, "channel_data must be a JSON string")
        user_id = data.get("user_id") if isinstance(data, dict) else None
        if isinstance(user_id, (int, float)) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str) or not user_id:
            raise StateError(ERROR_GENERIC, "channel_data needs a user_id")
        return user_id, data

    def _check_room(self, session: Session, name: str, member) -> None:
        """Refuses a presence join past the member cap or the peer-channel cap.

        A user already present is no new member (another connection of theirs
        is served); a peer-flagged joiner needs room for a pair with every
        other member, checked before anything is joined.
        """
        if member is None:
            return  # no member: counts against neither cap
        user_id, data = member
        channel = session.app.channels.get(name)
        members = channel.members if channel is not None else {}
        present = user_id in members
        if not present and len(members) >= self.settings.max_presence_members:
            raise StateError(
                ERROR_OVER_CAPACITY,
                "presence channel is full (%d members)"
                % self.settings.max_presence_members,
            )
        if data.get("peer"):
            pairs = len(members) - (1 if present else 0)
            pairs -= len(session.peers.get(name, ()))  # a re-subscribe keeps none
            total = session.peer_channels() + pairs
            if pairs > 0 and total > self.settings.max_peer_channels:
                raise StateError(
                    ERROR_OVER_LIMIT,
                    "too many peer channels on this connection (at most %d)"
                    % self.settings.max_peer_channels,
                )

    def _subscribe_presence(self, session, channel, auth_value, channel_data) -> None:
        member = self._presence_data(session, channel, auth_value, channel_data)
        self._check_room(session, channel, member)
        if channel in session.users:
            # re-subscribing: the old membership ends (announced) before the new
            self._remove_member(session, session.app.channels[channel])
            if not session.open:
                return  # closed by a callee of the announcement
        self._join(session, channel, DIRECT)
        if member is not None:
            user_id, data = member
            first = self._add_member(session, channel, user_id, data)
            if not session.open:
                return  # closed by a callee of member_added: it left already
            if data.get("peer"):
                self._join_peers(session, channel, user_id, first)
        self._tell(session, "subscribed", channel, self._info(session.app, channel))
        self._replay_cache(session, channel)

    def _member_sessions(self, app: AppState, channel: Channel) -> list[Session]:
        """The member connections of a presence channel (a snapshot)."""
        sessions = app.sessions
        return [
            sessions[socket_id]
            for member in channel.members.values()
            for socket_id in member.sockets
            if socket_id in sessions
        ]

    def _add_member(self, session, channel_name, user_id, data) -> bool:
        """Makes a socket a member; True when it is its user's first connection."""
        app = session.app
        channel = app.channels[channel_name]
        session.users[channel_name] = user_id
        session.channel_data[channel_name] = data
        member = channel.members.get(user_id)
        first = member is None
        if first:
            others = self._member_sessions(app, channel)
            member = channel.members[user_id] = Member(user_id, data)
        else:
            # the latest connection's data stands for the user
            member.channel_data = data
        member.sockets[session.socket_id] = None
        if first and app.webhooks:
            # before the announcements: a callee closing the joiner announces
            # its removal, which must come after its arrival
            self.observer.member_added(app, channel_name, user_id)
        if first:
            for other in others:
                if channel.members.get(user_id) is not member:
                    # the joiner was closed by a callee and announced gone:
                    # the others must not hear of it after that
                    break
                self._tell(other, "member_added", channel_name, user_id, data)
        return first

    def _join_peers(self, session, presence: str, user_id: str, first: bool) -> None:
        """Joins the pair channels of a peer-flagged joiner with every other user.

        The other users' connections join too when the joiner is its user's
        first connection (later ones find the pairs already open).
        """
        app = session.app
        channel = app.channels[presence]
        base = presence[len("presence-") :]
        for other in tuple(channel.members.values()):
            if other.user_id == user_id:
                continue
            peer = auth.peer_channel(base, user_id, other.user_id)
            if peer is None:
                continue
            self._join_peer(session, presence, peer)
            if first:
                for socket_id in tuple(other.sockets):
                    target = app.sessions.get(socket_id)
                    if target is None:
                        continue
                    if target.peer_channels() >= self.settings.max_peer_channels:
                        # that connection is full: told, the others pair
                        self._tell(
                            target,
                            "error",
                            ERROR_OVER_LIMIT,
                            "too many peer channels on this connection",
                            peer,
                        )
                        continue
                    self._join_peer(target, presence, peer)

    def _join_peer(self, session: Session, presence: str, peer: str) -> None:
        session.peers.setdefault(presence, set()).add(peer)
        self._join(session, peer, presence)

    def _subscribe_personal(self, session: Session, channel: str) -> None:
        self._check_reads(session)
        # registering first lets subscriptions changed while the aliases load
        # apply live; a load that a change overtook is repeated (Channel.version)
        session.personal[channel] = None
        personal = session.app.personal_channel(channel)
        personal.sessions[session.socket_id] = session
        self._load_personal(session, channel)

    def _load_personal(self, session: Session, channel: str) -> None:
        personal = session.app.personal[channel]
        started = personal.version

        def loaded(result, error) -> None:
            if channel not in session.personal:
                return
            if error is not None:
                self._leave_personal(session, channel)
                self._tell(
                    session, "error", ERROR_GENERIC, "could not load channel", channel
                )
                return
            if personal.version != started:
                self._load_personal(session, channel)
                return
            aliases, events = result
            for alias in aliases:
                self._join(session, alias, channel)
            info = self._info(session.app, channel, aliases, events)
            self._tell(session, "subscribed", channel, info)

        self._read_personal(session, channel, loaded)

    def _read_personal(self, session: Session, channel: str, callback) -> None:
        """Reads a personal channel's aliases and last events from the store."""
        user_id = auth.personal_user(channel)
        args = (session.app.ident, user_id, self.settings.personal_events)
        self._read(session, self.store.personal, args, callback)

    # -- leaving ----------------------------------------------------------------

    def unsubscribe(self, session: Session, channel: typing.Any) -> None:
        """Handles `pusher:unsubscribe`; replies with the state after leaving.

        A channel the socket is not in gets the same reply: leaving it is done.
        """
        try:
            self._admit(session)
            if not session.rules.valid_channel(channel):
                raise StateError(ERROR_GENERIC, "invalid channel name")
            if auth.channel_kind(channel) == auth.PERSONAL:
                self._check_reads(session)
        except StateError as error:
            self._refuse(session, error, channel)
            return
        if auth.channel_kind(channel) != auth.PERSONAL:
            self._leave(session, channel, None)
            info = self._info(session.app, channel)
            self._tell(session, "unsubscribed", channel, info)
            return
        self._leave_personal(session, channel)

        def loaded(result, error) -> None:
            if error is not None:
                self._tell(
                    session, "error", ERROR_GENERIC, "could not load channel", channel
                )
                return
            aliases, events = result
            info = self._info(session.app, channel, aliases, events)
            self._tell(session, "unsubscribed", channel, info)

        self._read_personal(session, channel, loaded)

    def _leave_personal(self, session: Session, channel: str) -> None:
        if channel not in session.personal:
            return
        del session.personal[channel]
        personal = session.app.personal.get(channel)
        if personal is not None:
            personal.sessions.pop(session.socket_id, None)
            session.app.discard_if_empty(personal)
        for alias in [c for c, why in session.channels.items() if channel in why]:
            self._leave(session, alias, channel)

    def _join(self, session: Session, name: str, reason: str) -> None:
        reasons = session.channels.get(name)
        if reasons is None:
            reasons = session.channels[name] = set()
            channel = session.app.channel(name)
            channel.sessions[session.socket_id] = session
            if session.app.webhooks and len(channel.sessions) == 1:
                self._occupancy(session.app, name, True)
        if reason == DIRECT and DIRECT not in reasons:
            session.direct += 1
        reasons.add(reason)

    def _leave(self, session: Session, name: str, reason: str | None) -> None:
        """Drops one reason (None: all) for a membership; leaves when none remain."""
        reasons = session.channels.get(name)
        if reasons is None:
            return
        if DIRECT in reasons and reason in (None, DIRECT):
            session.direct -= 1
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
        # decided now: with no socket left nobody can be told anything below,
        # so nothing re-enters and joins it meanwhile
        vacated = not channel.sessions and app.webhooks
        kind = auth.channel_kind(name)
        if kind == auth.PRESENCE:
            self._remove_member(session, channel)
        elif kind == auth.PEER:
            for peers in session.peers.values():
                peers.discard(name)
        app.discard_if_empty(channel)
        if vacated:
            # after member_removed, as Pusher orders them
            self._occupancy(app, name, False)

    def _occupancy(self, app: AppState, name: str, occupied: bool) -> None:
        """Tells the observer a channel got its first socket or lost its last
        (a user's own channel, a sign-in detail, is no channel to report)."""
        if name.startswith(auth.USER_PREFIX):
            return
        if occupied:
            self.observer.channel_occupied(app, name)
        else:
            self.observer.channel_vacated(app, name)

    def _remove_member(self, session: Session, channel: Channel) -> None:
        """Ends a socket's membership of a presence channel (and its pairs there)."""
        name = channel.name
        user_id = session.users.pop(name, None)
        data = session.channel_data.pop(name, None)
        for peer in tuple(session.peers.pop(name, ())):
            self._leave(session, peer, name)
        member = channel.members.get(user_id) if user_id is not None else None
        if member is None:
            return
        member.sockets.pop(session.socket_id, None)
        if member.sockets:
            return
        del channel.members[user_id]
        if session.app.webhooks:
            self.observer.member_removed(session.app, name, user_id)
        # the leaving connection's own channel_data goes with the removal
        for other in self._member_sessions(session.app, channel):
            self._tell(other, "member_removed", name, user_id, data)
        if data and data.get("peer"):
            # as the published server: the leaving connection's flag decides
            self._close_peers(session.app, channel, user_id)

    def _close_peers(self, app: AppState, presence: Channel, gone: str) -> None:
        """Takes the remaining members out of their pairs with a peer user gone."""
        base = presence.name[len("presence-") :]
        for other in tuple(presence.members.values()):
            peer = auth.peer_channel(base, gone, other.user_id)
            for socket_id in tuple(other.sockets):
                target = app.sessions.get(socket_id)
                peers = target.peers.get(presence.name) if target else None
                if peers and peer in peers:
                    peers.discard(peer)
                    self._leave(target, peer, presence.name)

    # -- reading stored events --------------------------------------------------

    def _eligible(self, session: Session, channel: str) -> bool:
        """Whether a socket's user is one of a pair channel's two users."""
        return any(
            auth.in_peer_channel(channel, presence[len("presence-") :], user_id)
            for presence, user_id in session.users.items()
        )

    def _may_read(self, session: Session, channel: str) -> bool:
        kind = auth.channel_kind(channel)
        if kind == auth.PERSONAL:
            return channel in session.personal
        if session.joined(channel):
            return True
        return kind == auth.PEER and self._eligible(session, channel)

    def latest(
        self, session: Session, channel: typing.Any, skip: typing.Any, count: typing.Any
    ) -> None:
        """Handles `pusher:latest`: stored events of a channel the socket may read."""
        try:
            self._admit(session)
            self._check_reads(session)
            if not auth.valid_channel(channel) or not self._may_read(session, channel):
                raise StateError(
                    ERROR_UNAUTHORIZED, "latest needs a subscribed channel"
                )
            skip, count = _page(skip, count, self.settings.latest_max)
        except StateError as error:
            self._refuse(session, error, channel)
            return

        personal = auth.channel_kind(channel) == auth.PERSONAL
        aliases = (
            [c for c, why in session.channels.items() if channel in why]
            if personal
            else ()
        )

        def loaded(result, error) -> None:
            if error is not None:
                self._tell(
                    session, "error", ERROR_GENERIC, "could not read events", channel
                )
                return
            info = self._info(session.app, channel, aliases, result)
            self._tell(session, "latest", channel, info)

        app_id = session.app.ident
        if personal:
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
        if is_system_event(event):
            self._refuse(
                session, StateError(ERROR_GENERIC, "reserved event name"), channel
            )
            return
        rules = session.rules
        if not rules.valid_channel(channel) or not session.joined(channel):
            error = StateError(
                ERROR_UNAUTHORIZED, "client events need a subscribed channel"
            )
            self._refuse(session, error, channel)
            return
        refusal = rules.refuse_client_event(session, channel, event, data)
        if refusal is not None:
            self._refuse(session, StateError(*refusal), channel)
            return
        if not session.client_events.allow():
            error = StateError(ERROR_RATE, "client event rate limit exceeded")
            self._refuse(session, error, channel)
            return
        exclude = None if echo and rules.echo_client_events else session.socket_id
        user_id = session.users.get(channel) if rules.client_user_id else None
        try:
            self._trigger(
                session.app,
                (channel,),
                event,
                data,
                {"user_id": user_id} if user_id is not None else {},
                persist and rules.persist_client_events,
                session.socket_id,
                exclude,
            )
        except StoreError:
            # the store queue is full: refused, and delivered to nobody
            error = StateError(ERROR_GENERIC, "server busy, event not sent")
            self._refuse(session, error, channel)
            return
        if session.app.webhooks:
            self.observer.client_event(
                session.app,
                channel,
                event,
                data,
                session.socket_id,
                session.users.get(channel),
            )

    def publish(
        self,
        app_id: str,
        channels: list[str],
        event: str,
        data: typing.Any,
        body: dict | None = None,
        persist: bool = True,
        exclude: str | None = None,
    ) -> Ticket | None:
        """Publishes a back end's event: `body` (the whole request) goes along.

        `exclude`: a socket id that does not get it (the Pusher HTTP API's
        `socket_id`).

        :returns: With `persist`, the ticket that completes once the event is
            committed (the REST answer waits for it), else None.
        :raises StoreError: The store queue is full: nothing was delivered.
        """
        app = self.apps.get(app_id)
        if app is None:
            raise StateError(ERROR_UNKNOWN_APP, "unknown app")
        return self._trigger(
            app, channels, event, data, body or {}, persist, None, exclude
        )

    def _trigger(self, app, channels, event, data, body, persist, owner_id, exclude):
        """Stores one event (one record per channel), then delivers it.

        Queued for storage first, so that a reader who saw a delivery and asks
        the store (which answers after the writes queued before it) finds it;
        a full queue raises `StoreError` before anything is delivered. A socket
        in several of the channels gets one copy, tagged with the first listed
        channel it is in. Returns the storage ticket (None without `persist`).
        """
        encoded = encode_data(data)
        messages = []
        for name in channels:
            message = dict(body)
            message["channel"] = name
            message["event"] = event
            if encoded:
                message["data"] = encoded
            if persist:
                message["mid"] = str(uuid.uuid4())
                message["timestamp"] = time.time()
            messages.append(message)
        ticket = self.store.persist(app.ident, messages, owner_id) if persist else None
        seen: set[str] | None = set() if len(channels) > 1 else None
        for message in messages:
            name = message["channel"]
            channel = app.channels.get(name)
            cached = auth.is_cache(name)
            if cached or (channel is not None and channel.sessions):
                text = json.dumps(message, separators=(",", ":")).encode()
                if cached:
                    self._remember(app, name, text)
                if channel is not None and channel.sessions:
                    self._deliver(channel, Outgoing(text), exclude, seen)
        return ticket

    # -- cache channels -------------------------------------------------------------

    def _remember(self, app: AppState, channel: str, text: bytes) -> None:
        """Keeps a cache channel's last event (bounded: the least recent go)."""
        key = (app.ident, channel)
        self.cache[key] = (time.monotonic() + CACHE_SECONDS, text)
        self.cache.move_to_end(key)
        while len(self.cache) > CACHE_CHANNELS:
            self.cache.popitem(last=False)

    def _replay_cache(self, session: Session, channel: str) -> None:
        """Gives a cache channel's new subscriber its last event, or says none.

        The same frame the channel's subscribers got (sessions of dialects
        without cache channels get nothing: to them the name is plain).
        """
        if not session.rules.cache_channels or not auth.is_cache(channel):
            return
        if not session.open:
            return
        key = (session.app.ident, channel)
        entry = self.cache.get(key)
        if entry is not None and entry[0] < time.monotonic():
            del self.cache[key]
            entry = None
        if entry is None:
            if session.app.webhooks:
                self.observer.cache_miss(session.app, channel)
            self._tell(session, "cache_miss", channel)
            return
        try:
            session.transport.deliver(Outgoing(entry[1]))
        except Exception:
            LOGGER.exception("failed delivering to %s", session.socket_id)
            self._drop(session)

    # -- users (Pusher's user authentication) -----------------------------------------

    def signin(self, session: Session, auth_value: typing.Any, user_data: typing.Any):
        """Handles `pusher:signin`: a signed `user_data` with an `id` names the
        socket's user, whose channel (`#server-to-user-<id>`) it then receives."""
        try:
            self._admit(session)
            user_id = self._signed_user(session, auth_value, user_data)
        except StateError as error:
            self._refuse(session, error, None)
            return
        session.user_id = user_id
        self._join(session, auth.user_channel(user_id), SIGNIN)
        self._tell(session, "signed_in", user_data)

    def _signed_user(self, session: Session, auth_value, user_data) -> str:
        if not isinstance(user_data, str):
            raise StateError(ERROR_GENERIC, "user_data must be a JSON string")
        app = session.app
        if not auth.verify_user_auth(
            app.key, app.secret, session.socket_id, user_data, auth_value
        ):
            raise StateError(ERROR_UNAUTHORIZED, "invalid signature for user")
        try:
            data = strict_json.loads(user_data)
        except ValueError:
            raise StateError(ERROR_GENERIC, "user_data is not valid JSON") from None
        user_id = data.get("id") if isinstance(data, dict) else None
        if (
            not isinstance(user_id, str)
            or not session.rules.valid_channel(auth.user_channel(user_id))
            or user_id == ""
        ):
            raise StateError(ERROR_GENERIC, "user_data needs a string id")
        if session.user_id is not None and session.user_id != user_id:
            raise StateError(
                ERROR_UNAUTHORIZED, "connection is signed in as another user"
            )
        return user_id

    def user_sessions(self, app: AppState, user_id: str) -> list[Session]:
        """The open sockets signed in as a user (a snapshot)."""
        channel = app.channels.get(auth.user_channel(user_id))
        if channel is None:
            return []
        return [
            session
            for session in tuple(channel.sessions.values())
            if session.open and session.user_id == user_id
        ]

    def terminate_user(self, app: AppState, user_id: str) -> int:
        """Closes every connection signed in as a user; returns how many.

        The close happens after the current dispatch (the transport's
        `terminate`), with 4009: the client must not reconnect unchanged.
        """
        sessions = self.user_sessions(app, user_id)
        for session in sessions:
            self._tell(
                session, "terminate", ERROR_UNAUTHORIZED, "connection terminated"
            )
        return len(sessions)

    def _deliver(self, channel: Channel, outgoing: Outgoing, exclude, seen) -> None:
        """Hands one encoded event to each of a channel's sockets (a snapshot)."""
        for socket_id, session in tuple(channel.sessions.items()):
            if socket_id == exclude or not session.open:
                continue  # the sender, or closed by an earlier recipient
            if seen is not None:
                if socket_id in seen:
                    continue
                seen.add(socket_id)
            try:
                session.transport.deliver(outgoing)
            except Exception:
                LOGGER.exception("failed delivering to %s", socket_id)
                self._drop(session)

    # -- persisted subscriptions (REST) -------------------------------------------

    def subscription_added(self, app_id: str, user_id: str, channel: str) -> None:
        """Joins a user's live personal sockets to a newly subscribed channel."""
        personal = self._personal(app_id, user_id)
        if personal is None:
            return
        personal.version += 1
        for session in tuple(personal.sessions.values()):
            self._join(session, channel, personal.name)

    def subscription_removed(self, app_id: str, user_id: str, channel: str) -> None:
        """Drops a removed subscription from the user's live personal sockets."""
        personal = self._personal(app_id, user_id)
        if personal is None:
            return
        personal.version += 1
        for session in tuple(personal.sessions.values()):
            self._leave(session, channel, personal.name)

    def _personal(self, app_id: str, user_id: str) -> Channel | None:
        app = self.apps.get(app_id)
        return app.personal.get("personal-" + user_id) if app else None

    # -- introspection ------------------------------------------------------------

    def sockets(
        self, app_id: str, skip: int = 0, count: int = SOCKETS_PAGE
    ) -> list[dict]:
        """A page of an app's live sockets (connection order) and their channels
        (join order): at most SOCKETS_PAGE, so one call cannot hold the loop."""
        app = self.apps.get(app_id)
        if app is None:
            return []
        skip = max(0, skip)
        count = max(0, min(SOCKETS_PAGE, count))
        page = itertools.islice(app.sessions.values(), skip, skip + count)
        return [session.describe() for session in page]

    def socket(self, app_id: str, socket_id: str) -> dict | None:
        """One live socket of an app, as `sockets` lists it (None if unknown)."""
        app = self.apps.get(app_id)
        session = app.sessions.get(socket_id) if app else None
        return session.describe() if session else None

    def socket_channels(self, app_id: str, socket_id: str) -> list[str]:
        """The channels one socket is in, in join order (`[]` if unknown)."""
        app = self.apps.get(app_id)
        session = app.sessions.get(socket_id) if app else None
        return list(session.channels) if session else []

    def stats(self) -> dict:
        """Counts for health checks."""
        return {
            "apps": len(self.apps),
            "sockets": sum(len(a.sessions) for a in self.apps.values()),
            "channels": sum(len(a.channels) for a in self.apps.values()),
        }

    # -- queries (Pusher HTTP API) -----------------------------------------------------

    def pusher_app(self, app_id: str) -> tuple[AppState, dict] | None:
        """The app of a numeric app id and a snapshot of what a signed request
        needs (`ident`, `key`, `secret`, `max_payload`, `persist`); None if
        unknown. The app is a handle to pass back to the other queries."""
        app = self.app_ids.get(app_id)
        if app is None:
            return None
        snapshot = dict(
            ident=app.ident,
            key=app.key,
            secret=app.secret,
            max_payload=app.max_payload,
            persist=app.persist,
        )
        return app, snapshot

    @staticmethod
    def _pusher_listed(name: str) -> bool:
        # a user's own channel (Pusher's send-to-user) is no channel to list
        return not name.startswith(auth.USER_PREFIX)

    def channel_counts(self, app: AppState, name: str) -> dict:
        """`occupied`, `subscription_count` (sockets) and `user_count` (presence
        members, by user id) of one channel; zeros when nobody is in it."""
        channel = app.channels.get(name)
        sockets = len(channel.sessions) if channel is not None else 0
        users = len(channel.members) if channel is not None else 0
        return dict(occupied=sockets > 0, subscription_count=sockets, user_count=users)

    def occupied_channels(self, app: AppState, prefix: str = "") -> dict[str, dict]:
        """The app's channels with at least one socket whose name starts with
        `prefix`, each with its `channel_counts` (users' own channels left out)."""
        return {
            name: self.channel_counts(app, name)
            for name, channel in tuple(app.channels.items())
            if channel.sessions
            and name.startswith(prefix)
            and self._pusher_listed(name)
        }

    def presence_users(self, app: AppState, name: str) -> list[str]:
        """The user ids present in a presence channel, in join order."""
        channel = app.channels.get(name)
        return list(channel.members) if channel is not None else []


def main() -> None:
    """Starts the WebSocket server and the API application in this process."""
    from ..runner import run

    run()


if __name__ == "__main__":
    main()
