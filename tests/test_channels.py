"""Public and private channels, REST publishing, client events and `pusher:latest`.

Pushi dialect over a real WebSocket against the real server process. To prove a
message did NOT arrive, a test does a ping round trip on that socket after the
action: the server handles a socket's messages in order and writes each socket's
frames in order, so whatever the action sent comes before the pong.
"""

from __future__ import annotations

import json
import uuid

from conftest import AppClient, Client, assert_nothing, until_pong

# -- helpers ---------------------------------------------------------------------------


def send_and_collect(client: Client, event: str, data=None, **fields) -> list[dict]:
    """Sends one message and returns what the server answered before a pong."""
    client.send(event, data, **fields)
    return until_pong(client)


def errors_in(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("event") == "pusher:error"]


def assert_one_error(messages: list[dict], code: int | None = None, channel=None):
    """Exactly one pusher:error (with that code / naming that channel), no success."""
    errors = errors_in(messages)
    assert len(errors) == 1, "expected one pusher:error, got %r" % (messages,)
    error = errors[0]
    assert isinstance(error.get("data"), dict), "error data not an object: %r" % error
    if code is not None:
        assert error["data"].get("code") == code, "expected code %d, got %r" % (
            code,
            error,
        )
    if channel is not None:
        assert error.get("channel") == channel, "expected error naming %r, got %r" % (
            channel,
            error,
        )
    successes = [
        m
        for m in messages
        if m.get("event", "").startswith("pusher_internal:subscription_succeeded")
    ]
    assert successes == [], "expected no subscription success, got %r" % (successes,)
    return error


def latest(client: Client, channel: str, **params) -> list[dict]:
    """`pusher:latest` on a channel; returns the reply's events."""
    client.send("pusher:latest", dict(channel=channel, **params))
    reply = client.expect("pusher_internal:latest", channel)
    data = json.loads(reply["data"])
    assert data.get("name") == channel, "latest reply names %r" % (data,)
    return data["events"]


def is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# -- public channels and REST publishing -----------------------------------------------


def test_public_subscribe_reply_is_exactly_name(app):
    client = app.socket()
    client.send("pusher:subscribe", {"channel": "news"})
    reply = client.expect("pusher_internal:subscription_succeeded", "news")
    assert isinstance(reply["data"], str), "data must be string-encoded: %r" % reply
    assert json.loads(reply["data"]) == {"name": "news"}, reply


def test_subscribe_accepts_string_encoded_data(app):
    client = app.socket()
    client.send("pusher:subscribe", json.dumps({"channel": "news"}))
    reply = client.expect("pusher_internal:subscription_succeeded", "news")
    assert json.loads(reply["data"]) == {"name": "news"}


def test_publish_reaches_every_subscriber_and_no_one_else(app, other_app):
    first, second = app.socket(), app.socket()
    first.subscribe("news")
    second.subscribe("news")
    elsewhere = app.socket()
    elsewhere.subscribe("sports")
    foreign = other_app.socket()
    foreign.subscribe("news")  # same name, another app

    sent = app.publish("news", "headline", event="story")

    for client in (first, second):
        got = client.expect("story", "news")
        assert got["data"] == "headline", got
        assert got["mid"] == sent["mid"], (got, sent)
        assert_nothing(client, "a second copy")
    assert_nothing(elsewhere, "an event of another channel")
    assert_nothing(foreign, "another app's event on the same channel name")


def test_delivered_fields_of_persisted_event(app):
    client = app.socket()
    client.subscribe("news")
    sent = app.publish("news", "plain text", event="story")
    got = client.expect("story", "news")
    assert got["channel"] == "news" and got["event"] == "story", got
    assert got["data"] == "plain text", got
    assert is_uuid(got.get("mid")), "expected a uuid mid, got %r" % got
    assert isinstance(got.get("timestamp"), float), "expected float timestamp: %r" % got
    assert got["mid"] == sent["mid"] and got["timestamp"] == sent["timestamp"]


def test_dict_payload_arrives_json_encoded(app):
    client = app.socket()
    client.subscribe("news")
    payload = {"title": "hi", "n": [1, 2, {"x": None}]}
    app.publish("news", payload)
    got = client.expect("message", "news")
    assert isinstance(got["data"], str), "data must be a string, got %r" % got
    assert json.loads(got["data"]) == payload, got


def test_non_persisted_event_has_no_mid_nor_timestamp(app):
    client = app.socket()
    client.subscribe("news")
    app.publish("news", "volatile", persist=False)
    got = client.expect("message", "news")
    assert got["data"] == "volatile"
    assert "mid" not in got and "timestamp" not in got, got
    # and it is not stored
    app.publish("news", "kept")
    client.expect("message", "news", data="kept")
    stored = [e["data"] for e in latest(client, "news")]
    assert stored == ["kept"], "expected only the persisted event, got %r" % stored


def test_publish_to_a_list_of_channels(app):
    on_a, on_b, on_both, on_c = app.socket(), app.socket(), app.socket(), app.socket()
    on_a.subscribe("a")
    on_b.subscribe("b")
    on_both.subscribe("a")
    on_both.subscribe("b")
    on_c.subscribe("c")

    response = app.publish(["a", "b"], "multi")
    assert len(response["events"]) == 2, response
    assert {e["channel"] for e in response["events"]} == {"a", "b"}

    assert on_a.expect("message", "a")["data"] == "multi"
    assert on_b.expect("message", "b")["data"] == "multi"
    both = [on_both.next(), on_both.next()]
    assert sorted(m["channel"] for m in both) == ["a", "b"], both
    for client in (on_a, on_b, on_both):
        assert_nothing(client, "an extra copy")
    assert_nothing(on_c, "events of channels a and b")


def test_extra_keys_delivered_reserved_keys_not_taken_from_caller(app):
    client = app.socket()
    client.subscribe("news")
    app.publish(
        "news", "x", extra_key="value", mid="forged-mid", timestamp=1.0, nested={"k": 1}
    )
    got = client.expect("message", "news")
    assert got.get("extra_key") == "value", got
    assert got.get("nested") == {"k": 1}, got
    assert got["mid"] != "forged-mid" and is_uuid(got["mid"]), got
    assert got["timestamp"] != 1.0, got


def test_reserved_keys_not_taken_when_not_persisted(app):
    client = app.socket()
    client.subscribe("news")
    app.publish("news", "x", persist=False, mid="forged-mid", timestamp=1.0)
    got = client.expect("message", "news")
    assert "mid" not in got and "timestamp" not in got, got


def test_socket_id_in_publish_body_excludes_that_socket(app):
    sender, other = app.socket(), app.socket()
    sender.subscribe("news")
    other.subscribe("news")
    app.publish("news", "not for the sender", socket_id=sender.socket_id)
    got = other.expect("message", "news")
    assert got["data"] == "not for the sender"
    assert "socket_id" not in got, "socket_id must not be delivered: %r" % got
    assert_nothing(sender, "an event excluded by socket_id")


# -- unsubscribe -----------------------------------------------------------------------


def test_unsubscribe_replies_and_stops_delivery(app):
    client = app.socket()
    client.subscribe("news")
    client.subscribe("marker")
    client.send("pusher:unsubscribe", {"channel": "news"})
    reply = client.expect("pusher_internal:unsubscription_succeeded", "news")
    assert json.loads(reply["data"]) == {"name": "news"}, reply

    app.publish("news", "after leaving")
    app.publish("marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    assert_nothing(client, "events of a channel left")


def test_unsubscribe_of_channel_not_joined_is_an_error(app):
    client = app.socket()
    client.subscribe("joined")
    got = send_and_collect(client, "pusher:unsubscribe", {"channel": "never-joined"})
    assert_one_error(got)
    assert not any(
        m.get("event") == "pusher_internal:unsubscription_succeeded" for m in got
    ), got
    # still subscribed to the other channel
    app.publish("joined", "still here")
    assert client.expect("message", "joined")["data"] == "still here"


# -- channel names ---------------------------------------------------------------------


def test_invalid_channel_names_are_refused_and_connection_stays_usable(app):
    client = app.socket()
    bad_names = ["x" * 201, "has space", "slash/y", "bang!", "", "é", 123, None, ["a"]]
    for name in bad_names:
        got = send_and_collect(client, "pusher:subscribe", {"channel": name})
        assert_one_error(got)
    # the longest legal name is fine, and so is every legal character
    longest = "y" * 200
    assert client.subscribe(longest) == {"name": longest}
    odd = "A-z_0=9@,.;:&"
    assert client.subscribe(odd) == {"name": odd}
    app.publish(longest, "works")
    assert client.expect("message", longest)["data"] == "works"


# -- private channels ------------------------------------------------------------------


def test_private_without_auth_is_refused(app):
    client = app.socket()
    got = send_and_collect(client, "pusher:subscribe", {"channel": "private-x"})
    assert_one_error(got, 4009, "private-x")


def test_private_with_wrong_signature_is_refused(app):
    client = app.socket()
    good = app.auth(client.socket_id, "private-x")
    key, _, signature = good.partition(":")
    forged = key + ":" + ("0" if signature[0] != "0" else "1") + signature[1:]
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": "private-x", "auth": forged}
    )
    assert_one_error(got, 4009, "private-x")
    # signature of another channel name
    other = app.auth(client.socket_id, "private-y")
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": "private-x", "auth": other}
    )
    assert_one_error(got, 4009, "private-x")


def test_private_with_signature_of_another_socket_is_refused(app):
    client, someone = app.socket(), app.socket()
    stolen = app.auth(someone.socket_id, "private-x")
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": "private-x", "auth": stolen}
    )
    assert_one_error(got, 4009, "private-x")


def test_private_with_another_apps_secret_is_refused(app, other_app):
    client = app.socket()
    # signed by the other app (its key and secret) for this socket and channel
    foreign = other_app.auth(client.socket_id, "private-x")
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": "private-x", "auth": foreign}
    )
    assert_one_error(got, 4009, "private-x")
    # this app's key but the other app's secret
    from pushi.base.auth import sign

    mixed = app.key + ":" + sign(other_app.secret, client.socket_id + ":private-x")
    got = send_and_collect(
        client, "pusher:subscribe", {"channel": "private-x", "auth": mixed}
    )
    assert_one_error(got, 4009, "private-x")


def test_private_with_valid_signature_works(app):
    client, outsider = app.socket(), app.socket()
    assert client.subscribe_signed("private-x") == {"name": "private-x"}
    app.publish("private-x", "secret")
    assert client.expect("message", "private-x")["data"] == "secret"
    got = send_and_collect(outsider, "pusher:subscribe", {"channel": "private-x"})
    assert_one_error(got, 4009, "private-x")
    assert not any(m.get("event") == "message" for m in got), got


# -- client events ---------------------------------------------------------------------


def test_client_event_needs_a_subscribed_channel(app):
    sender, listener = app.socket(), app.socket()
    listener.subscribe("room")
    got = send_and_collect(sender, "chat", "hi", channel="room")
    assert_one_error(got, 4009)
    assert_nothing(listener, "a client event from a socket not subscribed")


def test_client_event_reserved_names_refused(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    for name in ("pusher:custom", "pusher_internal:subscription_succeeded"):
        got = send_and_collect(sender, name, "x", channel="room")
        assert_one_error(got)
    assert_nothing(listener, "client events with reserved names")


def test_client_event_reaches_others_not_echoed_by_default(app):
    sender, first, second, outsider = (app.socket() for _ in range(4))
    for client in (sender, first, second):
        client.subscribe("room")
    outsider.subscribe("elsewhere")
    sender.send("chat", {"text": "hi"}, channel="room")
    for client in (first, second):
        got = client.expect("chat", "room")
        assert json.loads(got["data"]) == {"text": "hi"}, got
        assert "user_id" not in got, "no user_id on a public channel: %r" % got
    assert_nothing(sender, "an echo of its own client event")
    assert_nothing(outsider, "a client event of another channel")


def test_client_event_reserved_fields_not_taken_from_client(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send(
        "chat", "x", channel="room", mid="forged", timestamp=1.0, user_id="admin"
    )
    got = listener.expect("chat", "room")
    assert got["mid"] != "forged" and is_uuid(got["mid"]), got
    assert got["timestamp"] != 1.0, got
    assert "user_id" not in got, "user_id taken from the client: %r" % got


def test_client_event_echo_returns_it_to_sender(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "echoed", channel="room", echo=True)
    got = sender.expect("chat", "room")
    assert got["data"] == "echoed", got
    assert listener.expect("chat", "room")["data"] == "echoed"


def test_client_event_persisted_by_default(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "kept", channel="room")
    got = listener.expect("chat", "room")
    assert is_uuid(got.get("mid")) and isinstance(got.get("timestamp"), float), got
    stored = latest(sender, "room")
    assert [(e["event"], e["data"], e["mid"]) for e in stored] == [
        ("chat", "kept", got["mid"])
    ], stored
    listed = app.request("GET", "events", params={"count": 10})
    assert listed.status_code == 200, listed.text
    assert [e["mid"] for e in listed.json()] == [got["mid"]], listed.json()


def test_client_event_persist_false_not_stored(app):
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    sender.send("chat", "volatile", channel="room", persist=False)
    got = listener.expect("chat", "room")
    assert got["data"] == "volatile"
    assert "mid" not in got and "timestamp" not in got, got
    sender.send("chat", "kept", channel="room")
    listener.expect("chat", "room", data="kept")
    stored = [e["data"] for e in latest(sender, "room")]
    assert stored == ["kept"], "expected only the persisted event, got %r" % stored
    listed = app.request("GET", "events", params={"count": 10})
    assert [e["data"] for e in listed.json()] == ["kept"], listed.json()


def test_client_events_over_rate_limit_get_an_error(start_server):
    server = start_server({"PUSHI_CLIENT_EVENT_RATE": "5"})
    app = AppClient(server)
    sender, listener = app.socket(), app.socket()
    sender.subscribe("room")
    listener.subscribe("room")
    for index in range(20):
        sender.send("chat", str(index), channel="room")
    answered = until_pong(sender)
    errors = errors_in(answered)
    delivered = [m for m in until_pong(listener) if m.get("event") == "chat"]
    assert errors, "expected rate limit errors for 20 events at 5/s, got %r" % answered
    assert all(isinstance(e["data"].get("code"), int) for e in errors), errors
    assert 1 <= len(delivered) < 20, "expected some but not all delivered: %r" % (
        delivered,
    )
    assert len(delivered) + len(errors) == 20, (delivered, errors)
    # the connection stays usable
    app.publish("room", "rest still works")
    assert sender.expect("message", "room")["data"] == "rest still works"


# -- pusher:latest ---------------------------------------------------------------------


def test_latest_newest_first_with_skip_and_count(app):
    client = app.socket()
    client.subscribe("news")
    app.publish("other", "not this channel")
    for index in range(5):
        app.publish("news", "e%d" % index)
    assert [e["data"] for e in latest(client, "news")] == [
        "e4",
        "e3",
        "e2",
        "e1",
        "e0",
    ]
    assert [e["data"] for e in latest(client, "news", skip=1, count=2)] == ["e3", "e2"]
    assert [e["data"] for e in latest(client, "news", count=1)] == ["e4"]
    assert [e["data"] for e in latest(client, "news", skip=4)] == ["e0"]
    assert latest(client, "news", skip=5) == []
    events = latest(client, "news", count=1)
    assert events[0]["channel"] == "news" and events[0]["event"] == "message"
    assert is_uuid(events[0]["mid"]) and isinstance(events[0]["timestamp"], float)


def test_latest_default_count_is_ten_and_cap_is_hundred(app):
    client = app.socket()
    client.subscribe("news")
    for index in range(101):
        app.publish("news", "e%d" % index)
    assert len(latest(client, "news")) == 10
    capped = latest(client, "news", count=1000)
    assert len(capped) == 100, "expected count capped at 100, got %d" % len(capped)
    assert capped[0]["data"] == "e100" and capped[-1]["data"] == "e1"


def test_latest_refused_on_channel_not_joined(app):
    client, member = app.socket(), app.socket()
    member.subscribe("news")
    app.publish("news", "stored")
    client.subscribe("elsewhere")
    got = send_and_collect(client, "pusher:latest", {"channel": "news"})
    assert_one_error(got, code=4009, channel="news")
    assert not any(m.get("event") == "pusher_internal:latest" for m in got), got
    # nor on a private channel it could not join
    got = send_and_collect(client, "pusher:latest", {"channel": "private-x"})
    assert_one_error(got)
