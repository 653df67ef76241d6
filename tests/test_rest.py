"""The REST API (protocol.md §4) against the real server, route by route.

Every test creates its own app (`app`, `other_app` fixtures or a private server) and
talks HTTP to the real process. Calls that must carry no session use bare `requests`
calls, never the app's logged-in `requests.Session` (it holds the session cookie).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
import requests
from conftest import AppClient, mongo_url

HEX64 = re.compile(r"^[0-9a-f]{64}$")
LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/usr/|/tmp/|/home/|/work/")
TIMEOUT = 10


# -- helpers ---------------------------------------------------------------------------


def call(server, method: str, path: str, **kwargs) -> requests.Response:
    """A REST call with no session at all (no cookie jar, no token)."""
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("allow_redirects", False)
    return requests.request(method, server.api + path, **kwargs)


def credentials(app: AppClient) -> dict:
    return dict(app_id=app.ident, app_key=app.key, app_secret=app.secret)


def fresh_token(app: AppClient) -> str:
    """A new session token for the app, obtained without any cookie jar."""
    response = call(app.server, "GET", "login", params=credentials(app))
    assert response.status_code == 200, "login: expected 200, got %d %s" % (
        response.status_code,
        response.text,
    )
    token = response.json().get("token")
    assert isinstance(token, str) and token, "login: expected a token, got %r" % (
        response.text,
    )
    return token


def assert_error(response: requests.Response, status: int | tuple, what: str) -> dict:
    """A refused call: the status, a JSON body with `code` and `message`, no trace."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, "%s: expected HTTP %s, got %d %r" % (
        what,
        "/".join(map(str, statuses)),
        response.status_code,
        response.text[:500],
    )
    assert "json" in response.headers.get(
        "Content-Type", ""
    ), "%s: expected a JSON error body, got Content-Type %r and %r" % (
        what,
        response.headers.get("Content-Type"),
        response.text[:500],
    )
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            "%s: error body is not JSON: %r" % (what, response.text[:500])
        ) from None
    assert isinstance(body, dict), "%s: expected a JSON object, got %r" % (what, body)
    assert (
        body.get("code") == response.status_code
    ), "%s: expected code %d in the body, got %r" % (what, response.status_code, body)
    assert (
        isinstance(body.get("message"), str) and body["message"]
    ), "%s: expected a message in the body, got %r" % (what, body)
    leak = LEAKS.search(response.text)
    assert leak is None, "%s: error body leaks %r: %r" % (
        what,
        leak.group(0),
        response.text,
    )
    return body


def assert_ok(response: requests.Response, what: str):
    assert response.status_code == 200, "%s: expected 200, got %d %r" % (
        what,
        response.status_code,
        response.text[:500],
    )
    return response.json()


def published_event(app: AppClient, client, channel: str, data: str) -> dict:
    """Publishes a marker and returns the next message the client reads.

    Used after refused publishes: if any of them had been delivered, it would come
    before the marker (one socket, one channel, in order), so no sleep is needed.
    """
    app.publish(channel, data)
    return client.next()


# -- apps: registration ----------------------------------------------------------------


def test_create_app_returns_its_credentials(server):
    name = "reg-" + secrets.token_hex(3)
    first = assert_ok(call(server, "POST", "apps", json={"name": name}), "POST /apps")
    second = assert_ok(call(server, "POST", "apps", json={"name": name}), "POST /apps")
    for created in (first, second):
        assert created.get("name") == name, "expected name %r, got %r" % (name, created)
        assert (
            isinstance(created.get("ident"), str) and created["ident"]
        ), "expected an ident, got %r" % (created,)
        assert HEX64.match(
            created.get("key") or ""
        ), "expected a 64 hex key, got %r" % (created.get("key"),)
        assert (
            isinstance(created.get("secret"), str) and len(created["secret"]) >= 32
        ), "expected a secret, got %r" % (created.get("secret"),)
        assert created["secret"] != created["key"], "secret equals key: %r" % (created,)
    for field in ("ident", "key", "secret"):
        assert first[field] != second[field], "two apps share their %s: %r / %r" % (
            field,
            first,
            second,
        )


def test_create_app_from_form_fields(server):
    created = assert_ok(
        call(server, "POST", "apps", data={"name": "form"}), "POST /apps"
    )
    assert created.get("name") == "form" and HEX64.match(
        created.get("key") or ""
    ), "expected an app named 'form', got %r" % (created,)


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": None}, {"name": ["x"]}, {"name": "x" * 300}],
    ids=["missing", "empty", "null", "list", "too-long"],
)
def test_create_app_without_a_valid_name_is_400(server, body):
    assert_error(call(server, "POST", "apps", json=body), 400, "POST /apps %r" % body)


# -- login and sessions ----------------------------------------------------------------


def test_login_by_get_and_post(app):
    tokens = []
    for method, kwargs in (
        ("GET", dict(params=credentials(app))),
        ("POST", dict(data=credentials(app))),
        ("POST", dict(json=credentials(app))),
    ):
        response = call(app.server, method, "login", **kwargs)
        body = assert_ok(response, "%s /login %s" % (method, list(kwargs)))
        token = body.get("token")
        assert isinstance(token, str) and token, "expected a token, got %r" % (body,)
        tokens.append(token)
        listed = assert_ok(
            call(app.server, "GET", "apps", params={"sid": token}), "GET /apps"
        )
        assert [a.get("ident") for a in listed] == [
            app.ident
        ], "token of %s /login: expected this app only, got %r" % (method, listed)
    assert len(set(tokens)) == len(tokens), (
        "expected distinct sessions, got %r" % tokens
    )


@pytest.mark.parametrize(
    "change",
    ["secret", "key", "ident", "other-secret"],
)
def test_login_with_bad_credentials_is_403(app, other_app, change):
    fields = credentials(app)
    if change == "secret":
        fields["app_secret"] = secrets.token_hex(32)
    elif change == "key":
        fields["app_key"] = other_app.key
    elif change == "ident":
        fields["app_id"] = secrets.token_hex(12)
    else:
        fields["app_secret"] = other_app.secret
    for method, kwargs in (("GET", dict(params=fields)), ("POST", dict(data=fields))):
        response = call(app.server, method, "login", **kwargs)
        body = assert_error(response, 403, "%s /login with a bad %s" % (method, change))
        assert "token" not in body, "refused login handed a token: %r" % (body,)


def test_login_without_fields_is_400(server):
    assert_error(call(server, "GET", "login"), 400, "GET /login without fields")
    assert_error(
        call(server, "POST", "login", data={"app_id": "x"}), 400, "POST /login partial"
    )


@pytest.mark.parametrize("transport", ["query", "form", "header", "cookie"])
def test_session_token_transports(app, transport):
    token = fresh_token(app)

    def attempt(with_token: bool) -> requests.Response:
        if transport == "form":
            # a form POST carrying the token among its fields
            data = {"data": "via-form", "channel": "tokens"}
            if with_token:
                data["sid"] = token
            return call(app.server, "POST", "events", data=data)
        kwargs = {}
        if with_token and transport == "query":
            kwargs["params"] = {"sid": token}
        if with_token and transport == "header":
            kwargs["headers"] = {"X-Session-Id": token}
        if with_token and transport == "cookie":
            kwargs["cookies"] = {"sid": token}
        return call(app.server, "GET", "apps", **kwargs)

    assert_error(attempt(False), 401, "%s call without the token" % transport)
    body = assert_ok(attempt(True), "%s call with the token" % transport)
    if transport == "form":
        assert (
            body.get("data") == "via-form" and body.get("channel") == "tokens"
        ), "form POST /events: expected the published event, got %r" % (body,)
    else:
        assert [a.get("ident") for a in body] == [
            app.ident
        ], "token by %s: expected this app, got %r" % (transport, body)


def test_logout_ends_the_session(app):
    token = fresh_token(app)
    keeper = fresh_token(app)
    assert_ok(call(app.server, "GET", "apps", params={"sid": token}), "before logout")
    assert_ok(call(app.server, "GET", "logout", params={"sid": token}), "/logout")
    assert_error(
        call(app.server, "GET", "apps", params={"sid": token}),
        401,
        "GET /apps after logout",
    )
    assert_error(
        call(app.server, "POST", "events", params={"sid": token}, json={"data": "x"}),
        401,
        "POST /events after logout",
    )
    assert_error(
        call(app.server, "GET", "sockets", headers={"X-Session-Id": token}),
        401,
        "GET /sockets after logout",
    )
    # another session of the same app is not affected
    assert_ok(call(app.server, "GET", "apps", params={"sid": keeper}), "other session")


def test_logout_by_post(app):
    token = fresh_token(app)
    assert_ok(call(app.server, "POST", "logout", data={"sid": token}), "POST /logout")
    assert_error(
        call(app.server, "GET", "apps", params={"sid": token}),
        401,
        "after POST /logout",
    )


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "apps"),
        ("GET", "apps/{ident}"),
        ("PUT", "apps/{ident}"),
        ("POST", "events"),
        ("GET", "events"),
        ("POST", "subscriptions"),
        ("GET", "subscriptions"),
        ("DELETE", "subscriptions/alice/news"),
        ("POST", "apps/{ident}/subscribe"),
        ("POST", "apps/{ident}/unsubscribe"),
        ("GET", "sockets"),
        ("GET", "sockets/1.1"),
    ],
)
def test_calls_without_a_session_are_401(app, method, path):
    path = path.format(ident=app.ident)
    body = {"name": "hijack", "data": "x", "user_id": "alice", "event": "news"}
    for sid in (None, "garbage", secrets.token_hex(32)):
        params = {"sid": sid} if sid else {}
        response = call(app.server, method, path, json=body, params=params)
        assert_error(response, 401, "%s /%s with sid %r" % (method, path, sid))
    # nothing was changed behind the refusals
    own = assert_ok(app.request("GET", "apps/" + app.ident), "GET own app")
    assert own.get("name") == "test", "a refused PUT renamed the app: %r" % (own,)
    stored = assert_ok(app.request("GET", "subscriptions"), "GET /subscriptions")
    assert stored == [], "a refused POST stored a subscription: %r" % (stored,)


# -- apps: reading and updating --------------------------------------------------------


def test_app_listing_and_details_never_contain_the_secret(app, other_app):
    listed = assert_ok(app.request("GET", "apps"), "GET /apps")
    assert isinstance(listed, list) and [a.get("ident") for a in listed] == [
        app.ident
    ], "GET /apps: expected only this app, got %r" % (listed,)
    shown = assert_ok(app.request("GET", "apps/" + app.ident), "GET /apps/<ident>")
    assert (
        shown.get("ident") == app.ident and shown.get("key") == app.key
    ), "GET /apps/<ident>: expected this app, got %r" % (shown,)
    for what, response in (
        ("GET /apps", app.request("GET", "apps")),
        ("GET /apps/<ident>", app.request("GET", "apps/" + app.ident)),
    ):
        assert (
            "secret" not in response.text and app.secret not in response.text
        ), "%s leaks the secret: %r" % (what, response.text)
        assert other_app.ident not in response.text, "%s shows another app: %r" % (
            what,
            response.text,
        )


def test_put_renames_the_app_and_keeps_its_credentials(app):
    renamed = assert_ok(
        app.request(
            "PUT",
            "apps/" + app.ident,
            json={"name": "renamed", "key": "0" * 64, "secret": "1" * 64, "ident": "x"},
        ),
        "PUT /apps/<ident>",
    )
    assert renamed.get("name") == "renamed", "expected the new name, got %r" % (
        renamed,
    )
    assert "secret" not in renamed, "PUT answer leaks the secret: %r" % (renamed,)
    shown = assert_ok(app.request("GET", "apps/" + app.ident), "GET after PUT")
    assert (shown.get("name"), shown.get("ident"), shown.get("key")) == (
        "renamed",
        app.ident,
        app.key,
    ), "expected the renamed app with unchanged ident and key, got %r" % (shown,)
    # the credentials still log in, and the socket key still connects
    fresh_token(app)
    client = app.socket()
    client.subscribe("after-rename")
    client.close()


def test_put_with_form_fields_renames(app):
    renamed = assert_ok(
        app.request("PUT", "apps/" + app.ident, data={"name": "form-renamed"}),
        "PUT form",
    )
    assert renamed.get("name") == "form-renamed", "expected the new name, got %r" % (
        renamed,
    )


@pytest.mark.parametrize(
    "name",
    ["", "x" * 300, 5, None, ["a"]],
    ids=["empty", "long", "int", "null", "list"],
)
def test_put_with_an_invalid_name_is_400(app, name):
    response = app.request("PUT", "apps/" + app.ident, json={"name": name})
    assert_error(response, 400, "PUT /apps/<ident> name=%r" % (name,))
    shown = assert_ok(app.request("GET", "apps/" + app.ident), "GET after refused PUT")
    assert shown.get("name") == "test", "a refused PUT changed the name: %r" % (shown,)


def test_another_apps_ident_is_403(app, other_app):
    assert_error(app.request("GET", "apps/" + other_app.ident), 403, "GET other app")
    assert_error(
        app.request("PUT", "apps/" + other_app.ident, json={"name": "hijacked"}),
        403,
        "PUT other app",
    )
    shown = assert_ok(other_app.request("GET", "apps/" + other_app.ident), "other GET")
    assert shown.get("name") == "other", "another app renamed it: %r" % (shown,)
    assert_error(
        app.request("GET", "apps/" + secrets.token_hex(12)),
        (403, 404),
        "GET unknown app",
    )


# -- events: publishing ----------------------------------------------------------------


def test_publish_to_one_channel(app):
    client = app.socket()
    client.subscribe("news")
    sent = app.publish("news", "hello", event="update", extra="kept")
    assert (
        sent.get("channel") == "news" and sent.get("event") == "update"
    ), "POST /events: expected channel news, event update, got %r" % (sent,)
    assert isinstance(sent.get("mid"), str) and isinstance(
        sent.get("timestamp"), float
    ), "a persisted publish answers mid and timestamp, got %r" % (sent,)
    got = client.expect("update", "news")
    assert (got.get("data"), got.get("mid"), got.get("extra")) == (
        "hello",
        sent["mid"],
        "kept",
    ), "expected data 'hello', mid %s, extra 'kept', got %r" % (sent["mid"], got)
    client.close()


def test_publish_never_takes_reserved_keys_from_the_caller(app):
    client = app.socket()
    client.subscribe("reserved")
    # socket_id names a socket to leave out (Pusher's rule), never a message field
    sent = app.publish("reserved", "x", mid="forged", timestamp=1.0, socket_id="1.1")
    assert (
        sent.get("mid") != "forged" and sent.get("timestamp") != 1.0
    ), "caller set reserved keys: %r" % (sent,)
    got = client.expect("message", "reserved")
    assert (
        got.get("mid") == sent["mid"] and "socket_id" not in got
    ), "expected the server's mid and no socket_id, got %r" % (got,)
    client.close()


def test_publish_to_a_list_of_channels(app):
    client = app.socket()
    client.subscribe("red")
    client.subscribe("blue")
    sent = app.publish(["red", "blue"], "both")
    events = sent.get("events")
    assert isinstance(events, list) and [e.get("channel") for e in events] == [
        "red",
        "blue",
    ], "expected one event per channel, got %r" % (sent,)
    assert len({e.get("mid") for e in events}) == 2, (
        "expected two mids, got %r" % events
    )
    got = [client.expect("message"), client.expect("message")]
    assert sorted((g["channel"], g["mid"], g["data"]) for g in got) == sorted(
        (e["channel"], e["mid"], "both") for e in events
    ), "expected %r, got %r" % (events, got)
    client.close()


def test_publish_defaults_to_global_and_message(app):
    client = app.socket()
    client.subscribe("global")
    response = app.request("POST", "events", json={"data": "plain"})
    sent = assert_ok(response, "POST /events with only data")
    assert (sent.get("channel"), sent.get("event")) == (
        "global",
        "message",
    ), "expected channel global and event message, got %r" % (sent,)
    got = client.expect("message", "global")
    assert (
        got.get("data") == "plain" and got.get("mid") == sent["mid"]
    ), "expected the default publish, got %r" % (got,)
    client.close()


def test_publish_object_data_travels_as_a_json_string(app):
    client = app.socket()
    client.subscribe("objects")
    app.publish("objects", {"n": 1, "s": "x"})
    got = client.expect("message", "objects")
    assert isinstance(got.get("data"), str) and json.loads(got["data"]) == {
        "n": 1,
        "s": "x",
    }, "expected the object JSON-encoded in a string, got %r" % (got,)
    client.close()


def test_publish_without_persist_has_no_mid(app):
    client = app.socket()
    client.subscribe("volatile")
    sent = app.publish("volatile", "gone", persist=False)
    assert "mid" not in sent, "persist=false: expected no mid, got %r" % (sent,)
    got = client.expect("message", "volatile")
    assert (
        got.get("data") == "gone" and "mid" not in got
    ), "expected an unpersisted event, got %r" % (got,)
    stored = assert_ok(
        app.request("GET", "events", params={"count": 100}), "GET /events"
    )
    assert stored == [], "persist=false: expected nothing stored, got %r" % (stored,)
    client.close()


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "guard"},
        {"channel": "bad channel", "data": "x"},
        {"channel": "x" * 201, "data": "x"},
        {"channel": 5, "data": "x"},
        {"channel": ["guard", "bad one"], "data": "x"},
        {"channel": "guard", "event": "pusher:subscribe", "data": "x"},
        {"channel": "guard", "event": "pusher_internal:member_added", "data": "x"},
        {"channel": "guard", "event": 7, "data": "x"},
    ],
    ids=[
        "missing-data",
        "space",
        "too-long",
        "int",
        "list-with-bad",
        "pusher-event",
        "pusher-internal-event",
        "int-event",
    ],
)
def test_publish_bad_input_is_400_and_delivers_nothing(app, body):
    client = app.socket()
    client.subscribe("guard")
    response = app.request("POST", "events", json=body)
    assert_error(response, 400, "POST /events %r" % (body,))
    got = published_event(app, client, "guard", "marker")
    assert got.get("data") == "marker", "expected only the marker, got %r" % (got,)
    client.close()


def test_publish_non_json_body_with_json_type_is_400(app):
    client = app.socket()
    client.subscribe("guard")
    for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe{}"):
        try:
            response = app.request(
                "POST", "events", data=raw, headers={"Content-Type": "application/json"}
            )
        except requests.ConnectionError as error:
            raise AssertionError(
                "POST /events body %r: expected a 400 JSON answer, the server closed "
                "the connection without one (%s)" % (raw, error)
            ) from None
        assert_error(response, 400, "POST /events body %r" % (raw,))
    got = published_event(app, client, "guard", "marker")
    assert got.get("data") == "marker", "expected only the marker, got %r" % (got,)
    client.close()


def test_publish_body_over_64k_is_413(app):
    client = app.socket()
    client.subscribe("guard")
    for what, kwargs in (
        ("json", dict(json={"channel": "guard", "data": "x" * (65 * 1024)})),
        ("form", dict(data={"channel": "guard", "data": "x" * (65 * 1024)})),
    ):
        response = app.request("POST", "events", **kwargs)
        assert_error(response, 413, "POST /events %s body of 65 KiB" % what)
    got = published_event(app, client, "guard", "marker")
    assert got.get("data") == "marker", "expected only the marker, got %r" % (got,)
    # just under the limit is accepted and delivered whole
    sent = app.publish("guard", "y" * (60 * 1024))
    got = client.expect("message", "guard")
    assert (
        got.get("mid") == sent["mid"] and len(got.get("data", "")) == 60 * 1024
    ), "expected the 60 KiB event, got %r" % ({k: str(v)[:80] for k, v in got.items()},)
    client.close()


# -- events: reading -------------------------------------------------------------------


def test_events_newest_first_count_honoured_and_isolated(app, other_app):
    mine, theirs = [], []
    for index in range(6):
        mine.append(app.publish("shared", "mine-%d" % index)["mid"])
        theirs.append(other_app.publish("shared", "theirs-%d" % index)["mid"])
    other_app.publish("elsewhere", "theirs-x")

    three = assert_ok(app.request("GET", "events", params={"count": 3}), "count=3")
    assert [e.get("data") for e in three] == [
        "mine-5",
        "mine-4",
        "mine-3",
    ], "GET /events?count=3: expected the 3 newest of this app, got %r" % (three,)
    every = assert_ok(app.request("GET", "events", params={"count": 100}), "count=100")
    assert [e.get("mid") for e in every] == mine[
        ::-1
    ], "GET /events?count=100: expected this app's 6 events newest first, got %r" % (
        [e.get("data") for e in every],
    )
    default = assert_ok(app.request("GET", "events"), "GET /events")
    assert [e.get("mid") for e in default] == mine[
        ::-1
    ], "GET /events: expected this app's events, got %r" % (default,)
    on_channel = assert_ok(
        app.request("GET", "events", params={"channel": "shared", "count": 2}),
        "channel=shared",
    )
    assert [e.get("data") for e in on_channel] == [
        "mine-5",
        "mine-4",
    ], "expected this app's 2 newest on 'shared', got %r" % (on_channel,)
    others = assert_ok(
        other_app.request("GET", "events", params={"count": 100}), "other"
    )
    assert not set(mine) & {
        e.get("mid") for e in others
    }, "the other app reads this app's events: %r" % (others,)
    assert set(theirs) <= {
        e.get("mid") for e in others
    }, "the other app misses its own events: %r" % (others,)
    first = every[0]
    for field in ("channel", "event", "data", "mid", "timestamp"):
        assert field in first, "stored event lacks %r: %r" % (field, first)


@pytest.mark.parametrize("count", ["abc", "1.5x", "[]"])
def test_events_bad_count_is_400(app, count):
    assert_error(
        app.request("GET", "events", params={"count": count}), 400, "count=%r" % count
    )


def test_events_count_is_capped(app):
    for index in range(3):
        app.publish("capped", "e%d" % index)
    listed = assert_ok(app.request("GET", "events", params={"count": 100000}), "count")
    assert [e.get("data") for e in listed] == [
        "e2",
        "e1",
        "e0",
    ], "a huge count: expected the 3 events, got %r" % (listed,)


# -- subscriptions ---------------------------------------------------------------------


def test_subscriptions_create_list_delete(app):
    created = assert_ok(
        app.request(
            "POST", "subscriptions", json={"user_id": "alice", "event": "news"}
        ),
        "POST /subscriptions",
    )
    assert created == {
        "user_id": "alice",
        "event": "news",
    }, "expected the subscription, got %r" % (created,)
    again = assert_ok(
        app.request(
            "POST", "subscriptions", json={"user_id": "alice", "event": "news"}
        ),
        "POST /subscriptions again",
    )
    assert again == created, "idempotent POST: expected %r, got %r" % (created, again)
    app.subscribe_user("alice", "sport")
    app.subscribe_user("bob", "news")

    def listed(**query):
        return assert_ok(
            app.request("GET", "subscriptions", params=query), "GET %r" % query
        )

    everything = listed()
    assert sorted((s["user_id"], s["event"]) for s in everything) == [
        ("alice", "news"),
        ("alice", "sport"),
        ("bob", "news"),
    ], "expected 3 subscriptions (POST is idempotent), got %r" % (everything,)
    alice = listed(user_id="alice")
    assert sorted(s["event"] for s in alice) == [
        "news",
        "sport",
    ], "user_id=alice: expected news and sport, got %r" % (alice,)
    news = listed(event="news")
    assert sorted(s["user_id"] for s in news) == [
        "alice",
        "bob",
    ], "event=news: expected alice and bob, got %r" % (news,)
    both = listed(user_id="bob", event="news")
    assert both == [
        {"user_id": "bob", "event": "news"}
    ], "expected bob/news, got %r" % (both,)

    deleted = assert_ok(app.request("DELETE", "subscriptions/alice/news"), "DELETE")
    assert (
        deleted.get("user_id") == "alice" and deleted.get("event") == "news"
    ), "DELETE: expected alice/news, got %r" % (deleted,)
    left = listed(user_id="alice")
    assert [s["event"] for s in left] == ["sport"], "after DELETE: got %r" % (left,)
    assert_error(
        app.request("DELETE", "subscriptions/alice/news"), 404, "DELETE it again"
    )


def test_subscription_by_form_fields(app):
    created = assert_ok(
        app.request("POST", "subscriptions", data={"user_id": "carol", "event": "x"}),
        "POST /subscriptions form",
    )
    assert created == {"user_id": "carol", "event": "x"}, "got %r" % (created,)


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "alice"},
        {"event": "news"},
        {"user_id": "alice", "event": "bad channel"},
        {"user_id": "bad user", "event": "news"},
        {"user_id": "alice", "event": "x" * 201},
        {"user_id": ["a"], "event": "news"},
    ],
    ids=["no-event", "no-user", "bad-event", "bad-user", "long-event", "list-user"],
)
def test_subscription_bad_input_is_400(app, body):
    assert_error(app.request("POST", "subscriptions", json=body), 400, "POST %r" % body)
    stored = assert_ok(app.request("GET", "subscriptions"), "GET /subscriptions")
    assert stored == [], "a refused POST stored %r" % (stored,)


def test_legacy_subscribe_and_unsubscribe_routes(app, other_app):
    path = "apps/%s/" % app.ident
    created = assert_ok(
        app.request("POST", path + "subscribe", data={"user_id": "dave", "event": "a"}),
        "POST /apps/<id>/subscribe",
    )
    assert created == {"user_id": "dave", "event": "a"}, "got %r" % (created,)
    assert_ok(
        app.request("POST", path + "subscribe", json={"user_id": "dave", "event": "b"}),
        "POST /apps/<id>/subscribe json",
    )
    found = assert_ok(
        app.request("GET", "subscriptions", params={"user_id": "dave"}), ""
    )
    assert sorted(s["event"] for s in found) == ["a", "b"], "got %r" % (found,)

    assert_ok(
        app.request(
            "POST", path + "unsubscribe", data={"user_id": "dave", "event": "a"}
        ),
        "POST /apps/<id>/unsubscribe",
    )
    found = assert_ok(
        app.request("GET", "subscriptions", params={"user_id": "dave"}), ""
    )
    assert [s["event"] for s in found] == ["b"], "after unsubscribe: got %r" % (found,)
    assert_error(
        app.request(
            "POST", path + "unsubscribe", data={"user_id": "dave", "event": "a"}
        ),
        404,
        "unsubscribe twice",
    )
    # another app's routes are closed to this session, and nothing lands there
    other = "apps/%s/" % other_app.ident
    for route in ("subscribe", "unsubscribe"):
        assert_error(
            app.request("POST", other + route, data={"user_id": "dave", "event": "b"}),
            403,
            "POST /apps/<other>/%s" % route,
        )
    theirs = assert_ok(other_app.request("GET", "subscriptions"), "other's list")
    assert theirs == [], "a refused call changed the other app: %r" % (theirs,)


def test_subscriptions_are_isolated_between_apps(app, other_app):
    other_app.subscribe_user("erin", "private-stuff")
    mine = assert_ok(
        app.request("GET", "subscriptions", params={"user_id": "erin"}), ""
    )
    assert mine == [], "this app sees another app's subscription: %r" % (mine,)
    everything = assert_ok(app.request("GET", "subscriptions"), "GET /subscriptions")
    assert everything == [], "this app sees another app's subscriptions: %r" % (
        everything,
    )
    assert_error(
        app.request("DELETE", "subscriptions/erin/private-stuff"),
        404,
        "DELETE another app's subscription",
    )
    theirs = assert_ok(other_app.request("GET", "subscriptions"), "other's list")
    assert theirs == [
        {"user_id": "erin", "event": "private-stuff"}
    ], "the other app lost its subscription: %r" % (theirs,)


# -- sockets ---------------------------------------------------------------------------


def test_sockets_lists_the_apps_connected_clients(app, other_app):
    client = app.socket()
    client.subscribe("lobby")
    client.subscribe("room-1")
    idle = app.socket()
    stranger = other_app.socket()
    stranger.subscribe("lobby")
    try:
        listed = assert_ok(app.request("GET", "sockets"), "GET /sockets")
        by_id = {s.get("socket_id"): s for s in listed}
        assert set(by_id) == {
            client.socket_id,
            idle.socket_id,
        }, "GET /sockets: expected %r, got %r" % (
            {client.socket_id, idle.socket_id},
            listed,
        )
        assert by_id[client.socket_id].get("channels") == [
            "lobby",
            "room-1",
        ], "expected channels lobby and room-1, got %r" % (by_id[client.socket_id],)
        assert (
            by_id[idle.socket_id].get("channels") == []
        ), "expected an idle socket without channels, got %r" % (by_id[idle.socket_id],)
        shown = assert_ok(
            app.request("GET", "sockets/" + client.socket_id), "GET /sockets/<id>"
        )
        assert shown.get("socket_id") == client.socket_id and shown.get("channels") == [
            "lobby",
            "room-1",
        ], "GET /sockets/<id>: got %r" % (shown,)
        assert_error(
            app.request("GET", "sockets/" + stranger.socket_id),
            404,
            "GET another app's socket",
        )
        assert_error(app.request("GET", "sockets/1.1"), 404, "GET an unknown socket")
        theirs = assert_ok(other_app.request("GET", "sockets"), "other GET /sockets")
        assert [s.get("socket_id") for s in theirs] == [
            stranger.socket_id
        ], "the other app: expected only its socket, got %r" % (theirs,)
    finally:
        for handle in (client, idle, stranger):
            handle.close()


def test_socket_leaves_the_listing_after_unsubscribe(app):
    client = app.socket()
    client.subscribe("a")
    client.subscribe("b")
    client.send("pusher:unsubscribe", {"channel": "a"})
    client.expect("pusher_internal:unsubscription_succeeded", "a")
    shown = assert_ok(app.request("GET", "sockets/" + client.socket_id), "GET socket")
    assert shown.get("channels") == [
        "b"
    ], "after unsubscribe: expected ['b'], got %r" % (shown,)
    client.close()


# -- health ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["health", "health/live", "health/ready"])
def test_health_answers_without_a_session(server, path):
    body = assert_ok(call(server, "GET", path), "GET /" + path)
    assert body.get("status") == "ok", "GET /%s: expected status ok, got %r" % (
        path,
        body,
    )


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [("GET", "no-such-route"), ("DELETE", "apps"), ("GET", "events/x/y/z")],
)
def test_unknown_routes_answer_json(app, method, path):
    assert_error(app.request(method, path), (404, 405), "%s /%s" % (method, path))


# -- registration and the admin back-office --------------------------------------------


def admin_signin(server, password: str) -> tuple[requests.Session, requests.Response]:
    """Signs in to appier_extras' admin (`POST /admin/signin`) as root."""
    browser = requests.Session()
    response = browser.post(
        server.api + "admin/signin",
        data={"username": "root", "password": password},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    return browser, response


def signed_in(response: requests.Response) -> bool:
    """Whether a sign-in answer is the success redirect into the back-office."""
    location = response.headers.get("Location", "")
    return (
        response.status_code in (302, 303)
        and re.search(r"/admin/?$", location.split("?")[0]) is not None
    )


def test_registration_admin_requires_an_admin_login(start_server):
    password = secrets.token_urlsafe(16)
    private = start_server(
        env={"PUSHI_REGISTRATION": "admin", "ADMIN_PASSWORD": password}
    )
    assert_error(
        call(private, "POST", "apps", json={"name": "anon"}),
        403,
        "POST /apps anonymous",
    )
    browser, answer = admin_signin(private, "wrong-" + password)
    assert not signed_in(answer), "a wrong admin password signed in: %r" % (
        answer.headers,
    )
    refused = browser.post(private.api + "apps", json={"name": "x"}, timeout=TIMEOUT)
    assert_error(refused, 403, "POST /apps after a failed admin sign-in")

    browser, answer = admin_signin(private, password)
    assert signed_in(
        answer
    ), "admin sign-in: expected a redirect to /admin, got %d %r" % (
        answer.status_code,
        answer.headers.get("Location"),
    )
    created = assert_ok(
        browser.post(private.api + "apps", json={"name": "by-admin"}, timeout=TIMEOUT),
        "POST /apps as admin",
    )
    assert created.get("name") == "by-admin" and HEX64.match(
        created.get("key") or ""
    ), "expected the created app, got %r" % (created,)
    # an app's own session is no admin login
    app_session = requests.Session()
    token = assert_ok(
        app_session.get(
            private.api + "login",
            params=dict(
                app_id=created["ident"],
                app_key=created["key"],
                app_secret=created["secret"],
            ),
            timeout=TIMEOUT,
        ),
        "app login",
    )["token"]
    assert_error(
        app_session.post(
            private.api + "apps",
            json={"name": "y"},
            params={"sid": token},
            timeout=TIMEOUT,
        ),
        403,
        "POST /apps with an app session",
    )


def test_admin_answers(server):
    response = call(server, "GET", "admin")
    if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers.get("Location", "")
        assert (
            "signin" in location or "login" in location
        ), "GET /admin: expected a redirect to a sign-in page, got %r" % (location,)
        response = requests.get(
            requests.compat.urljoin(server.api, location), timeout=TIMEOUT
        )
    assert response.status_code == 200, (
        "GET /admin: expected 200, or a redirect to a sign-in page answering 200; "
        "got %d %r" % (response.status_code, response.text[:300])
    )
    assert "Traceback" not in response.text, "the admin page shows a trace: %r" % (
        response.text[:500],
    )


def test_admin_refuses_root_root(server):
    browser, answer = admin_signin(server, "root")
    assert not signed_in(
        answer
    ), "root/root signed in to /admin/signin (fixed default password): %d %r" % (
        answer.status_code,
        answer.headers.get("Location"),
    )
    api = call(
        server, "POST", "api/admin/login", data={"username": "root", "password": "root"}
    )
    body = assert_error(api, (401, 403), "POST /api/admin/login as root/root")
    assert "sid" not in body, "root/root got a session: %r" % (body,)


def wire_server_keeps_booleans() -> bool:
    """Whether the MongoDB under test (if any) keeps booleans written by `$set`.

    nx-27017, the wire-protocol server CI uses, stores them as 0 and 1; Appier then
    reads the admin account's `False` flags back as true and asks for a second
    factor. Real MongoDB and the embedded store keep booleans.
    """
    url = mongo_url("pushi_probe_" + secrets.token_hex(4))
    if not url:
        return True
    import pymongo

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        probe = client.get_default_database()["probe"]
        probe.insert_one({"_id": "flag", "value": True})
        probe.update_one({"_id": "flag"}, {"$set": {"value": False}})
        return probe.find_one({"_id": "flag"})["value"] is False
    finally:
        client.drop_database(client.get_default_database())
        client.close()


needs_boolean_fidelity = pytest.mark.skipif(
    not wire_server_keeps_booleans(),
    reason="the MongoDB wire server under test turns $set booleans into integers "
    "(an nx-27017 defect), which sends Appier's admin sign-in to its 2FA page",
)


@needs_boolean_fidelity
def test_admin_password_comes_from_the_environment(start_server):
    password = secrets.token_urlsafe(16)
    private = start_server(env={"ADMIN_PASSWORD": password})
    api = call(
        private,
        "POST",
        "api/admin/login",
        data={"username": "root", "password": password},
    )
    body = assert_ok(api, "POST /api/admin/login with ADMIN_PASSWORD")
    assert body.get("username") == "root" and body.get(
        "sid"
    ), "expected a root session, got %r" % (body,)
    browser, answer = admin_signin(private, password)
    assert signed_in(
        answer
    ), "admin sign-in: expected a redirect to /admin, got %d %r" % (
        answer.status_code,
        answer.headers.get("Location"),
    )
    _, wrong = admin_signin(private, "root")
    assert not signed_in(wrong), "root/root signed in despite ADMIN_PASSWORD"


@needs_boolean_fidelity
def test_admin_can_sign_in_again(start_server):
    password = secrets.token_urlsafe(16)
    private = start_server(env={"ADMIN_PASSWORD": password})
    for attempt in range(1, 3):
        browser, answer = admin_signin(private, password)
        assert signed_in(
            answer
        ), "admin sign-in #%d: expected a redirect to /admin, got %d %r" % (
            attempt,
            answer.status_code,
            answer.headers.get("Location"),
        )
        browser.get(
            private.api + "admin/signout", allow_redirects=False, timeout=TIMEOUT
        )


def test_admin_signin_failure_is_no_server_error(server):
    _, answer = admin_signin(server, secrets.token_urlsafe(12))
    assert not signed_in(answer), "a random password signed in as root"
    assert answer.status_code < 500 and "Traceback" not in answer.text, (
        "POST /admin/signin with a wrong password: expected the sign-in page again "
        "(or a 4xx), got %d %r" % (answer.status_code, answer.text[:300])
    )
