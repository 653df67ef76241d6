"""Limits State applies per socket and per channel, just under and just over each.

The request bucket (burst and sustained rate, on a fake clock), channels per
socket (counted in O(1), kept right through aliases and re-subscribes), members
per presence channel (4100), peer channels per socket (4004) and the paged
`sockets` listing.
"""

from __future__ import annotations

import pytest
from fakes import APP, Harness, check_consistent

from pushi.base import session as session_module
from pushi.base.config import Settings
from pushi.base.state import SOCKETS_PAGE

ROOM = "presence-room"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(session_module, "time", clock)
    return clock


def kinds(harness: Harness, session) -> list[str]:
    return [call[0] for call in harness.transport(session).calls]


def error_codes(harness: Harness, session) -> list[int]:
    return [error[0] for error in harness.transport(session).errors()]


# -- the request bucket ----------------------------------------------------------------


def test_default_burst_covers_every_channel_and_a_second_of_requests():
    settings = Settings()
    assert settings.request_bucket == settings.max_channels + settings.request_rate
    assert Settings(request_burst=10).request_bucket == settings.max_channels
    assert Settings(request_burst=500).request_bucket == 500


def test_a_reconnect_resubscribes_every_channel_at_once(clock):
    """200 subscribes in one instant (the JS client after a reconnect): served."""
    harness = Harness()
    alice = harness.connect()
    names = ["room-%d" % index for index in range(harness.state.settings.max_channels)]
    for name in names:
        harness.subscribe(alice, name)
    assert kinds(harness, alice) == ["subscribed"] * len(names)
    assert list(alice.channels) == names


def test_sustained_requests_past_the_burst_get_4301(clock):
    harness = Harness(request_rate=5, max_channels=10)  # burst 15
    alice = harness.connect()
    for _ in range(15):
        harness.unsubscribe(alice, "nowhere")
    assert error_codes(harness, alice) == [], "the burst is served"
    harness.unsubscribe(alice, "nowhere")
    assert error_codes(harness, alice) == [4301]
    harness.forget()
    clock.now += 1.0  # one second: `rate` more, no more
    for _ in range(5):
        harness.unsubscribe(alice, "nowhere")
    assert kinds(harness, alice) == ["unsubscribed"] * 5
    harness.unsubscribe(alice, "nowhere")
    assert error_codes(harness, alice) == [4301]
    harness.forget()
    clock.now += 100.0  # refills up to the burst only
    for _ in range(15):
        harness.unsubscribe(alice, "nowhere")
    harness.unsubscribe(alice, "nowhere")
    assert kinds(harness, alice) == ["unsubscribed"] * 15 + ["error"]


# -- channels per socket ---------------------------------------------------------------


def test_channel_count_follows_every_way_of_leaving():
    harness = Harness(max_channels=2, request_burst=100)
    alice = harness.connect()
    harness.subscribe(alice, "a")
    harness.join(alice, ROOM, "alice")
    harness.join(alice, ROOM, "alice")  # re-subscribe: still one channel
    assert alice.subscriptions() == 2
    harness.forget()
    harness.subscribe(alice, "b")
    assert error_codes(harness, alice) == [4004]
    harness.unsubscribe(alice, ROOM)
    assert alice.subscriptions() == 1
    harness.subscribe(alice, "b")
    assert list(alice.channels) == ["a", "b"]
    harness.unsubscribe(alice, "a")
    harness.unsubscribe(alice, "a")  # twice: counted once
    assert alice.subscriptions() == 1
    check_consistent(harness)


def test_an_alias_that_is_also_direct_is_counted_once():
    harness = Harness(max_channels=3)
    harness.store.aliases["u1"] = ["news"]
    alice = harness.connect()
    harness.subscribe_signed(alice, "personal-u1")
    harness.subscribe(alice, "news")  # joined through the alias and directly
    assert alice.subscriptions() == 2
    harness.state.subscription_removed(APP["ident"], "u1", "news")
    assert alice.subscriptions() == 2, "the direct subscription stays"
    harness.unsubscribe(alice, "news")
    assert alice.subscriptions() == 1
    check_consistent(harness)


# -- members per presence channel ------------------------------------------------------


def test_presence_members_up_to_the_cap_then_4100():
    harness = Harness(max_presence_members=3)
    sessions = [harness.connect("u%d" % index) for index in range(3)]
    for index, session in enumerate(sessions):
        harness.join(session, ROOM, "user%d" % index)
    late = harness.connect("late")
    harness.forget()
    harness.join(late, ROOM, "late")
    assert harness.transport(late).calls == [
        ("error", 4100, "presence channel is full (3 members)", ROOM)
    ]
    for session in sessions:
        assert harness.transport(session).calls == [], "nobody hears of a refusal"
    assert ROOM not in late.channels
    assert set(harness.app.channels[ROOM].members) == {"user0", "user1", "user2"}

    # another connection of a present user is no new member
    again = harness.connect("again")
    harness.join(again, ROOM, "user1")
    assert kinds(harness, again) == ["subscribed"]
    # so is a connection without channel_data (events only)
    watcher = harness.connect("watcher")
    harness.subscribe_signed(watcher, ROOM)
    assert kinds(harness, watcher) == ["subscribed"]
    # and the refused socket carries on: it subscribes elsewhere
    harness.subscribe(late, "lobby")
    assert "lobby" in late.channels

    # a member leaving makes room
    harness.close(sessions[0])
    harness.forget()
    harness.join(late, ROOM, "late")
    assert kinds(harness, late) == ["subscribed"]
    check_consistent(harness)


def test_a_member_re_subscribing_in_a_full_room_is_served():
    harness = Harness(max_presence_members=2)
    alice, bob = harness.connect(), harness.connect()
    harness.join(alice, ROOM, "alice")
    harness.join(bob, ROOM, "bob")
    harness.forget()
    harness.join(alice, ROOM, "alice", name="again")
    assert kinds(harness, alice) == ["subscribed"]
    check_consistent(harness)


def test_filling_a_room_costs_linear_work_per_join():
    """Each join tells each member once and lists the members once: n per join."""
    harness = Harness(max_presence_members=100)
    sessions = [harness.connect("u%d" % index) for index in range(100)]
    for index, session in enumerate(sessions):
        harness.join(session, ROOM, "user%d" % index)
    announced = sum(len(harness.transport(s).of("member_added")) for s in sessions)
    assert announced == 100 * 99 // 2
    refused = harness.connect("refused")
    harness.join(refused, ROOM, "user-100")
    assert error_codes(harness, refused) == [4100]


# -- peer channels per socket ----------------------------------------------------------


def test_peer_joiner_past_the_peer_cap_is_refused_before_joining():
    harness = Harness(max_peer_channels=2)
    others = [harness.connect("o%d" % index) for index in range(3)]
    for index, session in enumerate(others):
        harness.join(session, ROOM, "user%d" % index)
    joiner = harness.connect("joiner")
    harness.forget()
    harness.join(joiner, ROOM, "joiner", peer=True)  # 3 pairs > 2
    assert error_codes(harness, joiner) == [4004]
    assert [c[1] for c in harness.log] == ["error"], "nothing else happened"
    assert joiner.channels == {}

    # two others: two pairs, just at the cap
    harness.close(others[2])
    harness.forget()
    harness.join(joiner, ROOM, "joiner", peer=True)
    assert kinds(harness, joiner) == ["subscribed"]
    assert joiner.peer_channels() == 2
    check_consistent(harness)


def test_existing_members_at_the_cap_get_an_error_naming_the_pair():
    harness = Harness(max_peer_channels=2)
    host = harness.connect("host")
    harness.join(host, ROOM, "host")
    harness.join(host, "presence-side", "host")
    for name in ("s1", "s2"):  # two pairs with host: host is at its cap
        harness.join(harness.connect(name), "presence-side", name, peer=True)
    assert host.peer_channels() == 2
    newcomer = harness.connect("newcomer")
    harness.forget()
    harness.join(newcomer, ROOM, "newcomer", peer=True)
    assert kinds(harness, newcomer) == ["subscribed"], "the joiner is served"
    pair = "peer-room:host&newcomer"
    assert harness.transport(host).calls == [
        ("member_added", ROOM, "newcomer", {"user_id": "newcomer", "peer": True}),
        ("error", 4004, "too many peer channels on this connection", pair),
    ]
    assert pair not in host.channels and host.peer_channels() == 2
    assert pair in newcomer.channels
    check_consistent(harness)


# -- the sockets listing ---------------------------------------------------------------


def test_sockets_are_listed_in_pages():
    harness = Harness()
    sessions = [harness.connect() for _ in range(5)]
    ids = [session.socket_id for session in sessions]
    listed = harness.state.sockets
    assert [s["socket_id"] for s in listed(APP["ident"])] == ids
    assert [s["socket_id"] for s in listed(APP["ident"], 0, 2)] == ids[:2]
    assert [s["socket_id"] for s in listed(APP["ident"], 2, 2)] == ids[2:4]
    assert [s["socket_id"] for s in listed(APP["ident"], 4, 2)] == ids[4:]
    assert listed(APP["ident"], 5, 2) == []
    assert harness.state.socket(APP["ident"], ids[1]) == sessions[1].describe()
    assert harness.state.socket(APP["ident"], "nope") is None


def test_a_page_holds_at_most_a_thousand_sockets():
    harness = Harness()
    for _ in range(SOCKETS_PAGE + 1):
        harness.connect()
    assert SOCKETS_PAGE == 1000
    assert len(harness.state.sockets(APP["ident"])) == SOCKETS_PAGE
    assert len(harness.state.sockets(APP["ident"], 0, 10**6)) == SOCKETS_PAGE
    assert len(harness.state.sockets(APP["ident"], SOCKETS_PAGE, 10**6)) == 1
