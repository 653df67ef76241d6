"""The Pusher HTTP API (`/apps/<app_id>/...` on the API port) with the real
`pusher` PyPI SDK, and raw signed requests for what the SDK never sends.

Subscribers are real WebSocket clients: Pushi-dialect ones (conftest's Client
on `/<key>`) and Pusher-dialect ones (`/app/<key>?protocol=7`), so every
publish is checked where it lands.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import sqlite3
import time

import pusher
import pytest
import requests
from conftest import AppClient, Client, assert_nothing
from contract import APP_FIELDS, ERROR_FIELDS
from websockets.exceptions import ConnectionClosed

DIGITS = re.compile(r"[0-9]{1,20}")


class PusherApp:
    """An app of the shared server, seen by the Pusher SDK and raw requests."""

    def __init__(self, server, name: str = "pusher") -> None:
        self.rest = AppClient(server, name=name)
        self.server = server
        self.app_id = self.rest.info["app_id"]
        self.key = self.rest.key
        self.secret = self.rest.secret
        self.sdk = pusher.Pusher(
            app_id=self.app_id,
            key=self.key,
            secret=self.secret,
            host="127.0.0.1",
            port=server.app_port,
            ssl=False,
        )

    def socket(self, closing) -> Client:
        """A Pushi-dialect subscriber."""
        client = self.rest.socket()
        closing.append(client)
        return client

    def pusher_socket(self, closing) -> Client:
        """A Pusher-dialect subscriber (protocol 7)."""
        url = self.server.ws_url("app/%s?protocol=7&client=test&version=1" % self.key)
        client = Client(url, app=self.rest)
        closing.append(client)
        return client

    def settings(self, **fields) -> None:
        """`PUT /apps/<ident>` of Pusher settings, asserting success."""
        response = self.rest.request("PUT", "apps/" + self.rest.ident, json=fields)
        assert response.status_code == 200, response.text

    def signed(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body: object = None,
        key: str | None = None,
        secret: str | None = None,
        stamp: int | None = None,
        md5: str | None = None,
        sent_body: bytes | None = None,
        version: str = "1.0",
    ) -> requests.Response:
        """A request signed as Pusher documents it (written here, not the SDK's
        code), with ways to get each part wrong."""
        raw = b"" if body is None else json.dumps(body).encode()
        query = dict(params or {})
        query.update(
            auth_key=key or self.key,
            auth_timestamp=str(int(time.time()) if stamp is None else stamp),
            auth_version=version,
        )
        if raw or md5 is not None:
            query["body_md5"] = md5 if md5 is not None else hashlib.md5(raw).hexdigest()
        query["auth_signature"] = sign_query(secret or self.secret, method, path, query)
        return requests.request(
            method,
            self.server.api.rstrip("/") + path,
            params=query,
            data=raw if sent_body is None else sent_body,
            headers={"Content-Type": "application/json"} if raw else {},
            timeout=10,
        )

    def events_path(self) -> str:
        return "/apps/%s/events" % self.app_id


def sign_query(secret: str, method: str, path: str, query: dict) -> str:
    """Pusher's auth_signature: HMAC-SHA256 of METHOD, path and sorted query."""
    pairs = "&".join("%s=%s" % (k, query[k]) for k in sorted(query))
    message = "%s\n%s\n%s" % (method, path, pairs)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def papp(server) -> PusherApp:
    return PusherApp(server)


def assert_json_error(response: requests.Response, code: int, what: str) -> dict:
    """A refusal with Appier's JSON error body."""
    assert response.status_code == code, "%s: expected %d, got %d %s" % (
        what,
        code,
        response.status_code,
        response.text,
    )
    assert response.headers["Content-Type"].startswith("application/json"), what
    body = response.json()
    assert ERROR_FIELDS <= set(body) and body["code"] == code, (what, body)
    return body


def assert_reply(response: requests.Response, expected: dict, what: str) -> None:
    """A 200 with that JSON body, served as JSON."""
    assert response.status_code == 200, "%s: %d %s" % (
        what,
        response.status_code,
        response.text,
    )
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("application/json"), (what, content_type)
    assert response.json() == expected, (what, response.json())


def assert_event(client: Client, channel: str, event: str, data: str) -> dict:
    """The next frame is exactly that event, as Pusher sends it (no stamps)."""
    got = client.next()
    assert got == {
        "channel": channel,
        "event": event,
        "data": data,
    }, "expected %s/%s %r, got %r" % (channel, event, data, got)
    return got


def expect_closed(client: Client) -> None:
    """The server closes the socket (whatever frames come first)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            client.next(timeout=max(0.001, deadline - time.monotonic()))
        except ConnectionClosed:
            return
        except TimeoutError:
            raise AssertionError("expected the socket closed, it is open") from None


def marker(papp: PusherApp, client: Client, channel: str) -> None:
    """Publishes a marker and expects it next: nothing refused came before it."""
    papp.sdk.trigger(channel, "marker", "m")
    assert_event(client, channel, "marker", "m")


# -- app records --------------------------------------------------------------------


def test_every_app_has_a_numeric_app_id_that_stays(papp, server):
    record = papp.rest.info
    assert set(record) == APP_FIELDS, sorted(set(record) ^ APP_FIELDS)
    assert DIGITS.fullmatch(record["app_id"]), record["app_id"]
    assert (
        record["client_events"] is True
        and record["max_payload"] == 10240
        and record["persist"] is False
        and record["webhooks"] == []
    ), record
    other = AppClient(server, name="other")
    assert other.info["app_id"] != record["app_id"]
    papp.settings(app_id="1", name=papp.rest.name + "-x")
    shown = papp.rest.request("GET", "apps/" + papp.rest.ident).json()
    assert shown["app_id"] == record["app_id"], "PUT changed the app_id: %r" % shown
    listed = papp.rest.request("GET", "apps").json()["apps"][0]
    assert listed["app_id"] == record["app_id"] and set(listed) == APP_FIELDS


def test_pusher_settings_are_set_through_put(papp):
    hooks = [{"url": "http://127.0.0.1:1/hook", "event_types": ["member_added"]}]
    papp.settings(client_events=False, max_payload=20000, persist=True, webhooks=hooks)
    shown = papp.rest.request("GET", "apps/" + papp.rest.ident).json()
    assert (
        shown["client_events"],
        shown["max_payload"],
        shown["persist"],
        shown["webhooks"],
    ) == (False, 20000, True, hooks), shown
    # form values are the strings of a form
    response = papp.rest.request(
        "PUT",
        "apps/" + papp.rest.ident,
        data={"client_events": "true", "max_payload": "300", "persist": "0"},
    )
    assert response.status_code == 200, response.text
    shown = papp.rest.request("GET", "apps/" + papp.rest.ident).json()
    assert (shown["client_events"], shown["max_payload"], shown["persist"]) == (
        True,
        300,
        False,
    ), shown


@pytest.mark.parametrize(
    "field, value",
    [
        ("client_events", "maybe"),
        ("persist", 2),
        ("max_payload", "ten"),
        ("max_payload", 0),
        ("max_payload", True),
        ("webhooks", {"url": "http://x"}),
        ("webhooks", [{"url": "ftp://x", "event_types": ["member_added"]}]),
        ("webhooks", [{"url": "http://x", "event_types": ["nonsense"]}]),
        ("webhooks", [{"url": "http://x", "event_types": [], "extra": 1}]),
    ],
)
def test_bad_pusher_settings_are_refused(papp, field, value):
    response = papp.rest.request("PUT", "apps/" + papp.rest.ident, json={field: value})
    body = assert_json_error(response, 400, "PUT %s=%r" % (field, value))
    assert body["name"] == "ValidationError" and field in body["errors"], body
    shown = papp.rest.request("GET", "apps/" + papp.rest.ident).json()
    assert shown[field] == papp.rest.info[field], "a refused PUT changed %s" % field


def test_login_takes_the_numeric_app_id(papp, server):
    response = requests.get(
        server.api + "login",
        params=dict(app_id=papp.app_id, app_key=papp.key, app_secret=papp.secret),
    )
    assert response.status_code == 200 and "token" in response.json(), response.text
    wrong = requests.get(
        server.api + "login",
        params=dict(app_id=papp.app_id, app_key=papp.key, app_secret="x" * 64),
    )
    assert wrong.status_code == 404, wrong.text


def test_pushi_routes_under_apps_are_unchanged(papp):
    shown = papp.rest.request("GET", "apps/" + papp.rest.ident)
    assert shown.status_code == 200 and shown.json()["ident"] == papp.rest.ident
    # an app id is no ident: the Pushi route answers as for any other ident
    numeric = papp.rest.request("GET", "apps/" + papp.app_id)
    assert_json_error(numeric, 404, "GET /apps/<app_id>")


# -- publishing -----------------------------------------------------------------------


def test_trigger_reaches_both_dialects(papp, closing):
    pushi_socket = papp.socket(closing)
    pushi_socket.subscribe("news")
    pusher_socket = papp.pusher_socket(closing)
    pusher_socket.subscribe("news")
    assert papp.sdk.trigger("news", "greet", "hello") == {}
    assert_event(pushi_socket, "news", "greet", "hello")
    assert_event(pusher_socket, "news", "greet", "hello")
    # objects are encoded by the SDK; the string travels as it was sent
    papp.sdk.trigger(["news", "other"], "obj", {"k": [1, 2]})
    sent = json.dumps({"k": [1, 2]}, ensure_ascii=False)
    assert_event(pushi_socket, "news", "obj", sent)
    assert_event(pusher_socket, "news", "obj", sent)
    assert_nothing(pushi_socket, "a second copy of a two-channel trigger")


def test_one_copy_per_socket_for_several_channels(papp, closing):
    client = papp.socket(closing)
    client.subscribe("a")
    client.subscribe("b")
    papp.sdk.trigger(["a", "b"], "both", "x")
    got = client.next()
    assert got["event"] == "both" and got["channel"] in ("a", "b"), got
    assert_nothing(client, "the second channel's copy")


def test_socket_id_excludes_that_socket(papp, closing):
    sender = papp.pusher_socket(closing)
    sender.subscribe("room")
    other = papp.pusher_socket(closing)
    other.subscribe("room")
    assert re.fullmatch(r"\d+\.\d+", sender.socket_id), sender.socket_id
    papp.sdk.trigger("room", "said", "hi", socket_id=sender.socket_id)
    assert_event(other, "room", "said", "hi")
    assert_nothing(sender, "an event excluding this socket")
    # a Pushi-dialect socket (uuid ids) is excluded the same way
    pushi_socket = papp.socket(closing)
    pushi_socket.subscribe("room")
    body = dict(name="said", data="again", channel="room")
    body["socket_id"] = pushi_socket.socket_id
    response = papp.signed("POST", papp.events_path(), body=body)
    assert_reply(response, {}, "POST events")
    assert_event(other, "room", "said", "again")
    assert_nothing(pushi_socket, "an event excluding this socket")


def test_trigger_info_counts(papp, closing):
    first = papp.socket(closing)
    first.subscribe_signed("presence-lobby", {"user_id": "ann"})
    second = papp.socket(closing)
    second.subscribe_signed("presence-lobby", {"user_id": "ann"})
    second.subscribe("plain")
    body = dict(
        name="ev",
        data="d",
        channels=["presence-lobby", "plain", "empty"],
        info="subscription_count,user_count",
    )
    response = papp.signed("POST", papp.events_path(), body=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channels": {
            "presence-lobby": {"subscription_count": 2, "user_count": 1},
            "plain": {"subscription_count": 1},
            "empty": {"subscription_count": 0},
        }
    }, response.json()


def test_trigger_batch(papp, closing):
    client = papp.socket(closing)
    client.subscribe("feed")
    batch = [
        {"channel": "feed", "name": "one", "data": "1"},
        {"channel": "feed", "name": "two", "data": {"n": 2}},
    ]
    assert papp.sdk.trigger_batch(batch) == {}
    assert_event(client, "feed", "one", "1")
    assert_event(client, "feed", "two", json.dumps({"n": 2}, ensure_ascii=False))
    body = {
        "batch": [
            {"channel": "feed", "name": "i", "data": "x", "info": "subscription_count"},
            {"channel": "nobody", "name": "j", "data": "y"},
        ]
    }
    response = papp.signed("POST", "/apps/%s/batch_events" % papp.app_id, body=body)
    assert_reply(response, {"batch": [{"subscription_count": 1}, {}]}, "batch info")
    response = papp.signed(
        "POST", "/apps/%s/batch_events" % papp.app_id, body={"batch": batch[:1]}
    )
    assert_reply(response, {}, "batch")
    assert_event(client, "feed", "i", "x")
    assert_event(client, "feed", "one", "1")


def sign_in(papp, client, user_id: str) -> None:
    """Signs a Pusher socket in as `user_id` (pusher:signin, signed as the
    server SDKs' authenticate_user does) and awaits the success."""
    user_data = json.dumps({"id": user_id})
    signature = hmac.new(
        papp.secret.encode(),
        ("%s::user::%s" % (client.socket_id, user_data)).encode(),
        hashlib.sha256,
    ).hexdigest()
    client.send(
        "pusher:signin",
        {"auth": "%s:%s" % (papp.key, signature), "user_data": user_data},
    )
    client.expect("pusher:signin_success")


def test_send_to_user_reaches_the_signed_in_user(papp, closing):
    client = papp.pusher_socket(closing)
    sign_in(papp, client, "bob")
    papp.sdk.send_to_user("bob", "note", "for bob")
    got = client.expect("note")
    assert got["data"] == "for bob" and got["channel"] == "#server-to-user-bob", got
    # a user's own channel is never listed
    assert "#server-to-user-bob" not in papp.sdk.channels_info()["channels"]


def test_terminate_connections_closes_the_users_sockets(papp, closing):
    client = papp.pusher_socket(closing)
    bystander = papp.pusher_socket(closing)
    sign_in(papp, client, "eve")
    # the documented path, /apps/<app_id>/users/<id>/terminate_connections
    path = "/apps/%s/users/eve/terminate_connections" % papp.app_id
    assert_reply(papp.signed("POST", path, body={}), {}, "terminate_connections")
    expect_closed(client)
    bystander.roundtrip()  # the other socket lives on


def test_the_python_sdks_terminate_path(papp, closing):
    client = papp.pusher_socket(closing)
    sign_in(papp, client, "zed")
    # pusher 3.x posts to /users/<id>/terminate_connections (no /apps/<app_id>)
    assert papp.sdk.terminate_user_connections("zed") == {}
    expect_closed(client)


# -- channel queries ---------------------------------------------------------------


def test_channels_info(papp, closing):
    client = papp.socket(closing)
    client.subscribe("alpha-1")
    client.subscribe("alpha-2")
    client.subscribe("beta")
    member = papp.socket(closing)
    member.subscribe_signed("presence-team", {"user_id": "u1"})
    again = papp.socket(closing)
    again.subscribe_signed("presence-team", {"user_id": "u2"})
    listed = papp.sdk.channels_info()
    assert listed == {
        "channels": {"alpha-1": {}, "alpha-2": {}, "beta": {}, "presence-team": {}}
    }, listed
    assert papp.sdk.channels_info("alpha-") == {
        "channels": {"alpha-1": {}, "alpha-2": {}}
    }
    counted = papp.sdk.channels_info("presence-", ["user_count", "subscription_count"])
    assert counted == {
        "channels": {"presence-team": {"user_count": 2, "subscription_count": 2}}
    }, counted
    with pytest.raises(pusher.errors.PusherBadRequest):
        papp.sdk.channels_info(attributes=["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest):
        papp.sdk.channels_info(attributes=["nonsense"])
    client.close()
    member.close()
    again.close()
    deadline = time.monotonic() + 5
    while papp.sdk.channels_info()["channels"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the closes reach State on its loop: polled
    assert papp.sdk.channels_info() == {"channels": {}}


def test_channel_info_and_users(papp, closing):
    assert papp.sdk.channel_info("nobody-here") == {"occupied": False}
    first = papp.socket(closing)
    first.subscribe_signed("presence-club", {"user_id": "ann"})
    second = papp.socket(closing)
    second.subscribe_signed("presence-club", {"user_id": "bob"})
    third = papp.socket(closing)
    third.subscribe_signed("presence-club", {"user_id": "bob"})
    info = papp.sdk.channel_info("presence-club", ["user_count", "subscription_count"])
    assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}, info
    users = papp.sdk.users_info("presence-club")
    assert users == {"users": [{"id": "ann"}, {"id": "bob"}]}, users
    with pytest.raises(pusher.errors.PusherBadRequest):
        papp.sdk.users_info("not-presence")
    with pytest.raises(pusher.errors.PusherBadRequest):
        papp.sdk.channel_info("not-presence", ["user_count"])
    third.subscribe("plain-one")
    assert papp.sdk.channel_info("plain-one", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 1,
    }
    # every character Pusher allows in a name, in the signed path too
    odd = "presence-a_b=c@d,e.f;g"
    third.subscribe_signed(odd, {"user_id": "carl"})
    info = papp.sdk.channel_info(odd, ["user_count", "subscription_count"])
    assert info == {"occupied": True, "user_count": 1, "subscription_count": 1}
    assert papp.sdk.users_info(odd) == {"users": [{"id": "carl"}]}
    papp.sdk.trigger(odd, "odd", "x")
    assert third.expect("odd", channel=odd)["data"] == "x"


# -- storage ------------------------------------------------------------------------


def test_publishes_are_stored_only_when_the_app_persists(papp, closing):
    client = papp.socket(closing)
    client.subscribe("kept")
    papp.sdk.trigger("kept", "first", "not stored")
    assert_event(client, "kept", "first", "not stored")
    papp.settings(persist=True)
    papp.sdk.trigger("kept", "second", "stored")
    got = client.next()
    assert (got["event"], got["data"]) == ("second", "stored") and {
        "mid",
        "timestamp",
    } <= set(got), got
    # answered after the commit: the event is there at once
    stored = papp.rest.request("GET", "events", params=dict(channel="kept")).json()
    datas = [event["data"] for event in stored["events"]]
    assert datas == [{"channel": "kept", "event": "second", "data": "stored"}], datas
    assert stored["events"][0]["mid"] == got["mid"]
    papp.sdk.trigger_batch(
        [
            {"channel": "kept", "name": "b1", "data": "x"},
            {"channel": "kept", "name": "b2", "data": "y"},
        ]
    )
    stored = papp.rest.request("GET", "events", params=dict(channel="kept")).json()
    assert [e["data"]["event"] for e in stored["events"]] == ["b2", "b1", "second"]


def test_a_stored_publish_answers_after_its_commit(start_server, tmp_path, closing):
    if os.environ.get("MONGO_URL"):
        pytest.skip("holds the embedded store's writer (no such handle on MongoDB)")
    server = start_server(data_dir=str(tmp_path))
    papp = PusherApp(server)
    papp.settings(persist=True)
    subscriber = papp.socket(closing)
    subscriber.subscribe("held")
    blocker = sqlite3.connect(
        os.path.join(server.data_dir, "store", "pushi.db"), isolation_level=None
    )
    blocker.execute("BEGIN IMMEDIATE")  # the store worker cannot commit now
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(papp.sdk.trigger, "held", "ev", "d")
            # delivered at once, answered only once committed
            assert subscriber.expect("ev", channel="held")["data"] == "d"
            with pytest.raises(concurrent.futures.TimeoutError):
                running.result(timeout=1.0)
            blocker.execute("ROLLBACK")
            assert running.result(timeout=10) == {}
    finally:
        blocker.close()


# -- refusals -----------------------------------------------------------------------


def test_signature_refusals(papp, closing):
    client = papp.socket(closing)
    client.subscribe("guarded")
    body = dict(name="ev", data="forged", channel="guarded")
    path = papp.events_path()
    refusals = {
        "bad signature": papp.signed("POST", path, body=body, secret="not-the-secret"),
        "stale timestamp": papp.signed(
            "POST", path, body=body, stamp=int(time.time()) - 601
        ),
        "future timestamp": papp.signed(
            "POST", path, body=body, stamp=int(time.time()) + 601
        ),
        "wrong key": papp.signed("POST", path, body=body, key="someone-else"),
        "tampered body": papp.signed(
            "POST", path, body=body, sent_body=json.dumps(dict(body, data="x")).encode()
        ),
        "tampered body_md5": papp.signed("POST", path, body=body, md5="0" * 32),
        "auth_version": papp.signed("POST", path, body=body, version="2.0"),
    }
    for what, response in refusals.items():
        assert_json_error(response, 401, what)
    raw = json.dumps(body).encode()
    url = papp.server.api.rstrip("/") + path
    stamp = str(int(time.time()))
    md5 = hashlib.md5(raw).hexdigest()
    # no signature at all
    query = dict(auth_key=papp.key, auth_timestamp=stamp, auth_version="1.0")
    query["body_md5"] = md5
    response = requests.post(url, params=query, data=raw, timeout=10)
    assert_json_error(response, 401, "no signature")
    # signed without body_md5, for a request with a body
    query = dict(auth_key=papp.key, auth_timestamp=stamp, auth_version="1.0")
    query["auth_signature"] = sign_query(papp.secret, "POST", path, query)
    response = requests.post(url, params=query, data=raw, timeout=10)
    assert_json_error(response, 401, "missing body_md5")
    # the same queries on a GET route
    channels = "/apps/%s/channels" % papp.app_id
    assert_json_error(
        papp.signed("GET", channels, secret="nope"), 401, "GET bad signature"
    )
    assert papp.signed("GET", channels).status_code == 200
    for skew in (-590, 590):  # within the 600 s window
        stamp = int(time.time()) + skew
        assert papp.signed("GET", channels, stamp=stamp).status_code == 200, skew
    marker(papp, client, "guarded")


def test_unknown_app_id(papp):
    response = papp.signed("POST", "/apps/999999999999/events", body={"name": "x"})
    assert_json_error(response, 404, "unknown app_id")
    response = papp.signed("GET", "/apps/1/channels")
    assert_json_error(response, 404, "unknown app_id")


def test_limits(papp, closing):
    client = papp.socket(closing)
    client.subscribe("limited")
    path = papp.events_path()

    def publish(**fields):
        body = dict(dict(name="ev", data="d", channel="limited"), **fields)
        return papp.signed("POST", path, body=body)

    assert_json_error(publish(data="x" * 10241), 413, "payload over 10 KB")
    assert publish(data="x" * 10240).status_code == 200
    assert client.next()["data"] == "x" * 10240
    papp.settings(max_payload=100)
    assert_json_error(publish(data="é" * 51), 413, "payload over the app's bytes")
    papp.settings(max_payload=20000)
    assert publish(data="x" * 15000).status_code == 200
    assert client.next()["data"] == "x" * 15000
    channels = ["c%d" % n for n in range(101)]
    del_channel = dict(name="ev", data="d", channels=channels)
    response = papp.signed("POST", path, body=del_channel)
    assert_json_error(response, 400, "101 channels")
    assert_json_error(publish(name="e" * 201), 400, "event name over 200")
    assert publish(name="e" * 200).status_code == 200
    assert client.next()["event"] == "e" * 200
    for bad in ("has space", "a" * 165, "semi;ok:colon", "", 5):
        assert_json_error(publish(channel=bad), 400, "channel %r" % (bad,))
    assert_json_error(publish(data={"not": "a string"}), 400, "object data")
    assert_json_error(publish(name="pusher:spoof"), 400, "reserved name")
    assert_json_error(publish(info="bogus"), 400, "unknown info")
    batch = {"batch": [dict(name="ev", data="d", channel="limited")] * 11}
    response = papp.signed("POST", "/apps/%s/batch_events" % papp.app_id, body=batch)
    assert_json_error(response, 400, "11 batch events")
    bad_batch = {
        "batch": [
            dict(name="ev", data="ok", channel="limited"),
            dict(name="ev", data="x" * 20001, channel="limited"),
        ]
    }
    response = papp.signed(
        "POST", "/apps/%s/batch_events" % papp.app_id, body=bad_batch
    )
    assert_json_error(response, 413, "batch with an oversized event")
    assert_json_error(
        papp.signed("POST", path, body=None), 400, "publish without a body"
    )
    with pytest.raises(pusher.errors.PusherBadRequest):
        papp.sdk.trigger_batch([{"channel": "limited", "name": "ev", "data": "d"}] * 11)
    marker(papp, client, "limited")
