"""The Pusher dialect (protocol 7 on `/app/<key>`), frame by frame, on a real server.

A raw protocol client (the `websockets` library, or `RawSocket` where the test
must see control frames) checks exact frames and close codes: connection,
protocol versions, unknown keys, ping/pong both ways and the liveness sweep,
public/private/presence subscriptions and their refusals, unsubscribe, client
events and their limits, encrypted and cache channels, user sign-in and the
user's channel. Shapes and codes: Pusher's protocol documentation
(protocol.md §1-3 here).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from conftest import WAIT_SECONDS, AppClient, Client, assert_nothing, until_pong
from test_websocket import OP_PING, RawSocket, assert_closed_with
from websockets.exceptions import ConnectionClosed

from pushi.base.auth import channel_auth, user_auth

SOCKET_ID = re.compile(r"\d+\.\d+")
QUERY = "?protocol=7&client=js&version=8.4.0&flash=false"


def pusher_path(key: str, query: str = QUERY) -> str:
    """The path pusher-js connects to."""
    return "app/%s%s" % (key, query)


class PusherClient(Client):
    """A raw Pusher-dialect client: the conftest client on `/app/<key>`."""

    def __init__(self, app: AppClient, query: str = QUERY, **kwargs) -> None:
        super().__init__(app.server.ws_url(pusher_path(app.key, query)), app, **kwargs)
        self.established = self.seen[0]

    def subscribe_pusher(self, channel: str, auth=None, channel_data=None) -> dict:
        """Subscribes; returns the whole `subscription_succeeded` frame (or fails)."""
        data = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        message = self.next()
        assert message.get("event") == "pusher_internal:subscription_succeeded" and (
            message.get("channel") == channel
        ), "expected subscription_succeeded on %s, got %r" % (channel, message)
        return message

    def join(self, channel: str, user_id: str, user_info=None) -> dict:
        """Joins a presence channel with signed channel_data; returns the reply."""
        data = {"user_id": user_id}
        if user_info is not None:
            data["user_info"] = user_info
        text = json.dumps(data)
        auth = channel_auth(
            self.app.key, self.app.secret, self.socket_id, channel, text
        )
        return self.subscribe_pusher(channel, auth, text)

    def private(self, channel: str) -> dict:
        """Subscribes a private channel with a valid signature."""
        return self.subscribe_pusher(
            channel,
            channel_auth(self.app.key, self.app.secret, self.socket_id, channel),
        )

    def signin(self, user: dict, auth: str | None = None) -> str:
        """Sends `pusher:signin` for `user` (signed unless `auth` is given)."""
        user_data = json.dumps(user)
        if auth is None:
            auth = user_auth(self.app.key, self.app.secret, self.socket_id, user_data)
        self.send("pusher:signin", {"auth": auth, "user_data": user_data})
        return user_data


@pytest.fixture
def pusher(closing):
    """Opens Pusher-dialect clients of an app, closed after the test."""

    def open_client(app: AppClient, **kwargs) -> PusherClient:
        client = PusherClient(app, **kwargs)
        closing.append(client)
        return client

    return open_client


@pytest.fixture
def raw(server):
    """A raw socket to the shared server, closed after the test."""
    handle = RawSocket(server.server_port)
    yield handle
    handle.close()


def error_frame(code: int) -> dict:
    """What to match a Pusher `pusher:error` against (its message is free text)."""
    return {"event": "pusher:error", "code": code}


def assert_error(message: dict, code: int) -> None:
    """A Pusher `pusher:error`: exactly `event` and `data: {code, message}`."""
    assert sorted(message) == ["data", "event"], message
    assert message["event"] == "pusher:error", message
    assert sorted(message["data"]) == ["code", "message"], message
    assert message["data"]["code"] == code, message
    assert isinstance(message["data"]["message"], str), message


# -- connecting ------------------------------------------------------------------------


def test_connection_established_has_pusher_socket_id_and_activity_timeout(app, pusher):
    client = pusher(app)
    message = client.established
    assert sorted(message) == ["data", "event"], message
    assert message["event"] == "pusher:connection_established", message
    assert isinstance(message["data"], str), "data must be string-encoded"
    data = json.loads(message["data"])
    assert sorted(data) == ["activity_timeout", "socket_id"], data
    assert SOCKET_ID.fullmatch(data["socket_id"]), data
    assert data["activity_timeout"] == 120, data


def test_socket_ids_are_unique(app, pusher):
    ids = [pusher(app).socket_id for _ in range(20)]
    assert len(set(ids)) == 20, ids
    assert all(SOCKET_ID.fullmatch(i) for i in ids), ids


@pytest.mark.parametrize("version", ["5", "6", "7"])
def test_protocols_5_to_7_are_served(app, pusher, version):
    client = pusher(app, query="?protocol=%s&client=js&version=8.4.0" % version)
    assert SOCKET_ID.fullmatch(client.socket_id), client.socket_id
    client.roundtrip()


@pytest.mark.parametrize(
    "query, code",
    [
        ("?client=js&version=8.4.0", 4008),
        ("?protocol=&client=js&version=8.4.0", 4008),
        ("?protocol=4&client=js&version=8.4.0", 4007),
        ("?protocol=8&client=js&version=8.4.0", 4007),
        ("?protocol=seven&client=js", 4007),
    ],
    ids=["missing", "empty", "too-old", "too-new", "not-a-number"],
)
def test_unsupported_or_missing_protocol_is_refused(raw, app, query, code):
    raw.handshake(pusher_path(app.key, query))
    assert_error(raw.message(), code)
    assert_closed_with(raw, code)


@pytest.mark.parametrize(
    "key", [secrets.token_hex(32), "app-key-unknown", "bad key!"], ids=str
)
def test_unknown_key_gets_pusher_error_4001_and_close_4001(raw, key):
    raw.handshake(pusher_path(key.replace(" ", "%20")))
    assert_error(raw.message(), 4001)
    assert_closed_with(raw, 4001)


def test_pushi_dialect_keeps_app_prefix_without_pusher_query(app, connect):
    """pushi-contract.md §3.1: any prefix before the key, `/app/` included."""
    client = Client(app.server.ws_url("app/" + app.key))
    try:
        assert json.loads(client.seen[0]["data"]) == {"socket_id": client.socket_id}
        client.subscribe("pushi-under-app")
        app.publish("pushi-under-app", "still pushi")
        assert client.expect("message", "pushi-under-app")["data"] == "still pushi"
    finally:
        client.close()


# -- ping / pong and liveness ----------------------------------------------------------


def test_pusher_ping_gets_pusher_pong(app, pusher):
    client = pusher(app)
    client.send("pusher:ping", {})
    assert client.next() == {"event": "pusher:pong", "data": {}}


@pytest.fixture(scope="module")
def lively(tmp_path_factory):
    """A server that probes after 1 s of silence and waits 1 s for the answer."""
    from conftest import Server

    env = {"PUSHI_ACTIVITY_TIMEOUT": "1", "PUSHI_PONG_TIMEOUT": "1"}
    handle = Server(str(tmp_path_factory.mktemp("lively")), env).start()
    yield handle
    handle.stop()


def test_silent_pusher_connection_is_pinged_then_closed_4201(lively):
    app = AppClient(lively)
    client = PusherClient(app)
    try:
        assert json.loads(client.established["data"])["activity_timeout"] == 1
        assert client.next(timeout=3) == {"event": "pusher:ping", "data": {}}
        with pytest.raises(ConnectionClosed) as closed:
            client.next(timeout=3)
        assert (
            closed.value.rcvd is not None and closed.value.rcvd.code == 4201
        ), closed.value
    finally:
        client.close()


def test_pong_keeps_a_pusher_connection_open(lively):
    app = AppClient(lively)
    client = PusherClient(app)
    try:
        for _ in range(3):
            # each ping comes only after the previous pong proved us alive
            assert client.next(timeout=3) == {"event": "pusher:ping", "data": {}}
            client.send("pusher:pong", {})
        client.roundtrip()
    finally:
        client.close()


def test_silent_pushi_peer_gets_rfc_pings_and_leaves_presence(lively):
    """The Pushi dialect is probed with ping frames; a peer that never answers
    is closed (4201) and stops counting as a presence member."""
    app = AppClient(lively)
    watcher = Client(lively.ws_url(app.key), app)
    raw = RawSocket(lively.server_port)
    try:
        socket_id = raw.open(app.key)
        data = json.dumps({"user_id": "ghost"})
        auth = channel_auth(app.key, app.secret, socket_id, "presence-live", data)
        raw.send_message(
            {
                "event": "pusher:subscribe",
                "data": {
                    "channel": "presence-live",
                    "auth": auth,
                    "channel_data": data,
                },
            }
        )
        assert raw.message()["event"] == "pusher_internal:subscription_succeeded"
        watcher.subscribe_signed("presence-live", {"user_id": "watcher"})
        frames = []
        while True:  # the watcher's member_added comes first
            fin, opcode, payload = raw.read_frame()
            if opcode == OP_PING:
                break
            frames.append((opcode, payload))
            assert len(frames) < 3, "expected an RFC 6455 ping, got %r" % frames
        code, _, before = raw.expect_close()
        assert code == 4201, (code, before)
        gone = watcher.expect("pusher:member_removed", "presence-live", timeout=5)
        assert json.loads(gone["member"])["user_id"] == "ghost", gone
    finally:
        raw.close()
        watcher.close()


# -- subscriptions ---------------------------------------------------------------------


def test_public_subscription_replies_empty_data_and_receives_events(app, pusher):
    client = pusher(app)
    reply = client.subscribe_pusher("news")
    assert reply == {
        "event": "pusher_internal:subscription_succeeded",
        "channel": "news",
        "data": "{}",
    }
    app.publish("news", {"n": 1}, event="update")
    got = client.expect("update", "news")
    assert json.loads(got["data"]) == {"n": 1}, got


def test_one_frame_for_both_dialects(app, pusher):
    """A REST publish reaches Pusher and Pushi sockets with the same frame."""
    pusher_client = pusher(app)
    pushi_client = app.socket()
    try:
        pusher_client.subscribe_pusher("shared")
        pushi_client.subscribe("shared")
        app.publish("shared", "same", event="both")
        a = pusher_client.expect("both", "shared")
        b = pushi_client.expect("both", "shared")
        assert a == b, (a, b)
    finally:
        pushi_client.close()


def test_private_subscription_with_valid_auth(app, pusher):
    client = pusher(app)
    assert client.private("private-room")["data"] == "{}"


@pytest.mark.parametrize(
    "auth",
    [None, "", "nokey", "wrong:" + "0" * 64],
    ids=["missing", "empty", "malformed", "bad-signature"],
)
def test_refused_private_subscription_gets_subscription_error(app, pusher, auth):
    client = pusher(app)
    data = {"channel": "private-locked"}
    if auth is not None:
        data["auth"] = auth
    client.send("pusher:subscribe", data)
    message = client.next()
    assert message["event"] == "pusher:subscription_error", message
    assert message["channel"] == "private-locked", message
    assert message["data"]["type"] == "AuthError", message
    assert message["data"]["status"] == 401, message
    assert isinstance(message["data"]["error"], str), message
    app.publish("private-locked", "secret")
    assert_nothing(client, "an event on a refused channel")


def test_presence_reply_and_member_messages(app, pusher):
    alice, bob = pusher(app), pusher(app)
    first = alice.join("presence-room", "alice", {"name": "Alice"})
    assert json.loads(first["data"]) == {
        "presence": {"ids": ["alice"], "hash": {"alice": {"name": "Alice"}}, "count": 1}
    }
    second = bob.join("presence-room", "bob", {"name": "Bob"})
    presence = json.loads(second["data"])["presence"]
    assert presence == {
        "ids": ["alice", "bob"],
        "hash": {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}},
        "count": 2,
    }, presence
    added = alice.expect("pusher_internal:member_added", "presence-room")
    assert sorted(added) == ["channel", "data", "event"], added
    assert json.loads(added["data"]) == {"user_id": "bob", "user_info": {"name": "Bob"}}
    bob.close()
    removed = alice.expect("pusher_internal:member_removed", "presence-room")
    assert json.loads(removed["data"]) == {"user_id": "bob"}, removed


def test_forged_presence_data_is_refused(app, pusher):
    """channel_data signed for one user cannot claim another."""
    client = pusher(app)
    signed = json.dumps({"user_id": "mallory"})
    forged = json.dumps({"user_id": "admin"})
    auth = channel_auth(app.key, app.secret, client.socket_id, "presence-x", signed)
    client.send(
        "pusher:subscribe",
        {"channel": "presence-x", "auth": auth, "channel_data": forged},
    )
    message = client.next()
    assert message["event"] == "pusher:subscription_error", message
    assert message["data"]["status"] == 401, message


def test_auth_of_another_socket_is_refused(app, pusher):
    thief, owner = pusher(app), pusher(app)
    auth = channel_auth(app.key, app.secret, owner.socket_id, "private-s")
    thief.send("pusher:subscribe", {"channel": "private-s", "auth": auth})
    assert thief.next()["event"] == "pusher:subscription_error"


@pytest.mark.parametrize(
    "channel", ["has space", "a" * 165, "slash/name", "", "é"], ids=str
)
def test_names_outside_pushers_rules_get_pusher_error(app, pusher, channel):
    client = pusher(app)
    client.send("pusher:subscribe", {"channel": channel})
    assert_error(client.next(), 4000)


def test_longest_pusher_name_and_every_allowed_character(app, pusher):
    client = pusher(app)
    client.subscribe_pusher("a" * 164)
    client.subscribe_pusher("Az09_-=@,.;")


def test_unsubscribe_gets_no_reply_and_stops_events(app, pusher):
    client = pusher(app)
    client.subscribe_pusher("leaving")
    client.send("pusher:unsubscribe", {"channel": "leaving"})
    assert_nothing(client, "an unsubscribe")
    app.publish("leaving", "gone")
    assert_nothing(client, "an event after unsubscribing")


def test_presence_member_cap_applies(start_server):
    server = start_server({"PUSHI_MAX_PRESENCE_MEMBERS": "1"})
    app = AppClient(server)
    first, second = PusherClient(app), PusherClient(app)
    try:
        first.join("presence-full", "one")
        data = json.dumps({"user_id": "two"})
        auth = channel_auth(
            app.key, app.secret, second.socket_id, "presence-full", data
        )
        second.send(
            "pusher:subscribe",
            {"channel": "presence-full", "auth": auth, "channel_data": data},
        )
        assert_error(second.next(), 4100)
    finally:
        first.close()
        second.close()


# -- client events ---------------------------------------------------------------------


def test_client_event_reaches_others_never_the_sender(app, pusher):
    sender, other = pusher(app), pusher(app)
    sender.private("private-chat")
    other.private("private-chat")
    sender.send("client-typing", {"who": "me"}, channel="private-chat")
    got = other.expect("client-typing", "private-chat")
    assert sorted(got) == ["channel", "data", "event"], got
    assert json.loads(got["data"]) == {"who": "me"}, got
    assert_nothing(sender, "the sender's own client event")


def test_client_event_is_not_stored(app, pusher):
    sender, other = pusher(app), pusher(app)
    sender.private("private-nostore")
    other.private("private-nostore")
    sender.send("client-x", "hi", channel="private-nostore")
    other.expect("client-x", "private-nostore")
    events = app.request("GET", "events", params={"count": 100}).json()["events"]
    assert not [e for e in events if e["channel"] == "private-nostore"], events


def test_client_event_on_presence_carries_user_id(app, pusher):
    sender, other = pusher(app), pusher(app)
    sender.join("presence-chat", "alice")
    other.join("presence-chat", "bob")
    sender.expect("pusher_internal:member_added", "presence-chat")
    sender.send("client-hello", {"x": 1}, channel="presence-chat")
    got = other.expect("client-hello", "presence-chat")
    assert got["user_id"] == "alice", got
    assert sorted(got) == ["channel", "data", "event", "user_id"], got


@pytest.mark.parametrize(
    "event, channel, subscribe",
    [
        ("client-x", "public-room", "public"),
        ("typing", "private-named", "private"),
        ("client-x", "private-unjoined", None),
        ("pusher:subscribe-ish", "private-sys", "private"),
    ],
    ids=["public-channel", "no-client-prefix", "not-subscribed", "reserved"],
)
def test_refused_client_events(app, pusher, event, channel, subscribe):
    sender, other = pusher(app), pusher(app)
    for client in (sender, other):
        if subscribe == "public":
            client.subscribe_pusher(channel)
        elif subscribe == "private":
            client.private(channel)
    if subscribe is None:
        other.private(channel)
    sender.send(event, {"x": 1}, channel=channel)
    message = sender.next()
    assert message["event"] == "pusher:error", message
    assert "channel" not in message, message
    assert message["data"]["code"] in (4000, 4009), message
    assert_nothing(other, "a refused client event")


def test_client_events_over_ten_a_second_get_4301(app, pusher):
    sender, other = pusher(app), pusher(app)
    sender.private("private-fast")
    other.private("private-fast")
    for i in range(15):
        sender.send("client-n", {"i": i}, channel="private-fast")
    got = until_pong(sender)
    codes = [m["data"]["code"] for m in got if m["event"] == "pusher:error"]
    assert codes and set(codes) == {4301}, got
    delivered = until_pong(other)
    assert 10 <= len(delivered) < 15, delivered


def test_client_event_over_the_payload_limit_is_refused(app, pusher):
    sender, other = pusher(app), pusher(app)
    sender.private("private-big")
    other.private("private-big")
    sender.send("client-big", "x" * 10241, channel="private-big")
    message = sender.next()
    assert message["event"] == "pusher:error", message
    assert_nothing(other, "an oversized client event")
    sender.send("client-big", "x" * 10240, channel="private-big")
    assert len(other.expect("client-big", "private-big")["data"]) == 10240


# -- encrypted and cache channels ------------------------------------------------------


def test_encrypted_channel_relays_ciphertext_and_refuses_client_events(app, pusher):
    client, other = pusher(app), pusher(app)
    client.private("private-encrypted-vault")
    other.private("private-encrypted-vault")
    sealed = json.dumps({"ciphertext": "c2VjcmV0", "nonce": "bm9uY2U="})
    app.publish("private-encrypted-vault", sealed, event="sealed")
    assert client.expect("sealed", "private-encrypted-vault")["data"] == sealed
    assert other.expect("sealed", "private-encrypted-vault")["data"] == sealed
    client.send("client-x", {"a": 1}, channel="private-encrypted-vault")
    assert client.next()["event"] == "pusher:error"
    assert_nothing(other, "a client event on an encrypted channel")


def test_cache_channel_misses_then_replays_the_last_event(app, pusher):
    name = "cache-%s" % secrets.token_hex(4)
    early = pusher(app)
    early.subscribe_pusher(name)
    assert early.next() == {"event": "pusher:cache_miss", "channel": name}
    app.publish(name, "one", event="tick")
    app.publish(name, "two", event="tick")
    assert early.expect("tick", name)["data"] == "one"
    assert early.expect("tick", name)["data"] == "two"
    late = pusher(app)
    late.subscribe_pusher(name)
    replay = late.next()
    assert (replay["event"], replay["channel"], replay["data"]) == ("tick", name, "two")
    assert_nothing(late, "more than the last event")


def test_private_cache_channel_replays_too(app, pusher):
    name = "private-cache-%s" % secrets.token_hex(4)
    app.publish(name, "kept", event="state")
    client = pusher(app)
    client.private(name)
    assert client.next()["data"] == "kept"


def test_pushi_dialect_sees_cache_names_as_plain_channels(app, pusher):
    name = "cache-%s" % secrets.token_hex(4)
    app.publish(name, "kept", event="state")
    client = app.socket()
    try:
        client.subscribe(name)
        assert_nothing(client, "a replay to a Pushi socket")
    finally:
        client.close()


# -- user authentication ---------------------------------------------------------------


def test_signin_then_server_to_user_events(app, pusher):
    client = pusher(app)
    user_data = client.signin({"id": "u-1", "user_info": {"name": "U"}})
    assert client.next() == {
        "event": "pusher:signin_success",
        "data": {"user_data": user_data},
    }
    # pusher-js subscribes the user's channel itself, with an empty auth
    client.send("pusher:subscribe", {"channel": "#server-to-user-u-1", "auth": ""})
    reply = client.next()
    assert reply["event"] == "pusher_internal:subscription_succeeded", reply
    app.publish("#server-to-user-u-1", {"for": "you"}, event="personal")
    got = client.expect("personal", "#server-to-user-u-1")
    assert json.loads(got["data"]) == {"for": "you"}, got
    assert_nothing(client, "a second copy")


def test_signed_in_socket_gets_user_events_without_subscribing(app, pusher):
    client = pusher(app)
    client.signin({"id": "u-2"})
    client.expect("pusher:signin_success")
    app.publish("#server-to-user-u-2", "direct", event="note")
    assert client.expect("note", "#server-to-user-u-2")["data"] == "direct"


@pytest.mark.parametrize(
    "auth", ["", "x:" + "0" * 64, None], ids=["empty", "bad-signature", "other-key"]
)
def test_signin_with_bad_signature_gets_4009(app, pusher, auth):
    client = pusher(app)
    if auth is None:
        user_data = json.dumps({"id": "u"})
        auth = user_auth(app.key, "not-the-secret", client.socket_id, user_data)
    client.signin({"id": "u"}, auth=auth)
    assert_error(client.next(), 4009)
    app.publish("#server-to-user-u", "leak", event="note")
    assert_nothing(client, "a user event after a refused signin")


def test_user_channel_of_someone_else_is_refused(app, pusher):
    client = pusher(app)
    client.signin({"id": "me"})
    client.expect("pusher:signin_success")
    client.send("pusher:subscribe", {"channel": "#server-to-user-you", "auth": ""})
    message = client.next()
    assert message["event"] == "pusher:subscription_error", message


def test_pushi_socket_cannot_read_a_users_channel(app):
    client = app.socket()
    try:
        client.send("pusher:subscribe", {"channel": "#server-to-user-victim"})
        message = client.next()
        assert message["event"] == "pusher:error", message
        assert message["data"]["code"] == 4009, message
    finally:
        client.close()


def test_signin_without_an_id_is_refused(app, pusher):
    client = pusher(app)
    client.signin({"name": "no id"})
    assert_error(client.next(), 4000)


def test_pusher_socket_cannot_use_pushi_latest(app, pusher):
    """`pusher:latest` is a Pushi extension: in the Pusher dialect it is no command."""
    client = pusher(app)
    client.subscribe_pusher("hist")
    client.send("pusher:latest", {"channel": "hist"})
    message = client.next(timeout=WAIT_SECONDS)
    assert message["event"] == "pusher:error", message


# -- with the official server SDK (pusher on PyPI) and per-app settings ----------------


def sdk_of(app: AppClient):
    """The `pusher` SDK pointed at this server's API port, for `app`."""
    import pusher as pusher_sdk

    return pusher_sdk.Pusher(
        app_id=app.info["app_id"],
        key=app.key,
        secret=app.secret,
        host="127.0.0.1",
        port=app.server.app_port,
        ssl=False,
    )


def test_sdk_signatures_are_accepted(app, pusher):
    """What the SDK's `authenticate` and `authenticate_user` sign, the server takes."""
    sdk = sdk_of(app)
    client = pusher(app)
    private = sdk.authenticate("private-sdk", client.socket_id)
    client.subscribe_pusher("private-sdk", private["auth"])
    presence = sdk.authenticate(
        "presence-sdk", client.socket_id, {"user_id": "s1", "user_info": {"n": 1}}
    )
    reply = client.subscribe_pusher(
        "presence-sdk", presence["auth"], presence["channel_data"]
    )
    assert json.loads(reply["data"])["presence"]["hash"] == {"s1": {"n": 1}}
    signed = sdk.authenticate_user(client.socket_id, {"id": "s1"})
    client.send("pusher:signin", signed)
    assert client.next()["event"] == "pusher:signin_success"


def test_sdk_send_to_user_reaches_the_signed_in_socket(app, pusher):
    client, bystander = pusher(app), pusher(app)
    client.signin({"id": "sdk-user"})
    client.expect("pusher:signin_success")
    sdk_of(app).send_to_user("sdk-user", "notice", {"hello": "you"})
    got = client.expect("notice", "#server-to-user-sdk-user")
    assert json.loads(got["data"]) == {"hello": "you"}, got
    assert_nothing(bystander, "another user's event")


def test_sdk_terminate_user_connections_closes_them_with_4009(app, pusher):
    first, second, other = pusher(app), pusher(app), pusher(app)
    for client, user in ((first, "gone"), (second, "gone"), (other, "stays")):
        client.signin({"id": user})
        client.expect("pusher:signin_success")
    sdk_of(app).terminate_user_connections("gone")
    for client in (first, second):
        with pytest.raises(ConnectionClosed) as closed:
            client.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
    other.roundtrip()


def test_app_with_client_events_off_refuses_them(app, pusher):
    response = app.request("PUT", "apps/" + app.ident, json={"client_events": False})
    assert response.status_code == 200, response.text
    sender, other = pusher(app), pusher(app)
    sender.private("private-off")
    other.private("private-off")
    sender.send("client-x", {}, channel="private-off")
    assert_error(sender.next(), 4009)
    assert_nothing(other, "a client event of an app that disabled them")


def test_app_payload_limit_applies_to_client_events(app, pusher):
    response = app.request("PUT", "apps/" + app.ident, json={"max_payload": 100})
    assert response.status_code == 200, response.text
    sender, other = pusher(app), pusher(app)
    sender.private("private-small")
    other.private("private-small")
    sender.send("client-x", "x" * 101, channel="private-small")
    assert_error(sender.next(), 4300)
    sender.send("client-x", "x" * 100, channel="private-small")
    assert other.expect("client-x", "private-small")["data"] == "x" * 100


def test_declared_app_with_a_pusher_style_key(start_server):
    declared = {
        "app_id": "424242",
        "key": "my-app_Key-%s" % secrets.token_hex(3),
        "secret": "my-secret",
        "name": unique_name(),
    }
    server = start_server({"PUSHI_APPS": json.dumps([declared])})
    url = server.ws_url(pusher_path(declared["key"]))
    client = Client(url)
    try:
        assert SOCKET_ID.fullmatch(client.socket_id), client.socket_id
        auth = channel_auth(
            declared["key"], declared["secret"], client.socket_id, "private-d"
        )
        client.send("pusher:subscribe", {"channel": "private-d", "auth": auth})
        client.expect("pusher_internal:subscription_succeeded", "private-d")
    finally:
        client.close()


def unique_name() -> str:
    """An app name no other test uses."""
    return "declared-%s" % secrets.token_hex(4)
