"""Re-entrancy: transports that close sockets or fail while State is calling them.

design.md "Re-entrancy" and issue 6 "The crash": State calls a transport in the
middle of a walk over a channel (a fan-out, member messages, a subscribe). Here
the transport, inside `deliver`, `member_added`, `member_removed` or `subscribed`,
closes its own socket, closes other sockets (`State.disconnect`, as a server
that closes at once would) or raises. After each: no session, member or channel
is left behind, and every other socket still got what it should.
"""

from __future__ import annotations

import pytest
from fakes import Harness, check_consistent, check_empty

ROOM = "presence-room"


def room(harness: Harness, users: int, peer_last: bool = False) -> list:
    """`users` member sockets of ROOM (user ids u0...), all also in "news"."""
    sessions = []
    for i in range(users):
        session = harness.connect("u%d" % i)
        flagged = peer_last and i == users - 1
        harness.join(session, ROOM, "u%d" % i, peer=flagged)
        harness.subscribe(session, "news")
        sessions.append(session)
    harness.forget()
    return sessions


def close_all(harness: Harness) -> None:
    """Closes every remaining socket and checks nothing is left."""
    check_consistent(harness)
    for session in list(harness.app.sessions.values()):
        harness.close(session)
    check_empty(harness)


def assert_gone(harness: Harness, *sessions) -> None:
    """The sessions are closed and nowhere in State."""
    for session in sessions:
        assert not session.open, "%s still open" % session.socket_id
        assert session.socket_id not in harness.app.sessions
        assert session.channels == {} and session.users == {}, session.channels
        assert session.personal == {} and session.peers == {}
    check_consistent(harness)


def views(harness: Harness, sessions) -> dict:
    """Who each session still in ROOM believes present, from its own messages."""
    return {
        harness.transport(s).name: harness.transport(s).presence_view(ROOM)
        for s in sessions
        if s.open and ROOM in s.channels
    }


def in_pair(harness: Harness, session, peer: str) -> bool:
    """Whether a session is joined to a pair channel."""
    channel = harness.app.channels.get(peer)
    return channel is not None and session.socket_id in channel.sessions


def assert_views_true(harness: Harness, sessions) -> None:
    """Every open member's view of ROOM matches State's members."""
    live = harness.app.channels.get(ROOM)
    truth = set(live.members) if live else set()
    for name, view in views(harness, sessions).items():
        assert view == truth, "%s believes %r present, State has %r" % (
            name,
            view,
            truth,
        )


# -- inside deliver -----------------------------------------------------------------


@pytest.mark.parametrize("channel", ["news", ROOM])
def test_deliver_closing_itself(channel):
    harness = Harness()
    sessions = room(harness, 5)
    middle = sessions[2]
    harness.transport(middle).hooks["deliver"] = harness.closer(middle)
    harness.publish(channel, data="x")
    for session in sessions:
        assert len(harness.transport(session).delivered()) == 1, session.socket_id
    assert_gone(harness, middle)
    assert_views_true(harness, sessions)
    close_all(harness)


def test_deliver_closing_sockets_not_yet_served():
    harness = Harness()
    sessions = room(harness, 5)
    harness.transport(sessions[1]).hooks["deliver"] = harness.closer(*sessions[2:4])
    harness.publish(ROOM, data="x")
    served = [len(harness.transport(s).delivered()) for s in sessions]
    assert served == [1, 1, 0, 0, 1], "closed sockets must not be written to"
    assert_gone(harness, *sessions[2:4])
    removed = [c[1] for c in harness.transport(sessions[4]).of("member_removed")]
    assert sorted(removed) == ["u2", "u3"]
    assert_views_true(harness, sessions)
    close_all(harness)


def test_deliver_closing_sockets_already_served_and_the_whole_channel():
    harness = Harness()
    sessions = room(harness, 4)
    harness.transport(sessions[3]).hooks["deliver"] = harness.closer(*sessions)
    harness.publish(["news", ROOM], data="x")
    assert [len(harness.transport(s).delivered()) for s in sessions] == [1] * 4
    assert_gone(harness, *sessions)
    check_empty(harness)
    assert len(harness.store.persisted) == 1, "the trigger is stored once"


def test_deliver_closing_the_second_channels_only_sockets():
    harness = Harness()
    first, second = harness.connect("a"), harness.connect("b")
    harness.subscribe(first, "c1")
    harness.subscribe(second, "c2")
    harness.transport(first).hooks["deliver"] = harness.closer(second)
    harness.publish(["c1", "c2"])
    assert harness.transport(second).delivered() == []
    assert_gone(harness, second)
    assert list(harness.app.channels) == ["c1"]
    close_all(harness)


def test_deliver_raising_costs_that_connection_only():
    harness = Harness()
    sessions = room(harness, 4)
    bad = sessions[1]
    harness.transport(bad).hooks["deliver"] = harness.raiser
    harness.publish(["news", ROOM], data="x")
    harness.publish("news", data="y")
    assert harness.transport(bad).of("drop") == [()], "dropped once"
    assert_gone(harness, bad)
    for session in sessions:
        if session is not bad:
            got = [e["data"] for e in harness.transport(session).delivered()]
            assert got == ["x", "y"], (session.socket_id, got)
    assert_views_true(harness, sessions)
    close_all(harness)


def test_client_event_whose_sender_is_closed_by_a_recipient():
    harness = Harness()
    sessions = room(harness, 3)
    sender = sessions[0]
    harness.transport(sessions[1]).hooks["deliver"] = harness.closer(sender)
    harness.client_event(sender, ROOM, "say", "x")
    assert len(harness.transport(sessions[2]).delivered()) == 1
    assert len(harness.store.persisted) == 1
    assert_gone(harness, sender)
    close_all(harness)


# -- inside member_added ------------------------------------------------------------


def test_member_added_closing_itself():
    harness = Harness()
    sessions = room(harness, 3)
    harness.transport(sessions[0]).hooks["member_added"] = harness.closer(sessions[0])
    joiner = harness.connect("j")
    harness.join(joiner, ROOM, "j")
    assert_gone(harness, sessions[0])
    (reply,) = harness.transport(joiner).of("subscribed")
    assert set(reply[1]["members"]) == {"u1", "u2", "j"}
    assert_views_true(harness, sessions + [joiner])
    close_all(harness)


@pytest.mark.parametrize("peer", [False, True])
def test_member_added_closing_the_joiner(peer):
    harness = Harness()
    sessions = room(harness, 4)
    joiner = harness.connect("j")
    harness.transport(sessions[1]).hooks["member_added"] = harness.closer(joiner)
    harness.join(joiner, ROOM, "j", peer=peer)
    assert_gone(harness, joiner)
    assert harness.transport(joiner).of("subscribed") == []
    assert list(harness.app.channels) == [ROOM, "news"], "no pair channel left"
    for session in sessions:
        assert not any(c.startswith("peer-") for c in session.channels)
    assert_views_true(harness, sessions)
    close_all(harness)


def test_member_added_closing_members_not_yet_told():
    harness = Harness()
    sessions = room(harness, 4)
    harness.transport(sessions[0]).hooks["member_added"] = harness.closer(
        sessions[2], sessions[3]
    )
    joiner = harness.connect("j")
    harness.join(joiner, ROOM, "j", peer=True)
    for closed in sessions[2:]:
        assert harness.transport(closed).of("member_added") == []
    assert_gone(harness, *sessions[2:])
    (reply,) = harness.transport(joiner).of("subscribed")
    assert set(reply[1]["members"]) == {"u0", "u1", "j"}
    assert sorted(c for c in joiner.channels if c.startswith("peer-")) == [
        "peer-room:j&u0",
        "peer-room:j&u1",
    ]
    assert_views_true(harness, sessions + [joiner])
    close_all(harness)


def test_member_added_raising_costs_that_connection_only():
    harness = Harness()
    sessions = room(harness, 3)
    harness.transport(sessions[0]).hooks["member_added"] = harness.raiser
    joiner = harness.connect("j")
    harness.join(joiner, ROOM, "j")
    assert_gone(harness, sessions[0])
    assert [c[1] for c in harness.transport(sessions[2]).of("member_added")] == ["j"]
    assert len(harness.transport(joiner).of("subscribed")) == 1
    assert_views_true(harness, sessions + [joiner])
    close_all(harness)


# -- inside member_removed ----------------------------------------------------------


def test_member_removed_closing_itself():
    harness = Harness()
    sessions = room(harness, 4)
    harness.transport(sessions[1]).hooks["member_removed"] = harness.closer(sessions[1])
    harness.close(sessions[0])
    assert_gone(harness, sessions[0], sessions[1])
    got = sorted(c[1] for c in harness.transport(sessions[3]).of("member_removed"))
    assert got == ["u0", "u1"]
    assert_views_true(harness, sessions)
    close_all(harness)


def test_member_removed_closing_every_other_member():
    harness = Harness()
    sessions = room(harness, 5, peer_last=True)
    # u4 is peer-flagged: its pairs with everyone exist
    assert len([c for c in harness.app.channels if c.startswith("peer-")]) == 4
    harness.transport(sessions[1]).hooks["member_removed"] = harness.closer(
        *sessions[2:]
    )
    harness.close(sessions[0])
    assert_gone(harness, *sessions[:1], *sessions[2:])
    assert set(sessions[1].channels) == {ROOM, "news"}, sessions[1].channels
    assert_views_true(harness, sessions)
    close_all(harness)


def test_member_removed_of_a_peer_user_closing_a_pair_member():
    harness = Harness()
    sessions = room(harness, 4, peer_last=True)
    flagged = sessions[3]
    harness.transport(sessions[0]).hooks["member_removed"] = harness.closer(sessions[1])
    harness.unsubscribe(flagged, ROOM)
    assert_gone(harness, sessions[1])
    assert [c for c in harness.app.channels if c.startswith("peer-")] == []
    assert_views_true(harness, sessions)
    close_all(harness)


def test_member_removed_while_resubscribing_closes_the_resubscriber():
    harness = Harness()
    sessions = room(harness, 3)
    again = sessions[2]
    harness.transport(sessions[0]).hooks["member_removed"] = harness.closer(again)
    harness.join(again, ROOM, "u2", peer=True)
    assert_gone(harness, again)
    assert harness.transport(again).of("subscribed") == []
    assert list(harness.app.channels) == [ROOM, "news"]
    assert_views_true(harness, sessions)
    close_all(harness)


def test_member_removed_raising_costs_that_connection_only():
    harness = Harness()
    sessions = room(harness, 3)
    harness.transport(sessions[1]).hooks["member_removed"] = harness.raiser
    harness.close(sessions[0])
    assert_gone(harness, sessions[0], sessions[1])
    assert [c[1] for c in harness.transport(sessions[2]).of("member_removed")] == [
        "u0",
        "u1",
    ]
    close_all(harness)


def test_cascade_every_member_closes_the_next_on_any_removal():
    harness = Harness()
    sessions = room(harness, 20, peer_last=True)
    ring = list(zip(sessions, sessions[1:] + sessions[:1], strict=True))
    for here, there in ring:
        harness.transport(here).hooks["member_removed"] = harness.closer(there)
    harness.close(sessions[5])
    for here, there in ring:
        if harness.transport(here).of("member_removed"):
            assert not there.open, "%s's close did not happen" % there.socket_id
    assert not all(s.open for s in sessions[6:])
    assert_views_true(harness, sessions)
    close_all(harness)


# -- inside subscribed --------------------------------------------------------------


@pytest.mark.parametrize("peer", [False, True])
def test_subscribed_closing_itself(peer):
    harness = Harness()
    sessions = room(harness, 3)
    joiner = harness.connect("j")
    harness.transport(joiner).hooks["subscribed"] = harness.closer(joiner)
    harness.join(joiner, ROOM, "j", peer=peer)
    assert_gone(harness, joiner)
    for session in sessions:
        assert [c[:2] for c in member_messages(harness, session)] == [
            ("member_added", ROOM),
            ("member_removed", ROOM),
        ]
    assert list(harness.app.channels) == [ROOM, "news"]
    close_all(harness)


def member_messages(harness: Harness, session) -> list[tuple]:
    """The member messages a session got, in order."""
    return [
        c
        for c in harness.transport(session).calls
        if c[0] in ("member_added", "member_removed")
    ]


def test_subscribed_closing_others():
    harness = Harness()
    sessions = room(harness, 3)
    joiner = harness.connect("j")
    harness.transport(joiner).hooks["subscribed"] = harness.closer(*sessions[:2])
    harness.join(joiner, ROOM, "j", peer=True)
    assert_gone(harness, *sessions[:2])
    # unflagged users leaving take only their own side out (contract §3.5)
    assert [c for c in joiner.channels if c.startswith("peer-")] == [
        "peer-room:j&u0",
        "peer-room:j&u1",
        "peer-room:j&u2",
    ]
    assert in_pair(harness, sessions[2], "peer-room:j&u2")
    assert_views_true(harness, sessions + [joiner])
    close_all(harness)


def test_subscribed_raising_drops_the_subscriber():
    harness = Harness()
    sessions = room(harness, 2)
    joiner = harness.connect("j")
    harness.transport(joiner).hooks["subscribed"] = harness.raiser
    harness.join(joiner, ROOM, "j", peer=True)
    assert_gone(harness, joiner)
    assert_views_true(harness, sessions)
    close_all(harness)


def test_personal_subscribed_closing_itself():
    harness = Harness()
    harness.store.aliases["alice"] = ["news", "sports"]
    alice = harness.connect("a")
    harness.transport(alice).hooks["subscribed"] = harness.closer(alice)
    harness.subscribe_signed(alice, "personal-alice")
    assert_gone(harness, alice)
    check_empty(harness)


def test_public_subscribed_closing_a_presence_member():
    harness = Harness()
    sessions = room(harness, 3)
    newcomer = harness.connect("n")
    harness.transport(newcomer).hooks["subscribed"] = harness.closer(sessions[0])
    harness.subscribe(newcomer, "news")
    assert_gone(harness, sessions[0])
    assert_views_true(harness, sessions)
    close_all(harness)


# -- many at once -------------------------------------------------------------------


def test_all_members_closing_in_the_middle_of_a_fan_out():
    harness = Harness()
    sessions = room(harness, 50, peer_last=True)
    plain = [harness.connect("p%d" % i) for i in range(10)]
    for session in plain:
        harness.subscribe(session, "news")
    harness.transport(sessions[10]).hooks["deliver"] = harness.closer(*sessions)
    harness.publish(["news", ROOM], data="x")
    for session in plain:
        assert len(harness.transport(session).delivered()) == 1
    assert_gone(harness, *sessions)
    assert list(harness.app.channels) == ["news"]
    close_all(harness)
