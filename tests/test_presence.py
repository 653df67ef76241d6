"""Presence channels, forged presence data and peer channels (contract §3.5, §4).

Pushi dialect over a real WebSocket against the real server process. To prove a
message did NOT arrive, a test does a ping round trip on that socket after the
action: a socket's messages are handled in order and its frames written in order.
Peer-channel joins get no reply: tests see them in `POST /sockets/<id>` and in
what reaches the sockets.
"""

from __future__ import annotations

import json
import socket
import struct

import pytest
from conftest import AppClient, Client, assert_nothing, until_pong
from test_channels import (
    ask,
    assert_one_error,
    assert_record,
    assert_stamped,
    channel_info,
    info,
    latest,
    refused,
    send_and_collect,
    socket_channels,
    unstamped,
)
from test_websocket import OP_CLOSE, RawSocket, close_payload, frame, port_of

ROOM = "presence-room"
PEER = "peer-room:alice&bob"
SUCCEEDED = "pusher_internal:subscription_succeeded"


# -- helpers ---------------------------------------------------------------------------


def channel_data(user_id: str, **more) -> dict:
    data = {"user_id": user_id, "user_info": {"name": user_id.title()}}
    data.update(more)
    return data


def join(client: Client, user_id: str, channel: str = ROOM, **more) -> dict:
    """Joins a presence channel with a correctly signed channel_data string."""
    reply = client.subscribe_signed(channel, channel_data(user_id, **more))
    assert reply["name"] == channel and user_id in reply["members"], reply
    return reply


def signed_subscribe(app: AppClient, client: Client, data_s: str, channel=ROOM):
    """The subscribe message of a presence join with `data_s` signed as is."""
    return {
        "channel": channel,
        "auth": app.auth(client.socket_id, channel, data_s),
        "channel_data": data_s,
    }


def member_message(event: str, data: dict, channel: str = ROOM) -> dict:
    """A member message exactly as the Pushi dialect sends it (contract §3.3)."""
    return {"event": event, "member": json.dumps(data), "channel": channel}


def added(data: dict, channel: str = ROOM) -> dict:
    return member_message("pusher:member_added", data, channel)


def removed(data: dict, channel: str = ROOM) -> dict:
    return member_message("pusher:member_removed", data, channel)


# -- presence subscriptions ------------------------------------------------------------


def test_presence_reply_lists_members(app):
    alice, bob = app.socket(), app.socket()
    assert join(alice, "alice") == info(ROOM, members={"alice": channel_data("alice")})
    assert join(bob, "bob") == info(
        ROOM, members={"alice": channel_data("alice"), "bob": channel_data("bob")}
    )


def test_member_added_goes_to_the_others_before_the_joiners_reply(app):
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    compact = '{"user_id":"bob","user_info":{"name":"Bob","tags":["a","b"]}}'
    bob.send("pusher:subscribe", signed_subscribe(app, bob, compact))
    got = until_pong(bob)
    assert len(got) == 1, "the joiner expected only its reply, got %r" % (got,)
    channel_info(got[0], SUCCEEDED, ROOM)
    # produced before bob's reply: already on its way to alice
    message = alice.next()
    assert message == {
        "event": "pusher:member_added",
        "member": (
            '{"user_id": "bob", "user_info": {"name": "Bob", "tags": ["a", "b"]}}'
        ),
        "channel": ROOM,
    }, message
    assert_nothing(alice, "a second member_added")


def test_a_connection_without_channel_data_is_no_member(app):
    """Valid auth without channel_data: events yes, member no, no member messages."""
    alice, watcher = app.socket(), app.socket()
    join(alice, "alice")
    reply = ask(
        watcher, "pusher:subscribe", ROOM, auth=app.auth(watcher.socket_id, ROOM)
    )
    assert reply == info(ROOM, members={"alice": channel_data("alice")}), reply
    assert_nothing(alice, "a member message for a socket that is no member")

    bob = app.socket()
    assert set(join(bob, "bob")["members"]) == {"alice", "bob"}
    alice.expect("pusher:member_added", ROOM)
    bob.close()
    alice.expect("pusher:member_removed", ROOM)
    assert_nothing(watcher, "member messages to a socket that is no member")

    app.publish(ROOM, "to everyone joined")
    assert watcher.next()["data"] == "to everyone joined"
    assert alice.next()["data"] == "to everyone joined"


def test_a_second_connection_is_not_announced_and_replaces_the_entry(app):
    observer, first, second = app.socket(), app.socket(), app.socket()
    join(observer, "watcher")
    old = channel_data("alice", user_info={"name": "Alice 1"})
    new = channel_data("alice", user_info={"name": "Alice 2"})
    first.subscribe_signed(ROOM, old)
    assert observer.next() == added(old)
    reply = second.subscribe_signed(ROOM, new)
    assert reply["members"] == {"watcher": channel_data("watcher"), "alice": new}
    assert_nothing(observer, "a second connection of a present user")

    # the replaced entry is not restored when the newer connection leaves
    ask(second, "pusher:unsubscribe", ROOM)
    assert_nothing(observer, "a member_removed while alice still has a socket")
    late = app.socket()
    assert join(late, "late")["members"]["alice"] == new
    assert observer.next() == added(channel_data("late"))

    # the last one leaving carries its own channel_data
    first.close()
    assert observer.next() == removed(old)
    assert_nothing(observer, "a second member_removed")


def abort(raw: RawSocket) -> None:
    """Resets a raw connection: no close frame, a TCP RST."""
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


@pytest.mark.parametrize("how", ["unsubscribe", "close", "reset"])
def test_member_removed_when_the_last_connection_leaves(app, how):
    observer, other = app.socket(), app.socket()
    join(observer, "watcher")
    join(other, "alice")
    raw = RawSocket(port_of(app.server))
    try:
        raw_id = raw.open(app.key)
        data_s = json.dumps(channel_data("alice", user_info={"name": "raw"}))
        raw.send_message(
            {
                "event": "pusher:subscribe",
                "data": {
                    "channel": ROOM,
                    "auth": app.auth(raw_id, ROOM, data_s),
                    "channel_data": data_s,
                },
            }
        )
        assert raw.message()["event"] == SUCCEEDED
        assert observer.next() == added(channel_data("alice"))

        other.close()
        assert_nothing(observer, "a member_removed while alice has a socket left")
        if how == "unsubscribe":
            raw.send_message({"event": "pusher:unsubscribe", "data": {"channel": ROOM}})
            reply = raw.message()
            assert channel_info(
                reply, "pusher_internal:unsubscription_succeeded", ROOM
            ) == info(ROOM, members={"watcher": channel_data("watcher")})
        elif how == "close":
            raw.send(frame(OP_CLOSE, close_payload(1000)))
        else:
            abort(raw)
        assert observer.next() == removed(json.loads(data_s))
        assert_nothing(observer, "a second member_removed")
    finally:
        raw.close()
    newcomer = app.socket()
    assert set(join(newcomer, "newcomer")["members"]) == {"watcher", "newcomer"}


def test_resubscribing_the_only_socket_announces_removal_then_addition(app):
    observer, alice = app.socket(), app.socket()
    join(observer, "watcher")
    join(alice, "alice")
    assert observer.next() == added(channel_data("alice"))
    again = channel_data("alice", user_info={"name": "Alice again"})
    reply = alice.subscribe_signed(ROOM, again)
    assert reply["members"] == {"watcher": channel_data("watcher"), "alice": again}
    assert observer.next() == removed(channel_data("alice"))
    assert observer.next() == added(again)
    assert_nothing(observer, "more member messages")
    assert socket_channels(app, alice.socket_id) == [ROOM]


def test_unsubscribe_reply_shows_the_members_after_leaving(app):
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    join(bob, "bob")
    assert alice.next() == added(channel_data("bob"))
    reply = ask(bob, "pusher:unsubscribe", ROOM)
    assert reply == info(ROOM, members={"alice": channel_data("alice")}), reply
    assert alice.next() == removed(channel_data("bob"))


def test_latest_on_presence_carries_the_members(app):
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    join(bob, "bob")
    app.publish(ROOM, "stored")
    message = alice.expect("message", ROOM)
    reply = ask(alice, "pusher:latest", ROOM)
    assert reply["members"] == {
        "alice": channel_data("alice"),
        "bob": channel_data("bob"),
    }, reply
    assert (reply["alias"], [e["mid"] for e in reply["events"]]) == (
        [],
        [message["mid"]],
    ), reply


def test_presence_client_event_has_no_user_id(app):
    """Pushi client events get no `user_id` (contract §5)."""
    alice, bob = app.socket(), app.socket()
    join(alice, "alice")
    join(bob, "bob")
    alice.expect("pusher:member_added", ROOM)
    alice.send("chat", "hello", channel=ROOM, user_id="admin")
    got = bob.next()
    assert_stamped(got)
    assert unstamped(got) == {"channel": ROOM, "event": "chat", "data": "hello"}, got
    assert_nothing(alice, "an echo")


# -- forged presence (signed by default, contract §4.4) --------------------------------


def forged_joins(app: AppClient, client: Client) -> dict:
    """Presence subscribe data that must be refused: (data, expected code)."""
    good = json.dumps(channel_data("mallory"))

    def signed(data_s: str) -> dict:
        return signed_subscribe(app, client, data_s)

    return {
        "no-auth": ({"channel": ROOM, "channel_data": good}, 4009),
        "changed-after-signing": (
            dict(signed(good), channel_data=json.dumps(channel_data("admin"))),
            4009,
        ),
        "signed-without-data": (
            dict(signed(good), auth=app.auth(client.socket_id, ROOM)),
            4009,
        ),
        "object-without-legacy-flag": (
            {
                "channel": ROOM,
                "auth": app.auth(client.socket_id, ROOM),
                "channel_data": channel_data("alice"),
            },
            4009,
        ),
        "not-json": (signed("{user_id: alice}"), 4000),
        "json-array": (signed('["alice"]'), 4000),
        "no-user-id": (signed('{"user_info": {"name": "nobody"}}'), 4000),
        "empty-user-id": (signed('{"user_id": ""}'), 4000),
        "user-id-object": (signed('{"user_id": {"id": 1}}'), 4000),
        "channel-data-number": (dict(signed(good), channel_data=5), 4000),
    }


def test_forged_presence_is_refused_and_the_connection_kept(app):
    watcher, client = app.socket(), app.socket()
    join(watcher, "watcher")
    for name, (data, code) in forged_joins(app, client).items():
        got = send_and_collect(client, "pusher:subscribe", data)
        try:
            assert_one_error(got, code, ROOM)
        except AssertionError as error:
            raise AssertionError("%s: %s" % (name, error)) from None
    assert socket_channels(app, client.socket_id) == []
    assert_nothing(watcher, "member messages for refused joins")
    # the connection stays usable
    assert set(join(client, "alice")["members"]) == {"watcher", "alice"}


def test_legacy_object_channel_data_accepted_with_the_flag(start_server):
    server = start_server({"PUSHI_LEGACY_PRESENCE_AUTH": "1"})
    app = AppClient(server)
    watcher, legacy, modern = app.socket(), app.socket(), app.socket()
    join(watcher, "watcher")
    data = channel_data("alice")
    reply = ask(
        legacy,
        "pusher:subscribe",
        ROOM,
        auth=app.auth(legacy.socket_id, ROOM),
        channel_data=data,
    )
    assert reply["members"] == {"watcher": channel_data("watcher"), "alice": data}
    assert watcher.next() == added(data)
    # the signed string form still works
    assert set(join(modern, "bob")["members"]) == {"watcher", "alice", "bob"}
    assert watcher.next() == added(channel_data("bob"))
    # a wrong signature is refused in the legacy form too, and so is no user_id
    other = app.socket()
    refused(
        other,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(legacy.socket_id, ROOM),
            "channel_data": channel_data("eve"),
        },
        4009,
        ROOM,
    )
    refused(
        other,
        "pusher:subscribe",
        {
            "channel": ROOM,
            "auth": app.auth(other.socket_id, ROOM),
            "channel_data": {"user_info": {}},
        },
        4000,
        ROOM,
    )
    assert_nothing(watcher, "member messages for refused joins")


# -- peer channels ---------------------------------------------------------------------


@pytest.mark.parametrize("first", ["alice", "bob"])
def test_peer_channel_joined_both_ways_without_replies(app, first):
    """The name sorts the two ids whoever joins first; no reply for the joins."""
    second = "bob" if first == "alice" else "alice"
    early, late = app.socket(), app.socket()
    join(early, first, peer=True)
    late.send(
        "pusher:subscribe",
        signed_subscribe(app, late, json.dumps(channel_data(second, peer=True))),
    )
    got = until_pong(late)
    assert len(got) == 1, "the joiner expected its presence reply only: %r" % (got,)
    channel_info(got[0], SUCCEEDED, ROOM)
    # the joins happened before the reply
    assert socket_channels(app, late.socket_id) == [ROOM, PEER]
    assert socket_channels(app, early.socket_id) == [ROOM, PEER]
    assert early.next() == added(channel_data(second, peer=True))
    assert_nothing(early, "a reply for an automatic peer join")
    app.publish(PEER, "to the pair")
    for client in (early, late):
        assert client.next()["channel"] == PEER


def test_the_joiners_flag_decides_and_the_others_join_whatever_theirs(app):
    bob1, bob2 = app.socket(), app.socket()
    join(bob1, "bob")
    join(bob2, "bob")
    alice = app.socket()
    join(alice, "alice", peer=True)  # alice's first connection: bob's join too
    for client in (alice, bob1, bob2):
        assert socket_channels(app, client.socket_id) == [ROOM, PEER]

    carol = app.socket()
    join(carol, "carol")  # no flag: creates nothing, even with a flagged alice
    assert socket_channels(app, carol.socket_id) == [ROOM]
    assert socket_channels(app, alice.socket_id) == [ROOM, PEER]

    # alice's later connections: with the flag they join the pairs, without not
    flagged, plain = app.socket(), app.socket()
    join(flagged, "alice", peer=True)
    join(plain, "alice")
    assert socket_channels(app, flagged.socket_id) == [
        ROOM,
        PEER,
        "peer-room:alice&carol",
    ]
    assert socket_channels(app, plain.socket_id) == [ROOM]
    # a later connection's pairs do not pull the others' sockets in again
    assert socket_channels(app, carol.socket_id) == [ROOM]


def test_peer_client_event_reaches_the_other_user_only(app):
    alice, bob, carol = app.socket(), app.socket(), app.socket()
    join(bob, "bob", peer=True)
    join(alice, "alice", peer=True)
    join(carol, "carol")  # a member of the room, not of the alice&bob pair
    for client in (alice, bob, carol):
        until_pong(client)

    alice.send("whisper", "just for bob", channel=PEER)
    got = bob.next()
    assert_stamped(got)
    assert unstamped(got) == {
        "channel": PEER,
        "event": "whisper",
        "data": "just for bob",
    }
    assert_nothing(alice, "an echo of its own peer event")
    assert_nothing(carol, "an event of a pair it is not part of")

    [record] = latest(bob, PEER)
    assert_record(record, app, got, owner_id=alice.socket_id)


def test_eligible_members_may_read_and_leave_but_not_publish(app):
    """Eligible: a member whose user id is in the pair, joined or not (§3.5)."""
    carol, dave, erin, outsider = (app.socket() for _ in range(4))
    join(carol, "carol")
    join(dave, "dave")
    join(erin, "erin")
    for client in (carol, dave):
        until_pong(client)  # the member_added of the later joiners
    pair = "peer-room:carol&dave"  # no flag: the pair was never joined
    assert socket_channels(app, carol.socket_id) == [ROOM]
    assert latest(carol, pair) == []
    assert ask(carol, "pusher:unsubscribe", pair) == info(pair)
    refused(carol, "whisper", "x", 4009, pair, channel=pair)
    refused(carol, "pusher:subscribe", {"channel": pair}, 4009, pair)
    for client in (erin, outsider):
        refused(client, "pusher:latest", {"channel": pair}, 4009, pair)
        refused(client, "whisper", "x", 4009, pair, channel=pair)
    assert_nothing(dave, "events of refused requests")


def test_third_user_cannot_subscribe_read_or_publish_on_a_pair(app):
    alice, bob, carol = app.socket(), app.socket(), app.socket()
    join(bob, "bob", peer=True)
    join(alice, "alice", peer=True)
    join(carol, "carol")
    for client in (alice, bob):
        until_pong(client)
    refused(carol, "pusher:subscribe", {"channel": PEER}, 4009, PEER)
    refused(carol, "whisper", "intrusion", 4009, PEER, channel=PEER)
    refused(carol, "pusher:latest", {"channel": PEER}, 4009, PEER)
    for client in (alice, bob):
        assert_nothing(client, "an intruder's event")


def test_direct_subscription_to_a_pair_needs_private_auth(app):
    alice, bob = app.socket(), app.socket()
    join(bob, "bob", peer=True)
    join(alice, "alice", peer=True)
    auditor = app.socket()
    refused(auditor, "pusher:subscribe", {"channel": PEER}, 4009, PEER)
    assert auditor.subscribe_signed(PEER) == info(PEER)
    alice.send("whisper", "audited", channel=PEER)
    assert auditor.next()["data"] == "audited"
    assert bob.expect("whisper", PEER)["data"] == "audited"


def test_the_others_leave_the_pair_when_a_flagged_users_last_connection_leaves(app):
    alice1, alice2, bob = app.socket(), app.socket(), app.socket()
    join(bob, "bob")
    join(alice1, "alice", peer=True)
    join(alice2, "alice", peer=True)
    assert socket_channels(app, bob.socket_id) == [ROOM, PEER]
    alice1.close()
    bob.roundtrip()
    assert socket_channels(app, bob.socket_id) == [ROOM, PEER]
    alice2.close()
    assert bob.expect("pusher:member_removed", ROOM)
    assert socket_channels(app, bob.socket_id) == [ROOM]
    app.publish(PEER, "nobody left")
    assert_nothing(bob, "an event of a pair closed")


def test_leaving_presence_leaves_the_sockets_own_pairs(app):
    """Contract §4.9 (the original keeps them)."""
    alice, bob = app.socket(), app.socket()
    join(bob, "bob")  # not flagged: alice stays in the pair when bob leaves
    join(alice, "alice", peer=True)
    assert socket_channels(app, bob.socket_id) == [ROOM, PEER]
    reply = ask(bob, "pusher:unsubscribe", ROOM)
    assert reply == info(ROOM, members={"alice": channel_data("alice", peer=True)})
    assert socket_channels(app, bob.socket_id) == []
    assert socket_channels(app, alice.socket_id) == [ROOM, PEER]
    refused(bob, "whisper", "still here?", 4009, PEER, channel=PEER)

    # a flagged user leaving takes the others out of its pairs too
    carol, dave = app.socket(), app.socket()
    join(carol, "carol")  # no flag: creates nothing
    assert socket_channels(app, carol.socket_id) == [ROOM]
    join(dave, "dave", peer=True)
    alice_dave, carol_dave = "peer-room:alice&dave", "peer-room:carol&dave"
    assert socket_channels(app, dave.socket_id) == [ROOM, alice_dave, carol_dave]
    assert socket_channels(app, alice.socket_id) == [ROOM, PEER, alice_dave]
    assert socket_channels(app, carol.socket_id) == [ROOM, carol_dave]
    ask(dave, "pusher:unsubscribe", ROOM)
    assert socket_channels(app, dave.socket_id) == []
    assert socket_channels(app, alice.socket_id) == [ROOM, PEER]
    assert socket_channels(app, carol.socket_id) == [ROOM]


def test_only_the_socket_that_leaves_the_room_leaves_the_pair(app):
    alice1, alice2, bob = app.socket(), app.socket(), app.socket()
    join(alice1, "alice", peer=True)
    join(alice2, "alice", peer=True)
    join(bob, "bob", peer=True)
    bob.send("whisper", "to both of alice's sockets", channel=PEER)
    for client in (alice1, alice2):
        assert client.expect("whisper", PEER)["data"] == "to both of alice's sockets"

    ask(alice1, "pusher:unsubscribe", ROOM)
    assert socket_channels(app, alice1.socket_id) == []
    bob.send("whisper", "after one left", channel=PEER)
    assert alice2.expect("whisper", PEER)["data"] == "after one left"
    assert_nothing(alice1, "a pair event after leaving the room")
    assert_nothing(bob, "a member_removed while alice has a socket in the room")
