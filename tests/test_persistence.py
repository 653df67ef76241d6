"""Personal channels, persisted subscriptions and stored events (contract §1, §3.5).

Pushi dialect over a real WebSocket and the REST API against the real server
process; the store follows MONGO_URL (unset: the embedded store). To prove a
message did NOT arrive, a test does a ping round trip on that socket after the
action (a REST publish returns once the server has routed the event). Reads that
follow a publish need no wait either: a persisted publish answers only once its
event is committed (tests/test_durability.py), and every read runs on the store
worker behind the writes queued before.
"""

from __future__ import annotations

import json
import uuid

from conftest import AppClient, Client, assert_nothing, until_pong
from contract import EVENT_RECORD_FIELDS as EVENT_FIELDS
from contract import INFO_KEYS

REPLY_KEYS = set(INFO_KEYS)


# -- helpers ---------------------------------------------------------------------------


def personal(app: AppClient, user_id: str) -> tuple[Client, dict]:
    """A socket subscribed (signed) to the user's personal channel, and the reply."""
    client = app.socket()
    reply = client.subscribe_signed("personal-" + user_id)
    assert set(reply) == REPLY_KEYS, "expected exactly %s, got %r" % (
        sorted(REPLY_KEYS),
        reply,
    )
    assert reply["name"] == "personal-" + user_id and reply["members"] == {}, reply
    return client, reply


def latest(client: Client, channel: str, **params) -> list[dict]:
    client.send("pusher:latest", dict(channel=channel, **params))
    reply = json.loads(client.expect("pusher_internal:latest", channel)["data"])
    assert set(reply) == REPLY_KEYS, "latest: expected exactly %s, got %r" % (
        sorted(REPLY_KEYS),
        reply,
    )
    return reply["events"]


def publish(app: AppClient, channel, data, **extra) -> None:
    body = dict(channel=channel, data=data, **extra)
    response = app.request("POST", "events", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"result": "success"}, response.text


def stored(app: AppClient, **params) -> list[dict]:
    response = app.request("GET", "events", params=dict(params, count=100))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def list_subscriptions(app: AppClient, **params) -> list[tuple[str, str]]:
    response = app.request("GET", "subscriptions", params=params)
    assert response.status_code == 200, response.text
    return [(s["user_id"], s["event"]) for s in response.json()["subscriptions"]]


def unsubscribe_user(app: AppClient, user_id: str, channel: str) -> dict:
    response = app.request("DELETE", "subscriptions/%s/%s" % (user_id, channel))
    assert response.status_code == 200, response.text
    return response.json()


def datas(records: list[dict]) -> list:
    """The published payloads of stored event records."""
    return [record["data"]["data"] for record in records]


def assert_ws_record(record: dict, app: AppClient, what: str) -> None:
    """An event record as the WebSocket replies carry it: no `_id` (contract §3.3)."""
    assert set(record) == EVENT_FIELDS, "%s: expected the keys %s, got %r" % (
        what,
        sorted(EVENT_FIELDS),
        record,
    )
    assert (
        record["instance"] == app.ident
        and record["enabled"] is True
        and record["description"] is None
        and record["meta"] == {}
    ), "%s: expected the common fields of this app, got %r" % (what, record)
    assert str(uuid.UUID(record["mid"])) == record["mid"], record
    assert type(record["timestamp"]) is float and type(record["id"]) is int, record
    assert type(record["created"]) is int and type(record["modified"]) is int, record
    assert isinstance(record["data"], dict), record
    assert record["data"]["channel"] == record["channel"], record


# -- personal channels -----------------------------------------------------------------


def test_personal_channel_requires_auth(app):
    client = app.socket()
    client.send("pusher:subscribe", {"channel": "personal-alice"})
    error = client.expect("pusher:error")
    assert error["data"]["code"] == 4009 and error["channel"] == "personal-alice", error
    # a signature for another user's personal channel does not open this one
    wrong = app.auth(client.socket_id, "personal-bob")
    client.send("pusher:subscribe", {"channel": "personal-alice", "auth": wrong})
    error = client.expect("pusher:error")
    assert error["data"]["code"] == 4009, error
    got = until_pong(client)
    assert not any(
        m.get("event") == "pusher_internal:subscription_succeeded" for m in got
    ), got


def test_reply_lists_aliases_in_subscription_order(app):
    for channel in ("sports", "news", "arts"):
        app.subscribe_user("alice", channel)
    client, reply = personal(app, "alice")
    assert reply["alias"] == ["sports", "news", "arts"], reply
    assert reply["events"] == [], reply
    # the aliases are joined without a reply of their own
    assert_nothing(client, "a reply per alias")


def test_aliases_reach_the_personal_socket_on_their_own_channel(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    client, _ = personal(app, "alice")
    publish(app, "news", "headline")
    got = client.expect("message", "news")
    assert got["data"] == "headline" and got["channel"] == "news", got
    publish(app, "sports", "score")
    assert client.expect("message", "sports")["data"] == "score"
    publish(app, "weather", "rain")  # alice does not follow it
    assert_nothing(client, "an event of a channel alice does not follow")


def test_other_users_and_apps_do_not_reach(app, other_app):
    app.subscribe_user("bob", "news")
    other_app.subscribe_user("alice", "news")  # same user id, other app
    client, reply = personal(app, "alice")
    assert reply["alias"] == [], reply
    publish(app, "news", "for bob")
    publish(other_app, "news", "other app")
    assert_nothing(client, "events of channels alice does not follow")


def test_history_is_made_when_events_are_stored(app):
    publish(app, "news", "before")  # stored before alice followed news
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    publish(app, "news", "n1")
    publish(app, "sports", "s2")
    publish(app, "weather", "not followed")
    publish(app, "news", "n3")
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["n3", "s2", "n1"], reply
    for record in reply["events"]:
        assert_ws_record(record, app, "personal reply")
    assert [e["channel"] for e in reply["events"]] == ["news", "sports", "news"]
    by_mid = {e["mid"]: e for e in stored(app)}
    for record in reply["events"]:
        rest = dict(by_mid[record["mid"]])
        assert (
            rest.pop("_id") and rest == record
        ), "a history record differs from GET /events: %r / %r" % (
            record,
            by_mid[record["mid"]],
        )
    # associated events survive the subscription's deletion; later ones are absent
    unsubscribe_user(app, "alice", "news")
    publish(app, "news", "after delete")
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["n3", "s2", "n1"], reply


def test_history_lists_the_ten_newest(app):
    app.subscribe_user("alice", "news")
    for index in range(12):
        publish(app, "news", "e%d" % index)
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["e%d" % i for i in range(11, 1, -1)], reply


def test_one_association_per_user_per_trigger(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    client, _ = personal(app, "alice")
    publish(app, ["sports", "news"], "both")
    got = client.next()
    assert (got["channel"], got["data"]) == ("sports", "both"), got
    assert_nothing(client, "a second copy of one trigger")
    assert [e["channel"] for e in stored(app)] == ["news", "sports"]
    _, reply = personal(app, "alice")
    assert [(e["channel"], e["data"]["data"]) for e in reply["events"]] == [
        ("sports", "both")
    ], "expected one history entry, for the first listed channel: %r" % (reply,)


def test_events_while_offline_come_on_next_connect(app):
    app.subscribe_user("alice", "news")
    client, _ = personal(app, "alice")
    publish(app, "news", "online")
    client.expect("message", "news", data="online")
    client.close()
    publish(app, "news", "offline 1")
    publish(app, "news", "offline 2")
    _, reply = personal(app, "alice")
    assert datas(reply["events"]) == ["offline 2", "offline 1", "online"], reply


def test_a_publish_to_a_personal_channel_is_stored_and_reaches_nobody(app):
    client, _ = personal(app, "alice")
    publish(app, "personal-alice", "direct")
    assert_nothing(client, "a REST event on personal-alice")
    assert [(e["channel"], e["data"]["data"]) for e in stored(app)] == [
        ("personal-alice", "direct")
    ]


def test_subscription_created_while_connected_applies_at_once(app):
    client, reply = personal(app, "alice")
    assert reply["alias"] == [] and reply["events"] == [], reply
    app.subscribe_user("alice", "news")
    publish(app, "news", "live")
    got = client.expect("message", "news")
    assert got["data"] == "live", got


def test_delete_subscription_stops_delivery_at_once(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "marker")
    client, _ = personal(app, "alice")
    deleted = unsubscribe_user(app, "alice", "news")
    assert (deleted["user_id"], deleted["event"]) == ("alice", "news"), deleted
    publish(app, "news", "after delete")
    publish(app, "marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got
    assert_nothing(client, "events of a deleted subscription")
    assert list_subscriptions(app, user_id="alice") == [("alice", "marker")]
    assert unsubscribe_user(app, "alice", "news") == {"result": "success"}


def test_delete_subscription_keeps_direct_subscription(app):
    app.subscribe_user("alice", "news")
    client, _ = personal(app, "alice")
    client.subscribe("news")  # also joined directly
    unsubscribe_user(app, "alice", "news")
    publish(app, "news", "still direct")
    assert client.expect("message", "news")["data"] == "still direct"
    assert_nothing(client, "a duplicate copy")


def test_alias_and_direct_subscription_deliver_once(app):
    app.subscribe_user("alice", "news")
    client, _ = personal(app, "alice")
    client.subscribe("news")
    publish(app, "news", "once")
    assert client.expect("message", "news")["data"] == "once"
    assert_nothing(client, "a second copy of one event")


def test_unsubscribing_the_personal_channel_leaves_its_aliases(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "marker")
    publish(app, "news", "kept")
    client, _ = personal(app, "alice")
    client.subscribe("direct-marker")
    client.send("pusher:unsubscribe", {"channel": "personal-alice"})
    reply = client.expect("pusher_internal:unsubscription_succeeded", "personal-alice")
    left = json.loads(reply["data"])
    assert set(left) == REPLY_KEYS and left["alias"] == ["news", "marker"], left
    assert datas(left["events"]) == ["kept"], left
    publish(app, "news", "after leaving")
    publish(app, "direct-marker", "marker")
    got = client.next()
    assert got.get("channel") == "direct-marker", "expected marker first, got %r" % got


def test_latest_on_personal_channel_pages_its_history(app):
    app.subscribe_user("alice", "news")
    app.subscribe_user("alice", "sports")
    for index in range(6):
        publish(app, "news" if index % 2 else "sports", "e%d" % index)
    publish(app, "weather", "not followed")
    client, _ = personal(app, "alice")
    history = latest(client, "personal-alice")
    assert datas(history) == ["e5", "e4", "e3", "e2", "e1", "e0"], history
    for record in history:
        assert_ws_record(record, app, "latest on personal-alice")
    assert datas(latest(client, "personal-alice", skip=1, count=2)) == ["e4", "e3"]
    assert datas(latest(client, "personal-alice", skip=4, count=10)) == ["e1", "e0"]
    assert latest(client, "personal-alice", skip=6) == []


def test_latest_on_another_users_personal_channel_is_refused(app):
    app.subscribe_user("bob", "news")
    publish(app, "news", "bob's")
    client, _ = personal(app, "alice")
    client.send("pusher:latest", {"channel": "personal-bob"})
    got = until_pong(client)
    errors = [m for m in got if m.get("event") == "pusher:error"]
    assert len(errors) == 1, "expected a refusal, got %r" % got
    assert not any(m.get("event") == "pusher_internal:latest" for m in got), got


def test_seed_subscribe_and_unsubscribe_routes_apply_at_once(app):
    client, _ = personal(app, "alice")
    client.subscribe("marker")
    response = app.request(
        "POST",
        "apps/%s/subscribe" % app.ident,
        data={"user_id": "alice", "event": "news"},
    )
    assert response.status_code == 200, response.text
    assert list_subscriptions(app, user_id="alice") == [("alice", "news")]
    publish(app, "news", "via seed route")
    assert client.expect("message", "news")["data"] == "via seed route"
    response = app.request(
        "GET",
        "apps/%s/unsubscribe" % app.ident,
        params={"user_id": "alice", "event": "news"},
    )
    assert response.status_code == 200, response.text
    assert list_subscriptions(app, user_id="alice") == []
    publish(app, "news", "after seed unsubscribe")
    publish(app, "marker", "marker")
    got = client.next()
    assert got.get("channel") == "marker", "expected the marker first, got %r" % got


def test_subscribing_twice_stores_and_delivers_once(app):
    first = app.subscribe_user("alice", "news")
    second = app.subscribe_user("alice", "news")
    assert (first["_id"], first["id"]) == (second["_id"], second["id"]), (first, second)
    assert list_subscriptions(app, user_id="alice") == [("alice", "news")]
    client, _ = personal(app, "alice")
    publish(app, "news", "once")
    assert client.expect("message", "news")["data"] == "once"
    assert_nothing(client, "a duplicate")
    assert datas(latest(client, "personal-alice")) == ["once"]


# -- stored events ---------------------------------------------------------------------


def test_latest_on_a_channel_answers_records_newest_first(app):
    client = app.socket()
    client.subscribe("news")
    for index in range(4):
        publish(app, "news", "e%d" % index)
    publish(app, "other", "elsewhere")
    records = latest(client, "news")
    assert datas(records) == ["e3", "e2", "e1", "e0"], records
    for record in records:
        assert_ws_record(record, app, "latest on news")
        assert record["owner_id"] is None, record
    assert datas(latest(client, "news", skip=1, count=2)) == ["e2", "e1"]
    assert datas(latest(client, "news", count=0)) == ["e3"], "count 0 is clamped to 1"


def test_stored_events_keep_the_published_body_in_order(app):
    client = app.socket()
    client.subscribe("news")
    body = {"zeta": 1, "data": {"b": 1, "a": [2]}, "alpha": {"y": 1, "x": 2}}
    publish(app, "news", body["data"], zeta=1, alpha=body["alpha"])
    got = client.expect("message", "news")
    record = latest(client, "news")[0]
    unstamped = {k: v for k, v in got.items() if k not in ("mid", "timestamp")}
    assert record["data"] == unstamped and list(record["data"]) == list(unstamped), (
        "expected the delivered message without mid and timestamp, in its order: "
        "%r, got %r" % (unstamped, record["data"])
    )
    assert list(record["data"]["alpha"]) == ["y", "x"], record
    assert record["data"]["data"] == '{"b": 1, "a": [2]}', record
    assert (record["mid"], record["timestamp"]) == (got["mid"], got["timestamp"])


def test_events_subscriptions_and_apps_survive_a_restart(start_server, tmp_path):
    handle = start_server(data_dir=str(tmp_path))
    app = AppClient(handle)
    app.subscribe_user("alice", "news")
    for index in range(3):
        publish(app, "news", "e%d" % index)
    before = stored(app)
    _, reply = personal(app, "alice")
    handle.restart()
    app.login()  # same credentials, new process
    assert stored(app) == before, "stored events changed across a restart"
    assert list_subscriptions(app) == [("alice", "news")]
    client, again = personal(app, "alice")
    assert again == reply, "the personal reply changed across a restart"
    publish(app, "news", "after restart")
    assert client.expect("message", "news")["data"] == "after restart"
    newest = stored(app)[0]
    assert newest["id"] > before[0]["id"], "ids must keep growing: %r" % newest
