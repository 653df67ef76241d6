"""Personal channels, persisted subscriptions and stored events (protocol §3.3, §4).

Pushi dialect over a real WebSocket and the REST API against the real server
process; the store follows MONGO_URL (unset: the embedded store). To prove a
message did NOT arrive, a test does a ping round trip on that socket after the
action: the REST calls used here return once the server has routed the event.
"""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import AppClient, Client, assert_nothing, until_pong

# -- helpers ---------------------------------------------------------------------------


def personal(app: AppClient, user_id: str) -> tuple[Client, dict]:
    """A socket subscribed (signed) to the user's personal channel, and the reply."""
    client = app.socket()
    reply = client.subscribe_signed("personal-" + user_id)
    assert set(reply) == {"name", "alias", "events"}, (
        "expected exactly name, alias and events, got %r" % reply
    )
    assert reply["name"] == "personal-" + user_id, reply
    return client, reply


def latest(client: Client, channel: str, **params) -> list[dict]:
    client.send("pusher:latest", dict(channel=channel, **params))
    reply = client.expect("pusher_internal:latest", channel)
    return json.loads(reply["data"])["events"]


def list_subscriptions(app: AppClient, **params) -> list[dict]:
    response = app.request("GET", "subscriptions", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def unsubscribe_user(app: AppClient, user_id: str, channel: str) -> dict:
    response = app.request("DELETE", "subscriptions/%s/%s" % (user_id, channel))
    assert response.status_code == 200, response.text
    return response.json()


def datas(events: list[dict]) -> list:
    return [event["data"] for event in events]


# -- personal channels -----------------------------------------------------------------


def test_personal_channel_requires_auth(app):
    client = app.socket()
    client.send("pusher:subscribe", {"channel": "personal-alice"})
    client.send("pusher:ping", {})
    error = client.expect("pusher:error")
    assert error["data"]["code"] == 4009, error
    assert error.get("channel") == "personal-alice", error
    # a signature for another user's personal channel does not open this one
    wrong = app.auth(client.socket_id, "personal-bob")
    client.send("pusher:subscribe", {"channel": "personal-alice", "auth": wrong})
    error = client.expect("pusher:error")
    assert error["data"]["code"] == 4009, error
    got = until_pong(client)
    assert not any(
        m.get("event") == "pusher_internal:subscription_succeeded" for m in got
    ), got


def test_subscribed_channel_reaches_personal_socket(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    client, reply = personal(app, "alice")
    assert reply["alias"] == ["news", "sports"], reply
    assert reply["events"] == [], reply

    sent = app.publish("news", "headline")
    got = client.expect("message", "news")
    assert got["data"] == "headline" and got["mid"] == sent["mid"], got
    app.publish("sports", "score")
    assert client.expect("message", "sports")["data"] == "score"
    app.publish("weather", "rain")  # alice does not follow it
    assert_nothing(client, "an event of a channel alice does not follow")


def test_other_users_subscription_does_not_reach(app, other_app):
    app.subscribe_user("bob", "news")
    other_app.subscribe_user("alice", "news")  # same user id, other app
    client, reply = personal(app, "alice")
    assert reply["alias"] == [], reply
    app.publish("news", "for bob")
    other_app.publish("news", "other app")
    assert_nothing(client, "events of channels alice does not follow")


def test_reply_events_are_offline_events_newest_first(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    app.publish("news", "n0")
    app.publish("sports", "s1")
    app.publish("weather", "not followed")
    app.publish("news", "n2")
    client, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["n2", "s1", "n0"], reply
    for event in reply["events"]:
        assert uuid.UUID(event["mid"]) and isinstance(event["timestamp"], float), event
    assert [e["channel"] for e in reply["events"]] == ["news", "sports", "news"]


def test_reply_events_default_to_ten(app):
    app.subscribe_user("alice", "news")
    for index in range(12):
        app.publish("news", "e%d" % index)
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["e%d" % i for i in range(11, 1, -1)], reply


def test_events_while_offline_come_on_next_connect(app):
    app.subscribe_user("alice", "news")
    client, reply = personal(app, "alice")
    app.publish("news", "online")
    client.expect("message", "news", data="online")
    client.close()

    app.publish("news", "offline 1")
    app.publish("news", "offline 2")
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["offline 2", "offline 1", "online"], reply


def test_subscription_created_while_connected_applies_at_once(app):
    client, reply = personal(app, "alice")
    assert reply["alias"] == [] and reply["events"] == [], reply
    app.subscribe_user("alice", "news")
    app.publish("news", "live")
    got = client.expect("message", "news")
    assert got["data"] == "live", got


def test_delete_subscription_stops_delivery_at_once(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "marker")
    client, _ = personal(app, "alice")
    deleted = unsubscribe_user(app, "alice", "news")
    assert deleted.get("user_id") == "alice" and deleted.get("event") == "news"
    app.publish("news", "after delete")
    app.publish("marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    assert_nothing(client, "events of a deleted subscription")
    assert list_subscriptions(app, user_id="alice") == [
        {"user_id": "alice", "event": "marker"}
    ]
    missing = app.request("DELETE", "subscriptions/alice/news")
    assert missing.status_code == 404, missing.text


def test_delete_subscription_keeps_direct_subscription(app):
    app.subscribe_user("alice", "news")
    client, _ = personal(app, "alice")
    client.subscribe("news")  # also joined directly
    unsubscribe_user(app, "alice", "news")
    app.publish("news", "still direct")
    got = client.expect("message", "news")
    assert got["data"] == "still direct"
    assert_nothing(client, "a duplicate copy")


def test_alias_and_direct_subscription_deliver_once(app):
    app.subscribe_user("alice", "news")
    client, _ = personal(app, "alice")
    client.subscribe("news")
    app.publish("news", "once")
    assert client.expect("message", "news")["data"] == "once"
    assert_nothing(client, "a second copy of one event")


def test_unsubscribing_personal_channel_leaves_aliases(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "marker")
    client, _ = personal(app, "alice")
    client.subscribe("direct-marker")
    client.send("pusher:unsubscribe", {"channel": "personal-alice"})
    client.expect("pusher_internal:unsubscription_succeeded", "personal-alice")
    app.publish("news", "after leaving")
    app.publish("direct-marker", "marker")
    got = client.next()
    assert got.get("channel") == "direct-marker", "expected marker first, got %r" % got


def test_latest_on_personal_channel_pages_user_events(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    for index in range(6):
        app.publish("news" if index % 2 else "sports", "e%d" % index)
    app.publish("weather", "not followed")
    client, _ = personal(app, "alice")
    assert datas(latest(client, "personal-alice")) == [
        "e5",
        "e4",
        "e3",
        "e2",
        "e1",
        "e0",
    ]
    assert datas(latest(client, "personal-alice", skip=1, count=2)) == ["e4", "e3"]
    assert datas(latest(client, "personal-alice", skip=4, count=10)) == ["e1", "e0"]
    assert latest(client, "personal-alice", skip=6) == []


def test_latest_on_another_users_personal_channel_is_refused(app):
    app.subscribe_user("bob", "news")
    app.publish("news", "bob's")
    client, _ = personal(app, "alice")
    client.send("pusher:latest", {"channel": "personal-bob"})
    got = until_pong(client)
    errors = [m for m in got if m.get("event") == "pusher:error"]
    assert len(errors) == 1, "expected a refusal, got %r" % got
    assert not any(m.get("event") == "pusher_internal:latest" for m in got), got


def test_seed_subscribe_and_unsubscribe_routes(app):
    client, _ = personal(app, "alice")
    client.subscribe("marker")
    response = app.request(
        "POST",
        "apps/%s/subscribe" % app.ident,
        data={"user_id": "alice", "event": "news"},
    )
    assert response.status_code == 200, response.text
    assert list_subscriptions(app, user_id="alice") == [
        {"user_id": "alice", "event": "news"}
    ]
    app.publish("news", "via seed route")
    assert client.expect("message", "news")["data"] == "via seed route"

    response = app.request(
        "POST",
        "apps/%s/unsubscribe" % app.ident,
        data={"user_id": "alice", "event": "news"},
    )
    assert response.status_code == 200, response.text
    assert list_subscriptions(app, user_id="alice") == []
    app.publish("news", "after seed unsubscribe")
    app.publish("marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got


def test_seed_routes_with_query_parameters(app):
    client, _ = personal(app, "alice")
    response = app.request(
        "GET",
        "apps/%s/subscribe" % app.ident,
        params={"user_id": "alice", "event": "news"},
    )
    assert response.status_code == 200, response.text
    app.publish("news", "via query")
    assert client.expect("message", "news")["data"] == "via query"


def test_seed_routes_refuse_another_app(app, other_app):
    response = app.request(
        "POST",
        "apps/%s/subscribe" % other_app.ident,
        data={"user_id": "alice", "event": "news"},
    )
    assert response.status_code in (401, 403, 404), response.text
    other_list = other_app.request("GET", "subscriptions").json()
    assert other_list == [], "another app's subscriptions changed: %r" % other_list


def test_subscribing_twice_is_idempotent(app):
    first = app.subscribe_user("alice", "news")
    second = app.subscribe_user("alice", "news")
    assert first == second == {"user_id": "alice", "event": "news"}, (first, second)
    assert list_subscriptions(app, user_id="alice") == [
        {"user_id": "alice", "event": "news"}
    ]
    # and the event reaches the user once, is stored for the user once
    client, _ = personal(app, "alice")
    app.publish("news", "once")
    assert client.expect("message", "news")["data"] == "once"
    assert_nothing(client, "a duplicate")
    assert datas(latest(client, "personal-alice")) == ["once"]


def test_subscriptions_scoped_to_app(app, other_app):
    app.subscribe_user("alice", "news")
    other_app.subscribe_user("alice", "sports")
    assert list_subscriptions(app) == [{"user_id": "alice", "event": "news"}]
    assert list_subscriptions(other_app, user_id="alice") == [
        {"user_id": "alice", "event": "sports"}
    ]
    assert list_subscriptions(app, event="sports") == []


# -- stored events ---------------------------------------------------------------------


def test_persisted_events_have_mid_and_timestamp(app):
    sent = app.publish("news", {"k": "v"})
    assert uuid.UUID(sent["mid"]), sent
    assert isinstance(sent["timestamp"], float) and sent["timestamp"] > 0, sent
    listed = app.request("GET", "events", params={"count": 1}).json()
    assert len(listed) == 1, listed
    stored = listed[0]
    assert stored["mid"] == sent["mid"] and stored["timestamp"] == sent["timestamp"]
    assert stored["channel"] == "news" and stored["event"] == "message", stored
    assert json.loads(stored["data"]) == {"k": "v"}, stored


def test_get_events_newest_first_scoped_to_app(app, other_app):
    mids = [app.publish("ch%d" % (i % 2), "e%d" % i)["mid"] for i in range(5)]
    other_app.publish("ch0", "foreign")
    app.publish("volatile", "not stored", persist=False)

    response = app.request("GET", "events", params={"count": 3})
    assert response.status_code == 200, response.text
    listed = response.json()
    assert datas(listed) == ["e4", "e3", "e2"], listed
    assert [e["mid"] for e in listed] == mids[::-1][:3]

    everything = app.request("GET", "events", params={"count": 100}).json()
    assert datas(everything) == ["e4", "e3", "e2", "e1", "e0"], everything
    foreign = other_app.request("GET", "events", params={"count": 100}).json()
    assert datas(foreign) == ["foreign"], foreign


def test_stored_event_keeps_extra_keys(app):
    client = app.socket()
    client.subscribe("news")
    app.publish("news", "x", extra_key="value")
    client.expect("message", "news")
    stored = latest(client, "news")
    assert stored[0].get("extra_key") == "value", stored
    listed = app.request("GET", "events", params={"count": 1}).json()
    assert listed[0].get("extra_key") == "value", listed


@pytest.mark.parametrize(
    "channel", ["presence-room", "personal-bob", "personal-alice", "peer-room:a&b"]
)
def test_only_public_and_private_channels_can_be_persisted(app, channel):
    response = app.request(
        "POST", "subscriptions", json={"user_id": "alice", "event": channel}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400
    listed = app.request("GET", "subscriptions", params={"user_id": "alice"}).json()
    assert listed == [], "a refused subscription was stored: %r" % (listed,)
