"""State with sessions of the Pusher dialect's rules, fake transports (no sockets).

The router is the same for both dialects; what differs is what State asks a
session's Rules: socket ids, channel names, how a refused subscription is
reported, client-event rules, cache channels. Also sign-in, the user channel
and `terminate_user`. Dialect shapes (frames) are tested end to end
(test_pusher_ws.py); here only State's decisions.
"""

from __future__ import annotations

import json
import re

import pytest
from fakes import APP, FakeTransport, Harness, check_consistent, check_empty

from pushi.base import state as state_module
from pushi.base.auth import user_auth
from pushi.base.session import Session
from pushi.net.dialects.pusher import PUSHER_RULES


class PusherTransport(FakeTransport):
    """A fake transport with the Pusher dialect's extra replies."""

    def subscription_error(self, code: int, message: str, channel) -> None:
        """Records a refused subscription."""
        self._record("subscription_error", code, message, channel)

    def signed_in(self, user_data: str) -> None:
        """Records a sign-in confirmation."""
        self._record("signed_in", user_data)

    def cache_miss(self, channel: str) -> None:
        """Records a cache miss."""
        self._record("cache_miss", channel)

    def terminate(self, code: int, message: str) -> None:
        """Records the close and queues it for after the dispatch."""
        self._record("terminate", code, message)
        if self not in self.harness.dropping:
            self.harness.dropping.append(self)


class PusherHarness(Harness):
    """A Harness whose `pusher()` opens sessions with the Pusher dialect's rules."""

    def pusher(self, name: str | None = None) -> Session:
        """A new Pusher-dialect session of the app."""
        transport = PusherTransport(self, name or "p%d" % len(self.transports))
        opened: list = []
        self.state.connect(APP["key"], transport, opened.append, PUSHER_RULES)
        assert opened and opened[0] is not None, "connect refused a known key"
        transport.session = opened[0]
        self.transports.append(transport)
        return opened[0]

    def signin(self, session: Session, user: dict, auth: str | None = None) -> str:
        """`pusher:signin` for `user` (signed unless `auth` is given)."""
        user_data = json.dumps(user)
        if auth is None:
            auth = user_auth(APP["key"], APP["secret"], session.socket_id, user_data)
        self.state.signin(session, auth, user_data)
        self.settle()
        return user_data

    def set_app(self, **settings) -> None:
        """Changes the app's settings as `PUT /apps` / declared apps do."""
        self.state.app_changed(dict(APP, **settings))


@pytest.fixture
def harness() -> PusherHarness:
    return PusherHarness()


# -- sessions --------------------------------------------------------------------------


def test_pusher_sessions_get_pusher_socket_ids(harness):
    ids = {harness.pusher().socket_id for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"\d+\.\d+", i) for i in ids), ids
    pushi = harness.connect()
    assert re.fullmatch(r"[0-9a-f-]{36}", pushi.socket_id), pushi.socket_id


def test_refused_subscription_goes_to_subscription_error(harness):
    session = harness.pusher()
    harness.subscribe(session, "private-x", "key:bad")
    transport = harness.transport(session)
    assert transport.of("subscription_error") == [
        (4009, "invalid signature for channel", "private-x")
    ]
    assert transport.errors() == []
    assert "private-x" not in session.channels


def test_pushi_sessions_keep_pusher_error_for_refused_subscriptions(harness):
    session = harness.connect()
    harness.subscribe(session, "private-x", "key:bad")
    assert harness.transport(session).errors() == [
        (4009, "invalid signature for channel", "private-x")
    ]


@pytest.mark.parametrize("name", ["a b", "x" * 165, "a/b", "é", "peer-a:b&c"])
def test_pusher_rules_refuse_names_outside_pushers_set(harness, name):
    session = harness.pusher()
    harness.subscribe(session, name)
    calls = harness.transport(session).of("subscription_error")
    assert calls and calls[0][0] == 4000, calls
    assert not session.channels


def test_pushi_sessions_keep_pushi_names(harness):
    session = harness.connect()
    harness.subscribe(session, "a/b")
    assert harness.transport(session).of("subscribed")


# -- client events ---------------------------------------------------------------------


def two_in(harness: PusherHarness, channel: str):
    sender, other = harness.pusher("sender"), harness.pusher("other")
    for session in (sender, other):
        if channel.startswith("presence-"):
            harness.join(session, channel, session.transport.name)
        elif channel.startswith("private-"):
            harness.subscribe_signed(session, channel)
        else:
            harness.subscribe(session, channel)
    harness.forget()
    return sender, other


def test_client_event_reaches_others_never_echoed_never_stored(harness):
    sender, other = two_in(harness, "private-c")
    harness.client_event(sender, "private-c", "client-x", {"a": 1}, echo=True)
    assert harness.transport(other).delivered() == [
        {"channel": "private-c", "event": "client-x", "data": '{"a": 1}'}
    ]
    assert harness.transport(sender).calls == []
    assert harness.store.persisted == [], "a Pusher client event was stored"


def test_client_event_on_presence_carries_the_senders_user_id(harness):
    sender, other = two_in(harness, "presence-c")
    harness.client_event(sender, "presence-c", "client-x", "hi")
    assert harness.transport(other).delivered() == [
        {
            "user_id": "sender",
            "channel": "presence-c",
            "event": "client-x",
            "data": "hi",
        }
    ]


@pytest.mark.parametrize(
    "channel, event",
    [
        ("public", "client-x"),
        ("private-c", "not-client"),
        ("private-encrypted-c", "client-x"),
        ("cache-c", "client-x"),
    ],
)
def test_refused_client_events(harness, channel, event):
    sender, other = two_in(harness, channel)
    harness.client_event(sender, channel, event, "x")
    errors = harness.transport(sender).errors()
    assert len(errors) == 1 and errors[0][0] == 4009, errors
    assert harness.transport(other).calls == []


def test_client_event_on_an_unjoined_channel_is_refused(harness):
    _, other = two_in(harness, "private-c")
    stranger = harness.pusher("stranger")
    harness.client_event(stranger, "private-c", "client-x", "x")
    assert harness.transport(stranger).errors()[0][0] == 4009
    assert harness.transport(other).calls == []


def test_client_events_switched_off_for_the_app(harness):
    sender, other = two_in(harness, "private-c")
    harness.set_app(client_events=False)
    harness.client_event(sender, "private-c", "client-x", "x")
    assert harness.transport(sender).errors()[0][0] == 4009
    assert harness.transport(other).calls == []


def test_client_event_payload_limit_is_the_apps(harness):
    sender, other = two_in(harness, "private-c")
    harness.set_app(max_payload=100)
    harness.client_event(sender, "private-c", "client-x", "é" * 51)  # 102 bytes
    assert harness.transport(sender).errors()[0][0] == 4300
    assert harness.transport(other).calls == []
    harness.client_event(sender, "private-c", "client-x", "x" * 100)
    assert len(harness.transport(other).delivered()) == 1


def test_client_event_rate_is_ten_a_second(harness):
    sender, other = two_in(harness, "private-c")
    for i in range(12):
        harness.client_event(sender, "private-c", "client-n", str(i))
    assert len(harness.transport(other).delivered()) == 10
    assert [e[0] for e in harness.transport(sender).errors()] == [4301, 4301]


def test_pushi_client_events_keep_pushi_rules(harness):
    """Any name, any joined channel, echo and storage on request (contract §3.5)."""
    sender = harness.connect("pushi")
    harness.subscribe(sender, "public")
    harness.forget()
    harness.client_event(sender, "public", "anything", "x", echo=True)
    assert len(harness.transport(sender).delivered()) == 1
    assert len(harness.store.persisted) == 1


def test_one_encoding_for_both_dialects(harness):
    pusher, pushi = harness.pusher(), harness.connect()
    harness.subscribe(pusher, "news")
    harness.subscribe(pushi, "news")
    harness.publish("news", data="x")
    (a,) = harness.transport(pusher).outgoing
    (b,) = harness.transport(pushi).outgoing
    assert a is b, "a publish encodes once for every recipient"


# -- cache channels --------------------------------------------------------------------


def test_cache_channel_miss_then_last_event_after_the_reply(harness):
    first = harness.pusher()
    harness.subscribe(first, "cache-c")
    assert [c[0] for c in harness.transport(first).calls] == [
        "subscribed",
        "cache_miss",
    ]
    harness.publish("cache-c", data="one", persist=False)
    harness.publish("cache-c", data="two", persist=False)
    late = harness.pusher()
    harness.subscribe(late, "cache-c")
    calls = harness.transport(late).calls
    assert [c[0] for c in calls] == ["subscribed", "deliver"], calls
    assert calls[1][1]["data"] == "two"


def test_cache_is_kept_without_subscribers_and_replays_on_presence(harness):
    harness.publish("presence-cache-c", data="kept", persist=False)
    session = harness.pusher()
    harness.join(session, "presence-cache-c", "u")
    assert [c[0] for c in harness.transport(session).calls] == ["subscribed", "deliver"]


def test_pushi_sessions_get_no_replay(harness):
    harness.publish("cache-c", data="kept", persist=False)
    session = harness.connect()
    harness.subscribe(session, "cache-c")
    assert [c[0] for c in harness.transport(session).calls] == ["subscribed"]


def test_cache_is_bounded_and_expires(harness, monkeypatch):
    monkeypatch.setattr(state_module, "CACHE_CHANNELS", 2)
    for name in ("cache-a", "cache-b", "cache-c"):
        harness.publish(name, data=name, persist=False)
    assert [k[1] for k in harness.state.cache] == ["cache-b", "cache-c"]
    monkeypatch.setattr(state_module, "CACHE_SECONDS", -1.0)
    harness.publish("cache-c", data="stale", persist=False)
    session = harness.pusher()
    harness.subscribe(session, "cache-c")
    assert [c[0] for c in harness.transport(session).calls] == [
        "subscribed",
        "cache_miss",
    ]
    assert ("f" * 64, "cache-c") not in harness.state.cache


# -- users -----------------------------------------------------------------------------


def test_signin_names_the_user_and_joins_its_channel(harness):
    session = harness.pusher()
    user_data = harness.signin(session, {"id": "u1", "user_info": {}})
    assert harness.transport(session).of("signed_in") == [(user_data,)]
    assert session.user_id == "u1"
    harness.publish("#server-to-user-u1", data="for u1", persist=False)
    assert harness.transport(session).delivered()[-1]["data"] == "for u1"
    harness.subscribe(session, "#server-to-user-u1")
    assert harness.transport(session).of("subscribed")
    check_consistent(harness)


@pytest.mark.parametrize(
    "user, auth, code",
    [
        ({"id": "u"}, "a:" + "0" * 64, 4009),
        ({"id": "u"}, None, 4009),
        ({"name": "no id"}, "", 4000),
        ({"id": 7}, "", 4000),
        ({"id": ""}, "", 4000),
        ({"id": "a b"}, "", 4000),
    ],
    ids=["bad-signature", "missing-auth", "no-id", "numeric-id", "empty-id", "name"],
)
def test_refused_signin(harness, user, auth, code):
    session = harness.pusher()
    user_data = json.dumps(user)
    if auth == "":
        # signed correctly: the refusal is for the content
        auth = user_auth(APP["key"], APP["secret"], session.socket_id, user_data)
    harness.state.signin(session, auth, user_data)
    harness.settle()
    errors = harness.transport(session).errors()
    assert [e[0] for e in errors] == [code], errors
    assert session.user_id is None and not session.channels


def test_signin_as_another_user_is_refused(harness):
    session = harness.pusher()
    harness.signin(session, {"id": "first"})
    harness.signin(session, {"id": "second"})
    assert harness.transport(session).errors()[0][0] == 4009
    assert session.user_id == "first"


def test_user_channels_need_that_user(harness):
    me = harness.pusher()
    harness.signin(me, {"id": "me"})
    harness.subscribe(me, "#server-to-user-you")
    assert harness.transport(me).of("subscription_error")[0][0] == 4009
    pushi = harness.connect()
    harness.subscribe(pushi, "#server-to-user-me")
    assert harness.transport(pushi).errors()[0][0] == 4009
    assert "#server-to-user-me" not in pushi.channels


def test_terminate_user_closes_that_users_connections_only(harness):
    a1, a2, b = harness.pusher(), harness.pusher(), harness.pusher()
    harness.signin(a1, {"id": "a"})
    harness.signin(a2, {"id": "a"})
    harness.signin(b, {"id": "b"})
    harness.join(a1, "presence-r", "a")
    harness.join(b, "presence-r", "b")
    harness.forget()
    assert harness.state.terminate_user(harness.app, "a") == 2
    harness.settle()
    assert harness.transport(a1).of("terminate") == [(4009, "connection terminated")]
    assert harness.transport(a2).of("terminate")
    assert harness.transport(b).of("terminate") == []
    assert not a1.open and not a2.open and b.open
    assert [c[0] for c in harness.transport(b).calls] == ["member_removed"]
    assert harness.state.terminate_user(harness.app, "a") == 0
    assert harness.state.terminate_user(harness.app, "nobody") == 0
    check_consistent(harness)


def test_everything_is_forgotten_after_disconnects(harness):
    sessions = [harness.pusher() for _ in range(3)]
    for i, session in enumerate(sessions):
        harness.signin(session, {"id": "u%d" % i})
        harness.join(session, "presence-cache-x", "u%d" % i)
        harness.subscribe_signed(session, "private-y")
    for session in sessions:
        harness.close(session)
    check_empty(harness)
