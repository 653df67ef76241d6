"""Public, private and personal channels, REST events, client events, `latest`.

The Pushi dialect of contract §3 and §4 over a real WebSocket against the real
server process. To prove a message did NOT arrive, a test does a ping round trip
on that socket after the action (`until_pong`, `assert_nothing`): the server
handles a socket's messages in order and writes each socket's frames in order,
so whatever the action sent comes before the pong.

The helpers at the top (exact reply shapes, errors, records) are shared with the
other WebSocket test files.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import AppClient, Client, assert_nothing, until_pong
from contract import EVENT_RECORD_FIELDS, INFO_KEYS, is_uuid4

""" ChannelInfo: always exactly these four keys (contract §3.3) """

REPLIES = {
    "pusher_subscribe": "pusher_internal:subscription_succeeded",
    "pusher_unsubscribe": "pusher_internal:unsubscription_succeeded",
    "pusher_latest": "pusher_internal:latest",
}


# -- helpers ---------------------------------------------------------------------------


def channel_info(message: dict, event: str, channel: str) -> dict:
    """Checks a channel reply's exact shape and returns its decoded ChannelInfo.

    `{"event": E, "data": ⚑ChannelInfo, "channel": C}`, the info encoded the way
    Python's `json.dumps` does by default, with exactly the four keys in order.
    """
    assert sorted(message) == [
        "channel",
        "data",
        "event",
    ], "expected a reply of exactly event, data, channel, got %r" % (message,)
    assert (message["event"], message["channel"]) == (event, channel), message
    assert isinstance(message["data"], str), "data must be string-encoded: %r" % (
        message,
    )
    info = json.loads(message["data"])
    assert (
        isinstance(info, dict) and list(info) == INFO_KEYS
    ), "expected ChannelInfo keys %r, got %r" % (INFO_KEYS, message["data"])
    assert info["name"] == channel, info
    assert message["data"] == json.dumps(info), (
        "ChannelInfo not encoded with json.dumps defaults: %r" % message["data"]
    )
    return info


def info(name: str, members=None, alias=None, events=None) -> dict:
    """The ChannelInfo a reply should carry."""
    return {
        "name": name,
        "members": members or {},
        "alias": alias or [],
        "events": events or [],
    }


def ask(client: Client, command: str, channel: str, **data) -> dict:
    """Sends a channel command; returns the reply's ChannelInfo (shape checked).

    Fails at once on a `pusher:error` instead of waiting out the timeout.
    """
    client.send(command, dict(channel=channel, **data))
    event = REPLIES[command.replace(":", "_")]
    skipped = []
    while True:
        try:
            message = client.next()
        except TimeoutError:
            raise AssertionError(
                "expected %s on %r, got only %r" % (event, channel, skipped)
            ) from None
        if message.get("event") == "pusher:error":
            raise AssertionError("%s %r refused: %r" % (command, channel, message))
        if message.get("event") == event and message.get("channel") == channel:
            return channel_info(message, event, channel)
        skipped.append(message)


def latest(client: Client, channel: str, **params) -> list[dict]:
    """`pusher:latest` on a channel; returns the reply's events (shape checked)."""
    return ask(client, "pusher:latest", channel, **params)["events"]


def send_and_collect(client: Client, event: str, data=None, **fields) -> list[dict]:
    """Sends one message and returns what the server answered before a pong."""
    client.send(event, data, **fields)
    return until_pong(client)


def errors_in(messages: list[dict]) -> list[dict]:
    """The `pusher:error` messages among `messages`."""
    return [m for m in messages if m.get("event") == "pusher:error"]


def assert_error(message: dict, code: int | None = None, channel: str | None = None):
    """One `pusher:error` of exactly the Pushi shape (contract §4.1).

    `{"event": "pusher:error", "channel": C, "data": {"code": N, "message": "..."}}`
    with `channel` always present (`""` when the request named none).
    """
    assert sorted(message) == [
        "channel",
        "data",
        "event",
    ], "expected pusher:error with exactly event, channel, data: %r" % (message,)
    assert message["event"] == "pusher:error", message
    data = message["data"]
    assert isinstance(data, dict) and sorted(data) == ["code", "message"], message
    assert isinstance(data["code"], int) and isinstance(data["message"], str), message
    assert data["message"], "expected an error text: %r" % (message,)
    if code is not None:
        assert data["code"] == code, "expected code %d, got %r" % (code, message)
    if channel is not None:
        assert message["channel"] == channel, "expected channel %r in %r" % (
            channel,
            message,
        )
    return message


def assert_one_error(messages: list[dict], code: int | None = None, channel=None):
    """Exactly one message came, a `pusher:error` (that code, naming that channel)."""
    assert len(messages) == 1, "expected one pusher:error only, got %r" % (messages,)
    return assert_error(messages[0], code, channel)


def refused(client: Client, event: str, data=None, code=None, named=None, **fields):
    """Sends a request that must get one `pusher:error` (naming channel `named`)
    and nothing else; `fields` go into the message (a client event's `channel`)."""
    return assert_one_error(
        send_and_collect(client, event, data, **fields), code, named
    )


def post_event(app: AppClient, body: dict) -> None:
    """`POST /events` with a raw JSON body, asserting it was accepted."""
    response = app.request("POST", "events", json=body)
    assert response.status_code == 200, "POST /events %r: %d %s" % (
        body,
        response.status_code,
        response.text,
    )


def stored(app: AppClient, count: int = 100, **params) -> list[dict]:
    """The app's stored event records (`GET /events`), newest first."""
    response = app.request("GET", "events", params=dict(count=count, **params))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def socket_channels(app: AppClient, socket_id: str) -> list[str]:
    """The channels a socket is in, in join order (`POST /sockets/<id>`)."""
    response = app.request("POST", "sockets/" + socket_id)
    assert response.status_code == 200, "POST /sockets/%s: %d %s" % (
        socket_id,
        response.status_code,
        response.text,
    )
    return response.json()["channels"]


def assert_stamped(message: dict) -> None:
    """A persisted event's live frame: a uuid4 `mid` and a float epoch timestamp."""
    assert is_uuid4(message.get("mid")), "expected a uuid4 mid: %r" % (message,)
    stamp = message.get("timestamp")
    assert isinstance(stamp, float), "expected a float timestamp: %r" % (message,)
    assert abs(stamp - time.time()) < 300, "timestamp is not now: %r" % (message,)


def unstamped(message: dict) -> dict:
    """A delivered message without `mid` and `timestamp`: what a record stores."""
    return {k: v for k, v in message.items() if k not in ("mid", "timestamp")}


def assert_record(record: dict, app: AppClient, message: dict, owner_id=None) -> None:
    """An Event record (contract §1) of a delivered message, as WebSocket shows it."""
    assert set(record) == EVENT_RECORD_FIELDS, "record keys: expected %r, got %r" % (
        sorted(EVENT_RECORD_FIELDS),
        sorted(record),
    )
    assert (record["mid"], record["channel"], record["timestamp"]) == (
        message["mid"],
        message["channel"],
        message["timestamp"],
    ), (record, message)
    assert record["owner_id"] == owner_id, record
    assert record["data"] == unstamped(
        message
    ), "record data must be the delivered message minus mid/timestamp: %r vs %r" % (
        record["data"],
        message,
    )
    assert record["instance"] == app.ident, record
    assert (record["enabled"], record["description"], record["meta"]) == (
        True,
        None,
        {},
    ), record
    for field in ("id", "created", "modified"):
        value = record[field]
        assert isinstance(value, int) and not isinstance(value, bool), record


# -- replies: exact shapes -------------------------------------------------------------


def test_subscribe_reply_is_exactly_the_four_key_channel_info(app):
    client = app.socket()
    client.send("pusher:subscribe", {"channel": "news"})
    got = until_pong(client)
    assert got == [
        {
            "event": "pusher_internal:subscription_succeeded",
            "data": '{"name": "news", "members": {}, "alias": [], "events": []}',
            "channel": "news",
        }
    ], got


def test_private_reply_is_the_same_shape(app):
    client = app.socket()
    assert client.subscribe_signed("private-x") == info("private-x")


def test_subscribe_accepts_string_encoded_data(app):
    client = app.socket()
    client.send("pusher:subscribe", json.dumps({"channel": "news"}))
    reply = client.expect("pusher_internal:subscription_succeeded", "news")
    assert channel_info(reply, reply["event"], "news") == info("news")


def test_subscribing_twice_replies_twice_and_delivers_once(app):
    client = app.socket()
    assert ask(client, "pusher:subscribe", "news") == info("news")
    assert ask(client, "pusher:subscribe", "news") == info("news")
    assert socket_channels(app, client.socket_id) == ["news"]
    app.publish("news", "once")
    assert client.expect("message", "news")["data"] == "once"
    assert_nothing(client, "a second copy for a channel subscribed twice")


def test_extra_keys_of_commands_are_ignored(app):
    """pushi.js sends `echo` and `persist` on every frame."""
    client = app.socket()
    extra = {"echo": False, "persist": True, "note": {"x": 1}}
    client.send("pusher:subscribe", {"channel": "news", "auth": None}, **extra)
    reply = client.expect("pusher_internal:subscription_succeeded", "news")
    assert channel_info(reply, reply["event"], "news") == info("news")
    app.publish("news", "kept")
    message = client.expect("message", "news")
    client.send("pusher:latest", {"channel": "news", "count": 5}, **extra)
    reply = client.expect("pusher_internal:latest", "news")
    events = channel_info(reply, reply["event"], "news")["events"]
    assert [e["mid"] for e in events] == [message["mid"]], events
    client.send("pusher:unsubscribe", {"channel": "news"}, **extra)
    reply = client.expect("pusher_internal:unsubscription_succeeded", "news")
    assert channel_info(reply, reply["event"], "news") == info("news")


def test_colon_and_underscore_are_interchangeable_in_command_names(app):
    client = app.socket()
    assert ask(client, "pusher_subscribe", "news") == info("news")
    app.publish("news", "stored")
    message = client.expect("message", "news")
    events = ask(client, "pusher_latest", "news")["events"]
    assert [e["mid"] for e in events] == [message["mid"]], events
    client.send("pusher_ping", {})
    assert client.next() == {"event": "pusher:pong", "data": {}}
    assert ask(client, "pusher_unsubscribe", "news") == info("news")
    app.publish("news", "after leaving")
    assert_nothing(client, "an event of a channel left with pusher_unsubscribe")


# -- REST events -----------------------------------------------------------------------


def test_publish_reaches_every_subscriber_and_no_one_else(app, other_app):
    first, second = app.socket(), app.socket()
    first.subscribe("news")
    second.subscribe("news")
    elsewhere = app.socket()
    elsewhere.subscribe("sports")
    foreign = other_app.socket()
    foreign.subscribe("news")  # same name, another app

    app.publish("news", "headline", event="story")

    got = [client.expect("story", "news") for client in (first, second)]
    assert got[0] == got[1], "subscribers got different copies: %r" % (got,)
    assert_stamped(got[0])
    for client in (first, second):
        assert_nothing(client, "a second copy")
    assert_nothing(elsewhere, "an event of another channel")
    assert_nothing(foreign, "another app's event on the same channel name")


def test_rest_event_is_the_whole_request_body(app):
    client = app.socket()
    client.subscribe("news")
    body = {
        "data": "hi",
        "channel": "news",
        "persist": True,
        "event": "greet",
        "extra": "value",
        "nested": {"k": [1, 2], "none": None},
        "socket_id": client.socket_id,  # an ordinary key in this API (§5)
    }
    post_event(app, body)
    got = client.next()
    assert_stamped(got)
    assert unstamped(got) == body, "expected the whole body, got %r" % (got,)
    assert_nothing(client, "a second copy")


def test_rest_event_defaults_to_global_and_message(app):
    client = app.socket()
    client.subscribe("global")
    post_event(app, {"data": "x"})
    got = client.next()
    assert_stamped(got)
    assert unstamped(got) == {"data": "x", "channel": "global", "event": "message"}


ENCODED = [
    ({"k": [1, 2]}, '{"k": [1, 2]}'),
    ({"b": 1, "a": {"z": None, "y": True}}, '{"b": 1, "a": {"z": null, "y": true}}'),
    ({"t": "é ✓"}, '{"t": "\\u00e9 \\u2713"}'),
    ([1, "two", 3.5], '[1, "two", 3.5]'),
    (7, "7"),
    (True, "true"),
    ("a string", "a string"),
    ('{"already": "encoded"}', '{"already": "encoded"}'),
]


@pytest.mark.parametrize(
    "data,expected",
    ENCODED,
    ids=["list", "key-order", "non-ascii", "array", "int", "bool", "str", "json-str"],
)
def test_structured_data_is_sent_as_python_json_dumps(app, data, expected):
    """Clients compare these strings: `", "`/`": "`, `\\uXXXX`, key order kept."""
    client = app.socket()
    client.subscribe("news")
    post_event(app, {"channel": "news", "data": data})
    got = client.expect("message", "news")
    assert got["data"] == expected, "expected %r, got %r" % (expected, got["data"])
    [record] = stored(app, count=1)
    assert record["data"]["data"] == expected, record


def test_not_persisted_event_has_no_mid_nor_timestamp_and_is_not_stored(app):
    client = app.socket()
    client.subscribe("news")
    post_event(app, {"channel": "news", "data": "volatile", "persist": False})
    got = client.next()
    assert got == {
        "channel": "news",
        "data": "volatile",
        "persist": False,
        "event": "message",
    }, got
    app.publish("news", "kept")
    kept = client.expect("message", "news", data="kept")
    assert [e["mid"] for e in latest(client, "news")] == [kept["mid"]]
    assert [e["mid"] for e in stored(app)] == [kept["mid"]]


def test_publish_to_a_list_of_channels_one_copy_per_socket(app):
    on_a, on_b, on_both, on_c = app.socket(), app.socket(), app.socket(), app.socket()
    on_a.subscribe("a")
    on_b.subscribe("b")
    on_both.subscribe("b")
    on_both.subscribe("a")
    on_c.subscribe("c")

    app.publish(["a", "b"], "multi")

    got_a = on_a.expect("message", "a")
    got_b = on_b.expect("message", "b")
    # one copy, tagged with the first listed channel it joined (not join order)
    assert on_both.next() == got_a, "expected the copy of channel a"
    for client in (on_a, on_b, on_both):
        assert_nothing(client, "an extra copy")
    assert_nothing(on_c, "events of channels a and b")
    # one stored event per channel, each with its own mid
    assert got_a["mid"] != got_b["mid"], (got_a, got_b)
    assert [e["mid"] for e in latest(on_a, "a")] == [got_a["mid"]]
    assert [e["mid"] for e in latest(on_b, "b")] == [got_b["mid"]]
    assert [e["mid"] for e in stored(app)] == [got_b["mid"], got_a["mid"]]

    # listed in another order, the tag follows the list
    app.publish(["c", "b", "a"], "again")
    assert on_both.next()["channel"] == "b"
    assert_nothing(on_both, "an extra copy")


def test_reserved_stamps_in_a_body_are_refused_and_nothing_is_delivered(app):
    client = app.socket()
    client.subscribe("news")
    for body in (
        {"channel": "news", "data": "x", "mid": "forged"},
        {"channel": "news", "data": "x", "timestamp": 1.0},
        {"channel": "news", "data": "x", "mid": "forged", "persist": False},
    ):
        response = app.request("POST", "events", json=body)
        assert response.status_code == 400, "%r: %d %s" % (
            body,
            response.status_code,
            response.text,
        )
    assert_nothing(client, "a refused publish")
    assert stored(app) == []


def test_rest_trigger_to_a_personal_channel_is_stored_and_reaches_nobody(app):
    app.subscribe_user("alice", "news")
    client = app.socket()
    reply = client.subscribe_signed("personal-alice")
    assert reply == info("personal-alice", alias=["news"]), reply
    app.publish("personal-alice", "to nobody")
    assert_nothing(client, "a publish on a personal channel's own name")
    [record] = stored(app)
    assert record["channel"] == "personal-alice", record
    assert record["data"]["data"] == "to nobody", record


# -- unsubscribe -----------------------------------------------------------------------


def test_unsubscribe_replies_and_stops_delivery(app):
    client = app.socket()
    client.subscribe("news")
    client.subscribe("marker")
    client.send("pusher:unsubscribe", {"channel": "news"})
    got = client.next()
    assert got == {
        "event": "pusher_internal:unsubscription_succeeded",
        "data": '{"name": "news", "members": {}, "alias": [], "events": []}',
        "channel": "news",
    }, got
    app.publish("news", "after leaving")
    app.publish("marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    assert_nothing(client, "events of a channel left")
    assert socket_channels(app, client.socket_id) == ["marker"]


def test_unsubscribe_of_a_channel_never_joined_gets_the_normal_reply(app):
    client = app.socket()
    client.subscribe("joined")
    for name in ("never-joined", "private-never", "presence-never"):
        assert ask(client, "pusher:unsubscribe", name) == info(name)
    app.publish("joined", "still here")
    assert client.expect("message", "joined")["data"] == "still here"


# -- channel names (contract §4.14) ----------------------------------------------------

GOOD_NAMES = [
    "a/b/c",
    "#tag",
    "bang!",
    "plus+sign",
    "mail@example.com",
    "é",
    "频道",
    "A-z_0=9@,.;:&",
    "y" * 200,
]
BAD_NAMES = {
    "empty": "",
    "space": " ",
    "inner-space": "has space",
    "tab": "tab\there",
    "newline": "global\n",
    "nbsp": "nbsp\u00a0here",
    "em-space": "em\u2003space",
    "nul": "nul\x00",
    "unit-separator": "unit\x1f",
    "del": "del\x7f",
    "c1-control": "c1\x85",
    "201-chars": "x" * 201,
    "int": 123,
    "null": None,
    "list": ["a"],
    "object": {"name": "a"},
}


def test_names_apps_use_are_accepted(app):
    client = app.socket()
    for name in GOOD_NAMES:
        assert ask(client, "pusher:subscribe", name) == info(name)
    assert socket_channels(app, client.socket_id) == GOOD_NAMES
    for name in GOOD_NAMES:
        app.publish(name, "to " + name)
        got = client.next()
        assert (got["channel"], got["data"]) == (name, "to " + name), got


def test_personal_channel_of_an_email_user_id(app):
    app.subscribe_user("a+b@x.com", "mail/inbox")
    client = app.socket()
    reply = client.subscribe_signed("personal-a+b@x.com")
    assert reply == info("personal-a+b@x.com", alias=["mail/inbox"]), reply
    app.publish("mail/inbox", "you have mail")
    assert client.expect("message", "mail/inbox")["data"] == "you have mail"


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_names_with_whitespace_control_characters_or_too_long_are_refused(app, name):
    client = app.socket()
    for command in ("pusher:subscribe", "pusher:latest"):
        refused(client, command, {"channel": name}, None, "")
    refused(client, "chat", "x", None, "", channel=name)
    assert socket_channels(app, client.socket_id) == []
    # the connection stays usable
    assert ask(client, "pusher:subscribe", "fine") == info("fine")


def test_rest_publish_to_a_bad_name_is_refused(app):
    for name in ("has space", "global\n", "x" * 201):
        response = app.request("POST", "events", json={"channel": name, "data": "x"})
        assert response.status_code == 400, "%r: %d %s" % (
            name,
            response.status_code,
            response.text,
        )


# -- private channels ------------------------------------------------------------------


def test_private_without_auth_is_refused_and_nothing_joined(app):
    client = app.socket()
    refused(client, "pusher:subscribe", {"channel": "private-x"}, 4009, "private-x")
    assert socket_channels(app, client.socket_id) == []
    app.publish("private-x", "secret")
    assert_nothing(client, "an event of a private channel it was refused")


def forged_variants(app: AppClient, other_app: AppClient, socket_id: str) -> dict:
    """Auth values that must not open `private-x` for `socket_id`."""
    from pushi.base.auth import sign

    good = app.auth(socket_id, "private-x")
    key, _, signature = good.partition(":")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return {
        "flipped-digit": key + ":" + flipped,
        "uppercase-hex": key + ":" + signature.upper(),
        "other-channel": app.auth(socket_id, "private-y"),
        "other-socket": app.auth(str(uuid.uuid4()), "private-x"),
        "other-app": other_app.auth(socket_id, "private-x"),
        "other-apps-secret": key
        + ":"
        + sign(other_app.secret, socket_id + ":private-x"),
        "other-apps-key": other_app.key + ":" + signature,
        "signature-only": signature,
        "trailing-space": good + " ",
        "not-a-string": {"auth": good},
    }


def test_private_with_forged_auth_is_refused(app, other_app):
    client = app.socket()
    for name, forged in forged_variants(app, other_app, client.socket_id).items():
        got = send_and_collect(
            client, "pusher:subscribe", {"channel": "private-x", "auth": forged}
        )
        try:
            assert_one_error(got, 4009, "private-x")
        except AssertionError as error:
            raise AssertionError("%s: %s" % (name, error)) from None
    assert socket_channels(app, client.socket_id) == []


def test_private_with_valid_signature_works(app):
    client, outsider = app.socket(), app.socket()
    assert client.subscribe_signed("private-x") == info("private-x")
    app.publish("private-x", "secret")
    assert client.expect("message", "private-x")["data"] == "secret"
    assert_nothing(outsider, "a private event")


def test_public_and_private_channels_ignore_channel_data(app):
    client = app.socket()
    data = json.dumps({"user_id": "alice"})
    reply = ask(client, "pusher:subscribe", "news", channel_data=data)
    assert reply == info("news"), reply
    signed = app.auth(client.socket_id, "private-x")  # channel_data not signed
    reply = ask(client, "pusher:subscribe", "private-x", auth=signed, channel_data=data)
    assert reply == info("private-x"), reply


# -- personal channels -----------------------------------------------------------------


def test_personal_needs_auth(app):
    app.subscribe_user("alice", "news")
    client = app.socket()
    refused(client, "pusher:subscribe", {"channel": "personal-alice"}, 4009)
    forged = app.auth(client.socket_id, "personal-bob")
    refused(
        client,
        "pusher:subscribe",
        {"channel": "personal-alice", "auth": forged},
        4009,
        "personal-alice",
    )
    app.publish("news", "not yours")
    assert_nothing(client, "an alias event after a refused personal subscribe")


def test_personal_joins_aliases_without_replies_in_creation_order(app):
    for channel in ("zeta", "alpha", "private-inbox"):
        app.subscribe_user("alice", channel)
    app.subscribe_user("bob", "bobs-only")
    client = app.socket()
    client.send(
        "pusher:subscribe",
        {
            "channel": "personal-alice",
            "auth": app.auth(client.socket_id, "personal-alice"),
        },
    )
    reply = client.next()
    aliases = ["zeta", "alpha", "private-inbox"]
    assert channel_info(
        reply, "pusher_internal:subscription_succeeded", "personal-alice"
    ) == info("personal-alice", alias=aliases)
    assert_nothing(client, "a reply per alias")
    # joined, in that order, never the personal channel itself
    assert socket_channels(app, client.socket_id) == aliases
    # messages keep the real channel; a private alias needs no auth
    for channel in aliases:
        app.publish(channel, "on " + channel)
        got = client.next()
        assert (got["channel"], got["data"]) == (channel, "on " + channel), got
    app.publish("bobs-only", "for bob")
    assert_nothing(client, "another user's alias")


def test_personal_subscribed_twice_replies_twice_and_delivers_once(app):
    app.subscribe_user("alice", "news")
    client = app.socket()
    for _ in range(2):
        reply = client.subscribe_signed("personal-alice")
        assert reply == info("personal-alice", alias=["news"]), reply
    assert socket_channels(app, client.socket_id) == ["news"]
    app.publish("news", "once")
    assert client.next()["data"] == "once"
    assert_nothing(client, "a second copy through a personal channel joined twice")
    # one unsubscribe leaves it
    ask(client, "pusher:unsubscribe", "personal-alice")
    assert socket_channels(app, client.socket_id) == []


def test_personal_history_is_associations_made_at_storage_time(app):
    app.publish("news", "before the subscription")
    # storage is asynchronous (contract §3.6): a read of the store answers after
    # the writes queued before it, so the event is stored before alice subscribes
    assert app.request("GET", "events").status_code == 200
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    watcher = app.socket()
    watcher.subscribe("news")
    watcher.subscribe("sports")
    app.publish("news", "first")
    first = watcher.expect("message", "news")
    app.publish(["sports", "news"], "both")  # one association for the trigger
    both = watcher.expect("message", "sports")
    assert_nothing(watcher, "a second copy of a trigger")
    app.publish("elsewhere", "not followed")

    client = app.socket()
    reply = client.subscribe_signed("personal-alice")
    assert reply["alias"] == ["news", "sports"], reply
    assert [(e["mid"], e["data"]["data"]) for e in reply["events"]] == [
        (both["mid"], "both"),
        (first["mid"], "first"),
    ], reply["events"]
    assert_record(reply["events"][0], app, both)
    assert_record(reply["events"][1], app, first)

    # associated events survive the subscription's deletion
    response = app.request("DELETE", "subscriptions/alice/news")
    assert response.status_code == 200, response.text
    response = app.request("DELETE", "subscriptions/alice/sports")
    assert response.status_code == 200, response.text
    again = app.socket()
    reply = again.subscribe_signed("personal-alice")
    assert reply["alias"] == [], reply
    assert [e["mid"] for e in reply["events"]] == [both["mid"], first["mid"]]


def test_personal_reply_lists_the_ten_latest(app):
    app.subscribe_user("alice", "news")
    watcher = app.socket()
    watcher.subscribe("news")
    mids = []
    for index in range(12):
        app.publish("news", "e%d" % index)
        mids.append(watcher.expect("message", "news")["mid"])
    client = app.socket()
    reply = client.subscribe_signed("personal-alice")
    assert [e["mid"] for e in reply["events"]] == mids[::-1][:10], reply["events"]


def test_latest_on_personal_returns_its_history(app):
    """Contract §4.8 (the original refuses it)."""
    app.subscribe_user("alice", "news")
    watcher = app.socket()
    watcher.subscribe("news")
    mids = []
    for index in range(4):
        app.publish("news", "e%d" % index)
        mids.append(watcher.expect("message", "news")["mid"])
    client = app.socket()
    client.subscribe_signed("personal-alice")
    reply = ask(client, "pusher:latest", "personal-alice", skip=1, count=2)
    assert reply["alias"] == ["news"], reply
    assert [e["mid"] for e in reply["events"]] == [mids[2], mids[1]], reply
    # not subscribed to that personal channel: refused
    refused(client, "pusher:latest", {"channel": "personal-bob"}, 4009, "personal-bob")


def test_personal_unsubscribe_leaves_aliases_and_lists_them(app):
    app.subscribe_user("alice", "news")
    watcher = app.socket()
    watcher.subscribe("news")
    app.publish("news", "kept")
    kept = watcher.expect("message", "news")
    client = app.socket()
    client.subscribe_signed("personal-alice")
    client.subscribe("marker")
    reply = ask(client, "pusher:unsubscribe", "personal-alice")
    assert reply["alias"] == ["news"], reply
    assert [e["mid"] for e in reply["events"]] == [kept["mid"]], reply
    assert socket_channels(app, client.socket_id) == ["marker"]
    app.publish("news", "after leaving")
    app.publish("marker", "marker")
    assert client.next()["channel"] == "marker"
    assert_nothing(client, "an alias event after leaving the personal channel")


def test_subscription_changes_apply_at_once_to_personal_sockets(app):
    """Contract §4.8: a deletion never removes a channel joined directly."""
    app.subscribe_user("alice", "news")
    client = app.socket()
    client.subscribe_signed("personal-alice")
    client.subscribe("direct")

    app.subscribe_user("alice", "sports")
    app.subscribe_user("alice", "direct")
    app.publish("sports", "live")
    assert client.expect("message", "sports")["data"] == "live"
    assert socket_channels(app, client.socket_id) == ["news", "direct", "sports"]

    for channel in ("news", "direct"):
        response = app.request("DELETE", "subscriptions/alice/" + channel)
        assert response.status_code == 200, response.text
    app.publish("news", "gone")
    app.publish("direct", "still joined")
    assert client.next()["data"] == "still joined"
    assert_nothing(client, "an event of a deleted subscription")
    assert socket_channels(app, client.socket_id) == ["direct", "sports"]

    # unsubscribing after the changes works and leaves the aliases only
    reply = ask(client, "pusher:unsubscribe", "personal-alice")
    assert reply["alias"] == ["sports"], reply
    assert socket_channels(app, client.socket_id) == ["direct"]


# -- client events ---------------------------------------------------------------------


def test_client_event_needs_a_joined_channel(app):
    sender, listener = app.socket(), app.socket()
    listener.subscribe("room")
    refused(sender, "chat", "hi", 4009, "room", channel="room")
    assert_nothing(listener, "a client event from a socket not subscribed")
    assert stored(app) == []


def test_client_event_on_an_alias_and_after_leaving(app):
    app.subscribe_user("alice", "room")
    sender, listener = app.socket(), app.socket()
    listener.subscribe("room")
    sender.subscribe_signed("personal-alice")
    sender.send("chat", "by alias", channel="room")
    assert listener.expect("chat", "room")["data"] == "by alias"
    ask(sender, "pusher:unsubscribe", "personal-alice")
    refused(sender, "chat", "gone", 4009, "room", channel="room")
    assert_nothing(listener, "a client event after leaving")


@pytest.mark.parametrize(
    "name",
    [
        "pusher:custom",
        "pusher_internal:subscription_succeeded",
        "pusher:member_added",
        "pusher_member_added",
        "pusher_internal_latest",
    ],
)
def test_client_events_with_system_names_are_refused(app, name):
    """Contract §4.5: the original relays them (spoofing)."""
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    refused(sender, name, "x", None, "room", channel="room")
    assert_nothing(listener, "a client event with a system name")
    assert stored(app) == []


def test_client_event_is_exactly_channel_event_data(app):
    sender, first, second, outsider = (app.socket() for _ in range(4))
    for client in (sender, first, second):
        client.subscribe("room")
    outsider.subscribe("elsewhere")
    sender.send(
        "chat",
        {"text": "hi", "n": [1, 2]},
        channel="room",
        echo=False,
        persist=True,
        user_id="admin",
        mid="forged",
        timestamp=1.0,
        extra="not relayed",
    )
    for client in (first, second):
        got = client.next()
        assert_stamped(got)
        assert unstamped(got) == {
            "channel": "room",
            "event": "chat",
            "data": '{"text": "hi", "n": [1, 2]}',
        }, got
    assert_nothing(sender, "an echo of its own client event")
    assert_nothing(outsider, "a client event of another channel")


def test_client_event_with_empty_data_has_no_data_key(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("typing", "", channel="room")
    got = listener.next()
    assert_stamped(got)
    assert unstamped(got) == {"channel": "room", "event": "typing"}, got


def test_client_event_any_name_is_relayed(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    for name in ("message", "client-typing", "pusher", "a:b", "ÿ"):
        sender.send(name, name, channel="room")
        got = listener.next()
        assert (got["event"], got["data"]) == (name, name), got


def test_client_event_needs_channel_and_data(app):
    sender = app.socket()
    sender.subscribe("room")
    refused(sender, "chat", None, 4000, "room", channel="room")
    refused(sender, "chat", "no channel", 4000, "")


def test_client_event_echo_returns_it_to_sender(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "echoed", channel="room", echo=True)
    mine, theirs = sender.next(), listener.next()
    assert mine == theirs and mine["data"] == "echoed", (mine, theirs)
    assert_nothing(sender, "a second echo")


def test_client_event_persisted_by_default_with_the_sender_as_owner(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "kept", channel="room")
    got = listener.next()
    assert_stamped(got)
    [record] = latest(sender, "room")
    assert_record(record, app, got, owner_id=sender.socket_id)
    [listed] = stored(app)
    assert listed["mid"] == got["mid"] and listed["owner_id"] == sender.socket_id


def test_client_event_persist_false_is_not_stored(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "volatile", channel="room", persist=False)
    assert listener.next() == {"channel": "room", "event": "chat", "data": "volatile"}
    sender.send("chat", "kept", channel="room")
    kept = listener.next()
    assert [e["mid"] for e in latest(sender, "room")] == [kept["mid"]]
    assert [e["mid"] for e in stored(app)] == [kept["mid"]]


def test_client_events_over_rate_limit_get_an_error(start_server):
    server = start_server({"PUSHI_CLIENT_EVENT_RATE": "5"})
    app = AppClient(server)
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    for index in range(20):
        sender.send("chat", str(index), channel="room")
    answered = until_pong(sender)
    for error in answered:
        assert_error(error, 4301, "room")
    delivered = [m for m in until_pong(listener) if m.get("event") == "chat"]
    assert answered, "expected rate limit errors for 20 events at 5/s"
    assert 1 <= len(delivered) < 20, "expected some but not all delivered: %r" % (
        delivered,
    )
    assert len(delivered) + len(answered) == 20, (delivered, answered)
    # the connection stays usable
    app.publish("room", "rest still works")
    assert sender.expect("message", "room")["data"] == "rest still works"


# -- pusher:latest ---------------------------------------------------------------------


def test_latest_newest_first_with_skip_and_count(app):
    client = app.socket()
    client.subscribe("news")
    app.publish("other", "not this channel")
    sent = []
    for index in range(5):
        app.publish("news", "e%d" % index)
        sent.append(client.expect("message", "news"))
    newest = [m["mid"] for m in sent[::-1]]
    assert [e["mid"] for e in latest(client, "news")] == newest
    assert [e["mid"] for e in latest(client, "news", skip=1, count=2)] == newest[1:3]
    assert [e["mid"] for e in latest(client, "news", count=1)] == newest[:1]
    assert [e["mid"] for e in latest(client, "news", skip=4)] == newest[4:]
    assert latest(client, "news", skip=5) == []
    events = latest(client, "news")
    for record, message in zip(events, sent[::-1], strict=True):
        assert_record(record, app, message)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5, ids


def test_latest_reply_shape(app):
    client = app.socket()
    client.subscribe("news")
    client.send("pusher:latest", {"channel": "news"})
    assert client.next() == {
        "event": "pusher_internal:latest",
        "data": '{"name": "news", "members": {}, "alias": [], "events": []}',
        "channel": "news",
    }


def test_latest_count_defaults_to_ten_and_is_clamped_to_1_100(app):
    """Contract §4.10 (the original takes any count; 0 there means all)."""
    client = app.socket()
    client.subscribe("news")
    for index in range(101):
        post_event(app, {"channel": "news", "data": "e%d" % index})
    assert len(latest(client, "news")) == 10
    capped = latest(client, "news", count=1000)
    assert len(capped) == 100, "expected count capped at 100, got %d" % len(capped)
    assert capped[0]["data"]["data"] == "e100" and capped[-1]["data"]["data"] == "e1"
    for count in (0, -5):
        got = latest(client, "news", count=count)
        assert [e["data"]["data"] for e in got] == ["e100"], (count, got)


def test_latest_refused_on_channel_not_joined(app):
    client, member = app.socket(), app.socket()
    member.subscribe("news")
    app.publish("news", "stored")
    client.subscribe("elsewhere")
    refused(client, "pusher:latest", {"channel": "news"}, 4009, "news")
    refused(client, "pusher:latest", {"channel": "private-x"}, 4009, "private-x")
