"""State's observer seam (base/observer.py): what it is told, when, and in what order.

A recording observer writes into the harness's one ordered log, next to every
transport call, so a test sees an observer call before or after the replies
and announcements around it. The app has a webhook unless a test says not:
State tells its observer nothing about apps without webhooks.
"""

from __future__ import annotations

import json

import pytest
from fakes import APP, FakeTransport, Harness, check_consistent, check_empty

from pushi.base.auth import user_auth
from pushi.base.observer import NO_OBSERVER, Observer
from pushi.base.session import Session
from pushi.base.state import State
from pushi.net.dialects.pusher import PUSHER_RULES

HOOKS = [{"url": "http://127.0.0.1:1/hook", "event_types": ["channel_occupied"]}]


class Recorder(Observer):
    """Logs every call into the harness log as `("observer", method, *args)`."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.calls: list[tuple] = []

    def _record(self, method: str, app, *args) -> None:
        assert app is self.harness.app, "told about another app"
        self.calls.append((method, *args))
        self.harness.log.append(("observer", method, *args))

    def channel_occupied(self, app, channel):
        self._record("channel_occupied", app, channel)

    def channel_vacated(self, app, channel):
        self._record("channel_vacated", app, channel)

    def member_added(self, app, channel, user_id):
        self._record("member_added", app, channel, user_id)

    def member_removed(self, app, channel, user_id):
        self._record("member_removed", app, channel, user_id)

    def client_event(self, app, channel, event, data, socket_id, user_id):
        self._record("client_event", app, channel, event, data, socket_id, user_id)

    def cache_miss(self, app, channel):
        self._record("cache_miss", app, channel)


class PusherTransport(FakeTransport):
    """A fake transport with the Pusher dialect's extra replies."""

    def subscription_error(self, code, message, channel) -> None:
        self._record("subscription_error", code, message, channel)

    def signed_in(self, user_data) -> None:
        self._record("signed_in", user_data)

    def cache_miss(self, channel) -> None:
        self._record("cache_miss", channel)

    def terminate(self, code, message) -> None:
        self._record("terminate", code, message)
        if self not in self.harness.dropping:
            self.harness.dropping.append(self)


class ObservedHarness(Harness):
    """A Harness whose State has a Recorder, and Pusher-dialect sessions."""

    def __init__(self, webhooks=HOOKS, **settings) -> None:
        super().__init__(**settings)
        self.observer = Recorder(self)
        self.state.observer = self.observer
        self.state.app_changed(dict(APP, webhooks=webhooks))

    def pusher(self, name: str | None = None) -> Session:
        transport = PusherTransport(self, name or "p%d" % len(self.transports))
        opened: list = []
        self.state.connect(APP["key"], transport, opened.append, PUSHER_RULES)
        transport.session = opened[0]
        self.transports.append(transport)
        return opened[0]

    def told(self) -> list[tuple]:
        """The observer's calls, in order."""
        return list(self.observer.calls)


@pytest.fixture
def harness() -> ObservedHarness:
    return ObservedHarness()


def test_a_state_is_unobserved_by_default():
    harness = Harness()
    state = State(harness.state.settings, harness.store)
    assert state.observer is NO_OBSERVER


def test_nothing_is_told_about_an_app_without_webhooks():
    harness = ObservedHarness(webhooks=[])
    a, b = harness.connect(), harness.pusher()
    harness.join(a, "presence-room", "ann")
    harness.subscribe_signed(b, "private-x")
    harness.client_event(b, "private-x", "client-x", "hi")
    harness.subscribe(b, "cache-c")
    harness.close(a)
    harness.close(b)
    assert harness.told() == []
    check_empty(harness)


# -- occupancy -----------------------------------------------------------------------


def test_first_socket_occupies_and_last_vacates(harness):
    a, b = harness.connect("a"), harness.connect("b")
    harness.subscribe(a, "news")
    assert harness.told() == [("channel_occupied", "news")]
    harness.subscribe(b, "news")
    harness.subscribe(a, "news")  # again: no change
    harness.unsubscribe(a, "news")
    assert harness.told() == [("channel_occupied", "news")]
    harness.unsubscribe(b, "news")
    assert harness.told() == [
        ("channel_occupied", "news"),
        ("channel_vacated", "news"),
    ]
    check_consistent(harness)
    assert harness.app.channels == {}


def test_both_dialects_occupy_one_channel(harness):
    pushi, pusher = harness.connect("pushi"), harness.pusher("pusher")
    harness.subscribe(pusher, "news")
    harness.subscribe(pushi, "news")
    harness.close(pusher)
    assert harness.told() == [("channel_occupied", "news")]
    harness.close(pushi)
    assert harness.told()[-1] == ("channel_vacated", "news")


def test_occupied_is_told_before_the_subscribers_reply(harness):
    a = harness.connect("a")
    harness.subscribe(a, "news")
    assert [entry[:2] for entry in harness.log] == [
        ("observer", "channel_occupied"),
        ("a", "subscribed"),
    ]


def test_a_disconnect_vacates_every_channel_it_was_the_last_in(harness):
    a, b = harness.connect("a"), harness.connect("b")
    for name in ("one", "two"):
        harness.subscribe(a, name)
    harness.subscribe(b, "two")
    harness.forget()
    harness.close(a)
    assert harness.told()[-1:] == [("channel_vacated", "one")]
    assert ("channel_vacated", "two") not in harness.told()


def test_a_users_own_channel_is_not_reported(harness):
    session = harness.pusher()
    user_data = json.dumps({"id": "ann"})
    auth = user_auth(APP["key"], APP["secret"], session.socket_id, user_data)
    harness.state.signin(session, auth, user_data)
    harness.settle()
    assert session.user_id == "ann"
    harness.close(session)
    assert harness.told() == []


def test_a_refused_subscription_occupies_nothing(harness):
    a = harness.connect()
    harness.subscribe(a, "private-x", "key:bad")
    assert harness.told() == []


# -- presence ------------------------------------------------------------------------


def test_member_events_once_per_user_in_pushers_order(harness):
    one, two = harness.pusher("one"), harness.pusher("two")
    other = harness.connect("other")
    harness.join(one, "presence-room", "ann")
    harness.join(two, "presence-room", "ann")  # a second socket of ann
    harness.join(other, "presence-room", "bob")
    assert harness.told() == [
        ("channel_occupied", "presence-room"),
        ("member_added", "presence-room", "ann"),
        ("member_added", "presence-room", "bob"),
    ]
    harness.forget()
    harness.close(one)
    harness.close(other)
    assert harness.told()[3:] == [("member_removed", "presence-room", "bob")]
    harness.unsubscribe(two, "presence-room")
    assert harness.told()[3:] == [
        ("member_removed", "presence-room", "bob"),
        ("member_removed", "presence-room", "ann"),
        ("channel_vacated", "presence-room"),
    ]
    check_consistent(harness)


def test_member_added_before_the_others_hear_of_it(harness):
    first, second = harness.connect("first"), harness.connect("second")
    harness.join(first, "presence-room", "ann")
    harness.forget()
    harness.join(second, "presence-room", "bob")
    assert [entry[:2] for entry in harness.log] == [
        ("observer", "member_added"),
        ("first", "member_added"),
        ("second", "subscribed"),
    ]


def test_a_presence_socket_without_channel_data_is_no_member(harness):
    a = harness.connect()
    harness.subscribe_signed(a, "presence-room")
    assert harness.told() == [("channel_occupied", "presence-room")]
    harness.close(a)
    assert harness.told()[-1] == ("channel_vacated", "presence-room")


def test_a_joiner_closed_by_the_announcement_is_added_then_removed(harness):
    first, second = harness.connect("first"), harness.connect("second")
    harness.join(first, "presence-room", "ann")
    harness.transport(first).hooks["member_added"] = harness.closer(second)
    harness.forget()
    harness.join(second, "presence-room", "bob")
    told = harness.told()[2:]
    assert told == [
        ("member_added", "presence-room", "bob"),
        ("member_removed", "presence-room", "bob"),
    ], told
    check_consistent(harness)


def test_resubscribing_a_presence_channel_ends_and_starts_the_membership(harness):
    a = harness.connect()
    harness.join(a, "presence-room", "ann")
    harness.join(a, "presence-room", "ann")
    assert harness.told() == [
        ("channel_occupied", "presence-room"),
        ("member_added", "presence-room", "ann"),
        ("member_removed", "presence-room", "ann"),
        ("member_added", "presence-room", "ann"),
    ]


def test_the_last_member_leaving_vacates_once_with_peers(harness):
    ann, bob = harness.connect("ann"), harness.connect("bob")
    harness.join(ann, "presence-room", "ann", peer=True)
    harness.join(bob, "presence-room", "bob", peer=True)
    assert ("channel_occupied", "peer-room:ann&bob") in harness.told()
    harness.close(ann)
    harness.close(bob)
    vacated = [call for call in harness.told() if call[0] == "channel_vacated"]
    assert sorted(vacated) == [
        ("channel_vacated", "peer-room:ann&bob"),
        ("channel_vacated", "presence-room"),
    ], vacated
    check_empty(harness)


# -- client events and cache misses ---------------------------------------------------


def test_a_relayed_client_event_is_told_with_its_sender(harness):
    sender, other = harness.pusher("sender"), harness.pusher("other")
    for session in (sender, other):
        harness.subscribe_signed(session, "private-c")
    harness.client_event(sender, "private-c", "client-x", {"a": 1})
    assert harness.told()[-1] == (
        "client_event",
        "private-c",
        "client-x",
        {"a": 1},
        sender.socket_id,
        None,
    )


def test_a_presence_client_event_carries_the_user_id(harness):
    sender, other = harness.pusher("sender"), harness.pusher("other")
    harness.join(sender, "presence-c", "ann")
    harness.join(other, "presence-c", "bob")
    harness.client_event(sender, "presence-c", "client-x", "hi")
    assert harness.told()[-1] == (
        "client_event",
        "presence-c",
        "client-x",
        "hi",
        sender.socket_id,
        "ann",
    )


def test_a_pushi_client_event_is_told_too(harness):
    sender = harness.connect("sender")
    harness.subscribe(sender, "news")
    harness.client_event(sender, "news", "typing", "x")
    assert harness.told()[-1] == (
        "client_event",
        "news",
        "typing",
        "x",
        sender.socket_id,
        None,
    )


@pytest.mark.parametrize(
    "channel, event", [("public", "client-x"), ("private-c", "not-client")]
)
def test_a_refused_client_event_is_not_told(harness, channel, event):
    sender = harness.pusher()
    if channel.startswith("private-"):
        harness.subscribe_signed(sender, channel)
    else:
        harness.subscribe(sender, channel)
    harness.forget()
    harness.client_event(sender, channel, event, "x")
    assert harness.transport(sender).errors()
    assert [c for c in harness.told() if c[0] == "client_event"] == []


def test_a_cache_channel_with_nothing_cached_is_a_miss(harness):
    a = harness.pusher("a")
    harness.subscribe(a, "cache-c")
    assert harness.told() == [
        ("channel_occupied", "cache-c"),
        ("cache_miss", "cache-c"),
    ]
    assert harness.transport(a).of("cache_miss") == [("cache-c",)]
    harness.publish("cache-c", persist=False)
    b = harness.pusher("b")
    harness.subscribe(b, "cache-c")
    assert [c for c in harness.told() if c[0] == "cache_miss"] == [
        ("cache_miss", "cache-c")
    ], "a cached event was reported missing"


def test_a_pushi_socket_on_a_cache_name_is_no_miss(harness):
    a = harness.connect()
    harness.subscribe(a, "cache-c")
    assert harness.told() == [("channel_occupied", "cache-c")]


# -- personal aliases ------------------------------------------------------------------


def test_a_personal_alias_occupies_its_channel(harness):
    harness.store.aliases["ann"] = ["orders"]
    a = harness.connect()
    harness.subscribe_signed(a, "personal-ann")
    harness.flush()
    assert harness.told() == [("channel_occupied", "orders")]
    harness.close(a)
    assert harness.told()[-1] == ("channel_vacated", "orders")
    check_empty(harness)
