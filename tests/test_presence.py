"""Presence channels, forged presence data and peer channels (protocol §3.1-§3.4).

Pushi dialect over a real WebSocket against the real server process. To prove a
message did NOT arrive, a test does a ping round trip on that socket after the
action: a socket's messages are handled in order and its frames written in order.
"""

from __future__ import annotations

import json

from conftest import AppClient, Client, assert_nothing, until_pong

ROOM = "presence-room"


# -- helpers ---------------------------------------------------------------------------


def events_named(messages: list[dict], event: str) -> list[dict]:
    return [m for m in messages if m.get("event") == event]


def send_and_collect(client: Client, event: str, data=None, **fields) -> list[dict]:
    client.send(event, data, **fields)
    return until_pong(client)


def assert_refused(messages: list[dict], code: int | None = None, channel=None) -> dict:
    """One pusher:error (code, channel named) and no subscription success."""
    errors = events_named(messages, "pusher:error")
    assert len(errors) == 1, "expected one pusher:error, got %r" % (messages,)
    if code is not None:
        assert errors[0]["data"].get("code") == code, "expected code %d, got %r" % (
            code,
            errors[0],
        )
    if channel is not None:
        assert errors[0].get("channel") == channel, "expected %r named in %r" % (
            channel,
            errors[0],
        )
    succeeded = events_named(messages, "pusher_internal:subscription_succeeded")
    assert succeeded == [], "expected no subscription success, got %r" % succeeded
    return errors[0]


def channel_data(user_id: str, **more) -> dict:
    data = {"user_id": user_id, "user_info": {"name": user_id.title()}}
    data.update(more)
    return data


def join(client: Client, user_id: str, channel: str = ROOM, **more) -> dict:
    """Joins a presence channel with a correctly signed channel_data string."""
    reply = client.subscribe_signed(channel, channel_data(user_id, **more))
    assert reply.get("name") == channel, reply
    return reply


def latest(client: Client, channel: str, **params) -> list[dict]:
    client.send("pusher:latest", dict(channel=channel, **params))
    reply = client.expect("pusher_internal:latest", channel)
    return json.loads(reply["data"])["events"]


# -- presence subscriptions ------------------------------------------------------------


def test_presence_reply_lists_members(app):
    alice, bob = app.socket(), app.socket()
    reply = join(alice, "alice")
    assert reply == {"name": ROOM, "members": {"alice": channel_data("alice")}}, reply
    reply = join(bob, "bob")
    assert reply == {
        "name": ROOM,
        "members": {"alice": channel_data("alice"), "bob": channel_data("bob")},
    }, reply


def test_member_added_carries_string_encoded_channel_data(app):
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    data = json.dumps(channel_data("bob"))
    got = send_and_collect(
        bob,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(bob.socket_id, ROOM, data),
            "channel_data": data,
        },
    )
    assert [m["event"] for m in got] == ["pusher_internal:subscription_succeeded"], (
        "the joining socket expected only its subscription reply, got %r" % got
    )
    added = alice.expect("pusher:member_added", ROOM)
    assert isinstance(added.get("member"), str), "member must be a string: %r" % added
    assert json.loads(added["member"]) == channel_data("bob"), added
    assert_nothing(alice, "a second member_added")


def test_second_socket_of_same_user_is_not_a_new_member(app):
    observer, first, second = app.socket(), app.socket(), app.socket()
    join(observer, "watcher")
    join(first, "alice")
    observer.expect("pusher:member_added", ROOM)
    updated = channel_data("alice", user_info={"name": "Alice 2"})
    reply = second.subscribe_signed(ROOM, updated)
    assert set(reply["members"]) == {"watcher", "alice"}, reply
    assert reply["members"]["alice"] == updated, "expected latest channel_data: %r" % (
        reply,
    )
    got = until_pong(observer)
    assert events_named(got, "pusher:member_added") == [], (
        "a second socket of a present user must not announce it again: %r" % got
    )


def test_member_removed_only_when_last_socket_unsubscribes(app):
    observer, first, second = app.socket(), app.socket(), app.socket()
    join(observer, "watcher")
    join(first, "alice")
    join(second, "alice")
    observer.expect("pusher:member_added", ROOM)

    first.send("pusher:unsubscribe", {"channel": ROOM})
    first.expect("pusher_internal:unsubscription_succeeded", ROOM)
    got = until_pong(observer)
    assert events_named(got, "pusher:member_removed") == [], (
        "alice still has a socket: no member_removed expected, got %r" % got
    )

    second.send("pusher:unsubscribe", {"channel": ROOM})
    second.expect("pusher_internal:unsubscription_succeeded", ROOM)
    removed = observer.expect("pusher:member_removed", ROOM)
    assert json.loads(removed["member"])["user_id"] == "alice", removed

    # a newcomer sees only the watcher
    late = app.socket()
    assert set(join(late, "late")["members"]) == {"watcher", "late"}


def test_member_removed_only_when_last_socket_disconnects(app):
    observer, first, second = app.socket(), app.socket(), app.socket()
    join(observer, "watcher")
    join(first, "alice")
    join(second, "alice")
    observer.expect("pusher:member_added", ROOM)

    first.close()  # returns once the server has closed its side
    got = until_pong(observer)
    assert events_named(got, "pusher:member_removed") == [], (
        "alice still has a socket: no member_removed expected, got %r" % got
    )
    second.close()
    removed = observer.expect("pusher:member_removed", ROOM)
    assert isinstance(removed["member"], str), removed
    assert json.loads(removed["member"])["user_id"] == "alice", removed


def test_presence_client_event_carries_sender_user_id(app):
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    join(bob, "bob")
    alice.send("chat", "hello", channel=ROOM)
    got = bob.expect("chat", ROOM)
    assert got.get("user_id") == "alice", "expected the sender's user_id: %r" % got
    assert got["data"] == "hello"
    # a user_id in the client's message is not taken: the signed one is
    alice.send("chat", "forged", channel=ROOM, user_id="admin")
    got = bob.expect("chat", ROOM)
    assert got.get("user_id") == "alice", "user_id taken from the client: %r" % got


# -- forged presence -------------------------------------------------------------------


def test_presence_without_auth_is_refused(app):
    client = app.socket()
    data = json.dumps(channel_data("alice"))
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": ROOM, "channel_data": data}
    )
    assert_refused(got, 4009, ROOM)


def test_channel_data_changed_after_signing_is_refused(app):
    victim_watcher, attacker = app.socket(), app.socket()
    join(victim_watcher, "watcher")
    signed = json.dumps(channel_data("mallory"))
    forged = json.dumps(channel_data("admin"))
    got = send_and_collect(
        attacker,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(attacker.socket_id, ROOM, signed),
            "channel_data": forged,
        },
    )
    assert_refused(got, 4009, ROOM)
    assert_nothing(victim_watcher, "a member_added for a forged user")


def test_channel_data_object_refused_without_legacy_flag(app):
    client, watcher = app.socket(), app.socket()
    join(watcher, "watcher")
    # the legacy form: channel_data an object, signed as socket_id:channel
    got = send_and_collect(
        client,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(client.socket_id, ROOM),
            "channel_data": channel_data("alice"),
        },
    )
    assert_refused(got, channel=ROOM)
    assert_nothing(watcher, "a member_added for an unsigned user id")


def test_missing_user_id_is_refused(app):
    client = app.socket()
    data = json.dumps({"user_info": {"name": "nobody"}})
    got = send_and_collect(
        client,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(client.socket_id, ROOM, data),
            "channel_data": data,
        },
    )
    assert_refused(got, channel=ROOM)
    # the connection stays usable
    assert join(client, "alice")["members"] == {"alice": channel_data("alice")}


def test_legacy_object_channel_data_accepted_with_flag(start_server):
    server = start_server({"PUSHI_LEGACY_PRESENCE_AUTH": "1"})
    app = AppClient(server)
    watcher, legacy = app.socket(), app.socket()
    join(watcher, "watcher")
    data = channel_data("alice")
    legacy.send(
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(legacy.socket_id, ROOM),
            "channel_data": data,
        },
    )
    reply = legacy.expect("pusher_internal:subscription_succeeded", ROOM)
    members = json.loads(reply["data"])["members"]
    assert members == {"watcher": channel_data("watcher"), "alice": data}, members
    added = watcher.expect("pusher:member_added", ROOM)
    assert json.loads(added["member"]) == data
    # a wrong signature is still refused in the legacy form
    other = app.socket()
    got = send_and_collect(
        other,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(legacy.socket_id, ROOM),
            "channel_data": channel_data("eve"),
        },
    )
    assert_refused(got, 4009, ROOM)


# -- peer channels ---------------------------------------------------------------------

PEER = "peer-room:alice&bob"


def peer_pair(app: AppClient) -> tuple[Client, Client]:
    """bob then alice join presence-room with peer: true; both get the peer channel."""
    bob, alice = app.socket(), app.socket()
    join(bob, "bob", peer=True)
    join(alice, "alice", peer=True)
    for client in (alice, bob):
        reply = client.expect("pusher_internal:subscription_succeeded", PEER)
        assert json.loads(reply["data"]) == {"name": PEER}, reply
    return alice, bob


def test_peer_channel_joined_both_ways_with_sorted_name(app):
    # alice first, so the joiner (bob) sorts last; peer_pair covers the other order
    alice, bob = app.socket(), app.socket()
    join(alice, "alice", peer=True)
    join(bob, "bob", peer=True)
    got_alice = until_pong(alice)
    got_bob = until_pong(bob)
    for name, got in (("alice", got_alice), ("bob", got_bob)):
        peers = [
            m.get("channel")
            for m in events_named(got, "pusher_internal:subscription_succeeded")
        ]
        assert peers == [PEER], "%s: expected a subscription to %s, got %r" % (
            name,
            PEER,
            got,
        )


def test_peer_client_event_reaches_other_user_only(app):
    alice, bob = peer_pair(app)
    carol = app.socket()
    join(carol, "carol")  # a member of the room, not of the alice&bob pair
    until_pong(alice)
    until_pong(bob)
    until_pong(carol)

    alice.send("whisper", "just for bob", channel=PEER)
    got = bob.expect("whisper", PEER)
    assert got["data"] == "just for bob"
    assert got.get("user_id") == "alice", "expected the sender's user_id: %r" % got
    assert_nothing(alice, "an echo of its own peer event")
    assert_nothing(carol, "an event of a peer channel it is not part of")


def test_latest_on_peer_channel_for_members(app):
    alice, bob = peer_pair(app)
    alice.send("whisper", "first", channel=PEER)
    bob.expect("whisper", PEER)
    bob.send("whisper", "second", channel=PEER)
    alice.expect("whisper", PEER)
    for client in (alice, bob):
        stored = latest(client, PEER)
        assert [(e["data"], e.get("user_id")) for e in stored] == [
            ("second", "bob"),
            ("first", "alice"),
        ], stored


def test_third_user_cannot_subscribe_read_or_publish_on_peer_channel(app):
    alice, bob = peer_pair(app)
    carol = app.socket()
    join(carol, "carol")
    until_pong(carol)

    got = send_and_collect(carol, "pusher:subscribe", {"channel": PEER})
    assert_refused(got, 4009, PEER)
    got = send_and_collect(carol, "whisper", "intrusion", channel=PEER)
    assert len(events_named(got, "pusher:error")) == 1, got
    assert events_named(got, "pusher:error")[0]["data"]["code"] == 4009, got
    got = send_and_collect(carol, "pusher:latest", {"channel": PEER})
    assert len(events_named(got, "pusher:error")) == 1, got
    assert events_named(got, "pusher_internal:latest") == [], got

    # a socket outside the presence channel altogether
    dave = app.socket()
    got = send_and_collect(dave, "pusher:subscribe", {"channel": PEER})
    assert_refused(got, 4009, PEER)
    got = send_and_collect(dave, "whisper", "intrusion", channel=PEER)
    assert len(events_named(got, "pusher:error")) == 1, got

    for client in (alice, bob):
        got = until_pong(client)
        assert events_named(got, "whisper") == [], "intruder's event arrived: %r" % got


def test_leaving_presence_leaves_peer_channel(app):
    alice, bob = peer_pair(app)
    alice.subscribe("marker")
    alice.send("pusher:unsubscribe", {"channel": ROOM})
    alice.expect("pusher_internal:unsubscription_succeeded", ROOM)
    bob.expect("pusher:member_removed", ROOM)

    app.publish(PEER, "after leaving")
    app.publish("marker", "marker")
    got = alice.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    got = send_and_collect(alice, "whisper", "still here?", channel=PEER)
    assert len(events_named(got, "pusher:error")) == 1, (
        "publishing on a peer channel after leaving the room must fail: %r" % got
    )
    got = until_pong(bob)
    assert events_named(got, "whisper") == [], got


def test_peer_channel_reaches_every_socket_of_the_other_user(app):
    alice1, alice2, bob = app.socket(), app.socket(), app.socket()
    join(alice1, "alice", peer=True)
    join(alice2, "alice", peer=True)
    join(bob, "bob", peer=True)
    for client in (alice1, alice2, bob):
        client.expect("pusher_internal:subscription_succeeded", PEER)

    bob.send("whisper", "to both of alice's sockets", channel=PEER)
    for client in (alice1, alice2):
        assert client.expect("whisper", PEER)["data"] == "to both of alice's sockets"

    # one of alice's sockets leaves the room: only that one leaves the peer channel
    alice1.subscribe("marker")
    alice1.send("pusher:unsubscribe", {"channel": ROOM})
    alice1.expect("pusher_internal:unsubscription_succeeded", ROOM)
    bob.send("whisper", "after one left", channel=PEER)
    assert alice2.expect("whisper", PEER)["data"] == "after one left"
    app.publish("marker", "marker")
    got = alice1.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    got = until_pong(bob)
    assert events_named(got, "pusher:member_removed") == [], (
        "alice still has a socket in the room: %r" % got
    )
