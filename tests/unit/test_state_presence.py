"""Presence and peer channels in State, with fake transports (no sockets).

Members: who is announced to whom, which channel_data stands for a user, when a
user is removed; sockets with valid auth but no channel_data; legacy object
channel_data; refusals. Peers: the pair channels a `"peer": true` member opens,
who joins them, who leaves them, eligibility, and that none of it is replied.
Ordering: every side effect of a subscribe precedes the subscriber's reply.
Contract: pushi-contract.md §3.3, §3.5, §3.6, §4.1, §4.4, §4.9.
"""

from __future__ import annotations

import json

import pytest
from fakes import APP, Harness, check_consistent, check_empty

ROOM = "presence-room"


def member_calls(harness: Harness, session) -> list[tuple]:
    """The member messages a session received, as (event, channel, user, data)."""
    return [
        call
        for call in harness.transport(session).calls
        if call[0] in ("member_added", "member_removed")
    ]


def members(harness: Harness, channel: str = ROOM) -> dict:
    """user_id -> channel_data, as State holds them."""
    live = harness.app.channels.get(channel)
    return {u: m.channel_data for u, m in live.members.items()} if live else {}


def in_peer(harness: Harness, session, peer: str) -> bool:
    """Whether the session is joined to the pair channel (both sides agree)."""
    channel = harness.app.channels.get(peer)
    joined = channel is not None and session.socket_id in channel.sessions
    assert joined == (peer in session.channels), "State disagrees with itself"
    return joined


# -- members ---------------------------------------------------------------------------


def test_reply_lists_members_with_their_channel_data():
    harness = Harness()
    alice, bob = harness.connect(), harness.connect()
    a = harness.join(alice, ROOM, "alice", name="Alice")
    b = harness.join(bob, ROOM, "bob")
    assert harness.transport(alice).of("subscribed") == [
        (ROOM, {"members": {"alice": a}, "alias": [], "events": []})
    ]
    assert harness.transport(bob).of("subscribed") == [
        (ROOM, {"members": {"alice": a, "bob": b}, "alias": [], "events": []})
    ]


def test_member_added_goes_to_other_member_connections_only():
    harness = Harness()
    watcher, listener, plain = (harness.connect(n) for n in ("w", "l", "p"))
    harness.join(watcher, ROOM, "watcher")
    harness.subscribe_signed(listener, ROOM)  # valid auth, no channel_data
    joiner = harness.connect("j")
    harness.forget()
    data = harness.join(joiner, ROOM, "joiner", x=1)
    assert member_calls(harness, watcher) == [("member_added", ROOM, "joiner", data)]
    assert member_calls(harness, listener) == [], "a non-member hears no members"
    assert harness.transport(plain).calls == []
    assert [c[0] for c in harness.transport(joiner).calls] == ["subscribed"]


def test_member_added_precedes_the_joiners_reply():
    harness = Harness()
    watchers = [harness.connect("w%d" % i) for i in range(3)]
    for i, watcher in enumerate(watchers):
        harness.join(watcher, ROOM, "user%d" % i)
    joiner = harness.connect("joiner")
    harness.forget()
    harness.join(joiner, ROOM, "joiner")
    order = [(entry[0], entry[1]) for entry in harness.log]
    assert order == [
        ("w0", "member_added"),
        ("w1", "member_added"),
        ("w2", "member_added"),
        ("joiner", "subscribed"),
    ], harness.log


def test_valid_auth_without_channel_data_receives_events_but_is_no_member():
    harness = Harness()
    watcher, listener = harness.connect(), harness.connect()
    harness.join(watcher, ROOM, "watcher")
    harness.forget()
    harness.subscribe_signed(listener, ROOM)
    assert member_calls(harness, watcher) == []
    assert set(members(harness)) == {"watcher"}
    (reply,) = harness.transport(listener).of("subscribed")
    assert set(reply[1]["members"]) == {"watcher"}
    harness.publish(ROOM)
    assert len(harness.transport(listener).delivered()) == 1
    harness.close(listener)
    assert member_calls(harness, watcher) == [], "its leaving is no member event"


def test_second_connection_is_not_announced_but_replaces_the_data():
    harness = Harness()
    watcher, first, second = (harness.connect(n) for n in ("w", "1", "2"))
    harness.join(watcher, ROOM, "watcher")
    v1 = harness.join(first, ROOM, "alice", v=1)
    harness.forget()
    v2 = harness.join(second, ROOM, "alice", v=2)
    assert member_calls(harness, watcher) == [], "alice was already present"
    assert harness.transport(second).of("subscribed")[0][1]["members"]["alice"] == v2
    assert members(harness)["alice"] == v2
    # the second leaving neither announces nor restores the first's data
    harness.close(second)
    assert member_calls(harness, watcher) == []
    assert members(harness)["alice"] == v2
    # the last leaving announces with its own channel_data
    harness.unsubscribe(first, ROOM)
    assert member_calls(harness, watcher) == [("member_removed", ROOM, "alice", v1)]
    assert "alice" not in members(harness)


@pytest.mark.parametrize("how", ["close", "unsubscribe"])
def test_last_connection_leaving_removes_the_member(how):
    harness = Harness()
    watcher, alice, listener = harness.connect(), harness.connect(), harness.connect()
    harness.join(watcher, ROOM, "watcher")
    harness.subscribe_signed(listener, ROOM)
    data = harness.join(alice, ROOM, "alice", role="admin")
    harness.forget()
    if how == "close":
        harness.close(alice)
    else:
        harness.unsubscribe(alice, ROOM)
        (reply,) = harness.transport(alice).of("unsubscribed")
        assert reply == (
            ROOM,
            {"members": {"watcher": {"user_id": "watcher"}}, "alias": [], "events": []},
        ), "the unsubscribe reply shows the state after leaving"
    assert member_calls(harness, watcher) == [("member_removed", ROOM, "alice", data)]
    assert member_calls(harness, alice) == []
    assert member_calls(harness, listener) == []
    check_consistent(harness)


def test_resubscribing_the_only_socket_announces_removal_then_addition():
    harness = Harness()
    watcher, alice = harness.connect("w"), harness.connect("a")
    harness.join(watcher, ROOM, "watcher")
    old = harness.join(alice, ROOM, "alice", v=1)
    harness.forget()
    new = harness.join(alice, ROOM, "alice", v=2)
    assert member_calls(harness, watcher) == [
        ("member_removed", ROOM, "alice", old),
        ("member_added", ROOM, "alice", new),
    ]
    assert [e[:2] for e in harness.log] == [
        ("w", "member_removed"),
        ("w", "member_added"),
        ("a", "subscribed"),
    ]
    assert members(harness)["alice"] == new
    check_consistent(harness)


def test_resubscribing_as_another_user_switches_membership():
    harness = Harness()
    watcher, alice = harness.connect(), harness.connect()
    harness.join(watcher, ROOM, "watcher")
    old = harness.join(alice, ROOM, "alice")
    harness.forget()
    new = harness.join(alice, ROOM, "alicia")
    assert member_calls(harness, watcher) == [
        ("member_removed", ROOM, "alice", old),
        ("member_added", ROOM, "alicia", new),
    ]
    assert set(members(harness)) == {"watcher", "alicia"}


def test_numeric_user_id_is_a_string_member():
    harness = Harness()
    alice = harness.connect()
    text = json.dumps({"user_id": 42})
    harness.subscribe(alice, ROOM, harness.auth(alice, ROOM, text), text)
    assert list(members(harness)) == ["42"]


def refusals(harness: Harness, session) -> list[tuple]:
    """(label, auth, channel_data) of presence subscriptions that must fail."""
    good = json.dumps({"user_id": "alice"})
    other = json.dumps({"user_id": "mallory"})
    return [
        ("no auth", None, good),
        ("auth without the data", harness.auth(session, ROOM), good),
        ("data changed after signing", harness.auth(session, ROOM, good), other),
        ("another socket's auth", harness.auth(harness.connect(), ROOM, good), good),
        (
            "object without the legacy flag",
            harness.auth(session, ROOM),
            {"user_id": "a"},
        ),
        ("not JSON", harness.auth(session, ROOM, "{nope"), "{nope"),
        ("no user_id", harness.auth(session, ROOM, '{"a": 1}'), '{"a": 1}'),
        (
            "empty user_id",
            harness.auth(session, ROOM, '{"user_id": ""}'),
            '{"user_id": ""}',
        ),
        ("list", harness.auth(session, ROOM, "[1]"), "[1]"),
        ("number", harness.auth(session, ROOM), 5),
        ("no auth, no data", None, None),
    ]


def test_every_refused_presence_subscription_leaves_nothing():
    harness = Harness()
    watcher, alice = harness.connect("w"), harness.connect("a")
    harness.join(watcher, ROOM, "watcher")
    for label, auth, channel_data in refusals(harness, alice):
        harness.forget()
        harness.subscribe(alice, ROOM, auth, channel_data)
        calls = harness.transport(alice).calls
        assert [c[0] for c in calls] == ["error"] and calls[0][3] == ROOM, (
            label,
            calls,
        )
        assert calls[0][1] in (4000, 4009), (label, calls)
        assert alice.channels == {} and alice.users == {}, label
        assert set(members(harness)) == {"watcher"}, label
        assert harness.transport(watcher).calls == [], label
    check_consistent(harness)


def test_legacy_object_channel_data_needs_the_setting():
    strict, legacy = Harness(), Harness(legacy_presence_auth=True)
    alices = []
    for harness in (strict, legacy):
        alice = harness.connect()
        harness.subscribe(alice, ROOM, harness.auth(alice, ROOM), {"user_id": "alice"})
        alices.append(alice)
    assert [e[0] for e in strict.transport(alices[0]).errors()] == [4009]
    assert members(strict) == {} and alices[0].channels == {}
    assert legacy.transport(alices[1]).errors() == []
    assert members(legacy) == {"alice": {"user_id": "alice"}}
    # the signed string form keeps working with the setting
    bob = legacy.connect()
    legacy.join(bob, ROOM, "bob")
    assert set(members(legacy)) == {"alice", "bob"}


def test_legacy_object_still_needs_a_valid_signature():
    harness = Harness(legacy_presence_auth=True)
    alice = harness.connect()
    harness.subscribe(alice, ROOM, APP["key"] + ":00", {"user_id": "alice"})
    assert [e[0] for e in harness.transport(alice).errors()] == [4009]
    assert members(harness) == {}


def test_presence_channel_and_channel_data_on_public_channels():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news", None, json.dumps({"user_id": "alice"}))
    assert harness.transport(alice).of("subscribed")[0][1]["members"] == {}
    assert alice.users == {}


# -- peers -----------------------------------------------------------------------------


def peer(a: str, b: str, base: str = "room") -> str:
    """The pair channel name of two users (sorted ids)."""
    first, second = sorted((a, b))
    return "peer-%s:%s&%s" % (base, first, second)


def test_flagged_joiner_pairs_with_every_member_before_its_reply():
    harness = Harness()
    a, b, listener = harness.connect("a"), harness.connect("b"), harness.connect("l")
    harness.join(a, ROOM, "ann")
    harness.join(b, ROOM, "bob")
    harness.subscribe_signed(listener, ROOM)
    joiner = harness.connect("z")
    seen = {}

    def at_reply(channel, info):
        seen.update(
            joiner=sorted(c for c in joiner.channels if c.startswith("peer-")),
            ann=sorted(c for c in a.channels if c.startswith("peer-")),
        )

    harness.transport(joiner).hooks["subscribed"] = at_reply
    harness.forget()
    harness.join(joiner, ROOM, "zed", peer=True)
    assert seen == {
        "joiner": [peer("ann", "zed"), peer("bob", "zed")],
        "ann": [peer("ann", "zed")],
    }, "the pair joins precede the subscriber's reply"
    assert in_peer(harness, b, peer("bob", "zed"))
    assert not in_peer(harness, a, peer("bob", "zed"))
    assert not any(c.startswith("peer-") for c in listener.channels)
    replies = [e for e in harness.log if e[1] in ("subscribed", "unsubscribed")]
    assert replies == [("z", "subscribed", ROOM, replies[0][3])], "no peer replies"
    check_consistent(harness)


def test_pair_names_sort_the_ids():
    harness = Harness()
    b, a = harness.connect(), harness.connect()
    harness.join(b, "presence-x", "b")
    harness.join(a, "presence-x", "a", peer=True)
    assert "peer-x:a&b" in a.channels and "peer-x:a&b" in b.channels


def test_others_join_only_when_it_is_the_flagged_users_first_connection():
    harness = Harness()
    ann1, zed1 = harness.connect(), harness.connect()
    harness.join(ann1, ROOM, "ann")
    harness.join(zed1, ROOM, "zed", peer=True)
    ann2, zed2 = harness.connect(), harness.connect()
    harness.join(ann2, ROOM, "ann")  # unflagged: creates nothing
    harness.join(zed2, ROOM, "zed", peer=True)  # not zed's first connection
    pair = peer("ann", "zed")
    assert in_peer(harness, ann1, pair) and in_peer(harness, zed1, pair)
    assert in_peer(harness, zed2, pair), "a later flagged connection joins itself"
    assert not in_peer(harness, ann2, pair), "the others' later sockets do not join"


def test_any_member_connection_joins_whatever_its_flag():
    harness = Harness()
    ann, listener = harness.connect(), harness.connect()
    harness.join(ann, ROOM, "ann", peer=False)
    harness.subscribe_signed(listener, ROOM)
    zed = harness.connect()
    harness.join(zed, ROOM, "zed", peer=True)
    assert in_peer(harness, ann, peer("ann", "zed"))
    assert list(harness.app.channels) == [ROOM, peer("ann", "zed")]


def test_unflagged_joiner_creates_no_pair():
    harness = Harness()
    zed, ann = harness.connect(), harness.connect()
    harness.join(zed, ROOM, "zed", peer=True)
    harness.join(ann, ROOM, "ann")
    assert list(harness.app.channels) == [ROOM]
    assert not in_peer(harness, zed, peer("ann", "zed"))


def test_flagged_users_last_connection_leaving_takes_the_others_out():
    harness = Harness()
    ann, bob, zed1, zed2 = (harness.connect() for _ in range(4))
    harness.join(ann, ROOM, "ann")
    harness.join(bob, ROOM, "bob")
    harness.join(zed1, ROOM, "zed", peer=True)
    harness.join(zed2, ROOM, "zed")
    harness.close(zed2)
    assert in_peer(harness, ann, peer("ann", "zed")), "zed still has a connection"
    harness.unsubscribe(zed1, ROOM)
    assert not in_peer(harness, ann, peer("ann", "zed"))
    assert not in_peer(harness, bob, peer("bob", "zed"))
    assert list(harness.app.channels) == [ROOM]
    assert ann.peers.get(ROOM, set()) == set()
    check_consistent(harness)


def test_the_last_connections_own_flag_decides_as_in_the_original():
    # zed's flagged connection opened the pairs, but its last one has no flag:
    # the published server looks at the leaving connection only
    harness = Harness()
    ann, zed1, zed2 = (harness.connect() for _ in range(3))
    harness.join(ann, ROOM, "ann")
    harness.join(zed1, ROOM, "zed", peer=True)
    harness.join(zed2, ROOM, "zed")
    harness.close(zed1)
    harness.unsubscribe(zed2, ROOM)
    assert in_peer(harness, ann, peer("ann", "zed"))
    check_consistent(harness)


def test_unflagged_member_leaving_presence_leaves_its_own_pairs():
    harness = Harness()
    ann, zed = harness.connect(), harness.connect()
    harness.join(ann, ROOM, "ann")
    harness.join(zed, ROOM, "zed", peer=True)
    harness.unsubscribe(ann, ROOM)
    assert not in_peer(harness, ann, peer("ann", "zed"))
    assert in_peer(harness, zed, peer("ann", "zed")), "zed keeps its side (§3.5)"
    assert ann.channels == {} and ann.peers == {}
    check_consistent(harness)


def test_leaving_presence_leaves_own_pairs_but_keeps_direct_ones():
    harness = Harness()
    ann, zed = harness.connect(), harness.connect()
    harness.join(ann, ROOM, "ann")
    harness.join(zed, ROOM, "zed", peer=True)
    pair = peer("ann", "zed")
    harness.subscribe_signed(zed, pair)  # also joined directly
    harness.unsubscribe(zed, ROOM)
    assert in_peer(harness, zed, pair), "a direct subscription stays"
    assert not in_peer(harness, ann, pair)
    check_consistent(harness)


def test_peer_client_events_reach_the_pair_only():
    harness = Harness()
    ann, bob, zed = harness.connect(), harness.connect(), harness.connect()
    harness.join(ann, ROOM, "ann")
    harness.join(bob, ROOM, "bob")
    harness.join(zed, ROOM, "zed", peer=True)
    harness.forget()
    harness.client_event(ann, peer("ann", "zed"), "msg", "hi zed")
    assert [e["channel"] for e in harness.transport(zed).delivered()] == [
        peer("ann", "zed")
    ]
    assert harness.transport(bob).calls == []
    assert harness.store.persisted[0][2] == ann.socket_id


def test_eligible_member_may_read_and_leave_a_pair_but_not_publish_on_it():
    harness = Harness()
    ann, zed, eve = harness.connect(), harness.connect(), harness.connect()
    harness.join(ann, ROOM, "ann")
    harness.join(eve, ROOM, "eve")
    harness.join(zed, ROOM, "zed")  # no flag: no pair exists
    pair = peer("ann", "zed")
    harness.store.channel_records[pair] = [{"mid": "1"}]
    harness.forget()
    harness.latest(ann, pair)
    assert harness.transport(ann).of("latest") == [
        (pair, {"members": {}, "alias": [], "events": [{"mid": "1"}]})
    ]
    harness.unsubscribe(ann, pair)
    assert harness.transport(ann).of("unsubscribed") == [
        (pair, {"members": {}, "alias": [], "events": []})
    ]
    harness.client_event(ann, pair, "msg", "x")
    assert [e[0] for e in harness.transport(ann).errors()] == [4009]
    assert harness.store.persisted == []
    # a member not named in the pair is not eligible
    harness.latest(eve, pair)
    assert [e[0] for e in harness.transport(eve).errors()] == [4009]
    # nor is the user once it left the presence channel
    harness.unsubscribe(ann, ROOM)
    harness.forget()
    harness.latest(ann, pair)
    assert [e[0] for e in harness.transport(ann).errors()] == [4009]


def test_direct_peer_subscription_needs_private_auth():
    harness = Harness()
    ann = harness.connect()
    pair = peer("ann", "zed")
    harness.subscribe(ann, pair)
    assert [e[0] for e in harness.transport(ann).errors()] == [4009]
    assert ann.channels == {}
    harness.subscribe_signed(ann, pair)
    assert harness.transport(ann).of("subscribed") == [
        (pair, {"members": {}, "alias": [], "events": []})
    ]


def test_everyone_leaving_leaves_nothing():
    harness = Harness()
    sessions = [harness.connect() for _ in range(6)]
    for i, session in enumerate(sessions):
        harness.join(session, ROOM, "u%d" % (i % 3), peer=i % 2 == 0)
        harness.subscribe(session, "news")
    harness.subscribe_signed(sessions[0], ROOM)
    for session in sessions:
        check_consistent(harness)
        harness.close(session)
    check_empty(harness)
