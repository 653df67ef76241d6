"""The Python proxy (`pushi.Pushi` / `pushi.API`) against the real server, over HTTP.

The calls the published `pushi` 0.6.10 client also has return what it returns: the
server's JSON as it is (pushi-contract.md §2), `update_app` the bytes of the server's
text answer. The proxy's additions follow the same rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import appier
import pytest
import requests
from conftest import AppClient, assert_nothing, free_port, unique

import pushi

SUCCESS = {"result": "success"}


def proxy_for(app: AppClient, **kwargs) -> pushi.Pushi:
    """A proxy holding an app's credentials, pointed at its server."""
    return pushi.Pushi(
        app_id=app.ident,
        app_key=app.key,
        app_secret=app.secret,
        base_url=app.server.api,
        **kwargs,
    )


def count_logins(proxy: pushi.Pushi) -> list:
    """Wraps the instance's `login`; the returned list grows by one per login."""
    calls: list = []
    original = proxy.login

    def counting() -> str:
        calls.append(1)
        return original()

    proxy.login = counting
    return calls


def without_pushi_env(monkeypatch) -> None:
    for name in ("PUSHI_ID", "PUSHI_KEY", "PUSHI_SECRET", "PUSHI_URL"):
        monkeypatch.delenv(name, raising=False)


def stored(proxy: pushi.Pushi, count: int, what: str, limit: int = 100) -> list:
    """The app's stored events, at least `count` of them.

    A publish is queued for storage before it is answered, and a read runs on
    the store worker after every write queued before it: one read sees it.
    """
    events = proxy.list_events(count=limit)["events"]
    assert len(events) >= count, "%s: expected %d stored events, the store shows %r" % (
        what,
        count,
        events,
    )
    return events


def payloads(events: list) -> list:
    """The `data` published with each stored event, in the listed order."""
    return [event["data"]["data"] for event in events]


def pairs(found: dict) -> list:
    """(user_id, event) of listed subscriptions, sorted."""
    return sorted((s["user_id"], s["event"]) for s in found["subscriptions"])


# -- quick start, configuration ----------------------------------------------------


def test_quick_start_reaches_subscriber(server, app, connect):
    client = connect(app)
    client.subscribe("global")
    proxy = pushi.Pushi(
        app_id=app.ident, app_key=app.key, app_secret=app.secret, base_url=server.api
    )
    result = proxy.trigger_event(channel="global", data="hello world", event="message")
    assert result == SUCCESS
    got = client.expect("message", "global", data="hello world")
    assert uuid.UUID(got["mid"]).version == 4


def test_api_is_the_same_proxy():
    assert pushi.API is pushi.Pushi
    assert issubclass(pushi.PushiError, Exception)


def test_credentials_and_url_from_environment(app, monkeypatch, connect):
    monkeypatch.setenv("PUSHI_ID", app.ident)
    monkeypatch.setenv("PUSHI_KEY", app.key)
    monkeypatch.setenv("PUSHI_SECRET", app.secret)
    monkeypatch.setenv("PUSHI_URL", app.server.api.rstrip("/"))
    proxy = pushi.API()
    assert proxy.base_url == app.server.api
    client = connect(app)
    client.subscribe("global")
    proxy.trigger_event("global", "from the environment")
    client.expect("message", "global", data="from the environment")


def test_default_and_normalised_base_url(monkeypatch):
    without_pushi_env(monkeypatch)
    assert pushi.Pushi().base_url == "http://127.0.0.1:8080/"
    assert pushi.Pushi(base_url="http://h:1/x").base_url == "http://h:1/x/"
    assert pushi.Pushi(base_url="http://h:1/x/").base_url == "http://h:1/x/"


def test_import_does_not_load_the_server():
    code = (
        "import sys, pushi, pushi.api; pushi.Pushi; pushi.PushiError; "
        "print(sorted(m for m in ('netius', 'wsproto', 'neosqlite', "
        "'appier_extras', 'pushi.base', 'pushi.net', 'pushi.app', 'pushi.store') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- events --------------------------------------------------------------------------


def test_publish_on_a_list_of_channels(app, connect):
    alpha, beta = connect(app), connect(app)
    alpha.subscribe("alpha")
    beta.subscribe("beta")
    result = proxy_for(app).trigger_event(["alpha", "beta"], "to both", event="news")
    assert result == SUCCESS
    alpha.expect("news", "alpha", data="to both")
    beta.expect("news", "beta", data="to both")


def test_a_tuple_of_channels_is_a_list(app, connect):
    both = connect(app)
    both.subscribe("alpha")
    both.subscribe("beta")
    assert proxy_for(app).trigger_event(("beta", "alpha"), "once") == SUCCESS
    assert both.expect("message", data="once")["channel"] == "beta"
    assert_nothing(both, "a second copy of one publish")


def test_the_whole_body_is_delivered(app, connect):
    client = connect(app)
    client.subscribe("global")
    proxy_for(app).trigger_event("global", {"n": 1}, event="news", author="ann")
    got = client.expect("news", "global", author="ann")
    assert got["data"] == '{"n": 1}'
    assert {k: v for k, v in got.items() if k not in ("mid", "timestamp")} == {
        "data": '{"n": 1}',
        "event": "news",
        "channel": "global",
        "persist": True,
        "author": "ann",
    }


def test_persist_false_has_no_mid_and_is_not_stored(app, connect):
    client = connect(app)
    client.subscribe("global")
    proxy = proxy_for(app)
    assert proxy.trigger_event("global", "transient", persist=False) == SUCCESS
    got = client.expect("message", "global", data="transient")
    assert "mid" not in got and got["persist"] is False
    assert proxy.trigger_event("global", "stored") == SUCCESS
    assert client.expect("message", "global", data="stored")["mid"]
    assert payloads(stored(proxy, 1, "the persisted event")) == ["stored"]


def test_list_events_newest_first_and_counted(app):
    proxy = proxy_for(app)
    for i in range(3):
        proxy.trigger_event("global", "event %d" % i)
    events = stored(proxy, 3, "three events")
    assert payloads(events) == ["event 2", "event 1", "event 0"]
    assert payloads(proxy.list_events(count=2)["events"]) == ["event 2", "event 1"]
    assert set(proxy.list_events()) == {"events"}
    record = events[0]
    assert record["channel"] == "global" and record["owner_id"] is None
    assert record["instance"] == app.ident


def test_list_events_of_a_channel_and_skipped(app):
    proxy = proxy_for(app)
    for channel in ("a", "b", "a", "b", "a"):
        proxy.trigger_event(channel, "on " + channel)
    stored(proxy, 5, "five events")
    on_a = proxy.list_events(channel="a")["events"]
    assert [e["channel"] for e in on_a] == ["a", "a", "a"]
    assert proxy.list_events(channel="a", skip=1)["events"] == on_a[1:]
    assert proxy.list_events(count=2, skip=1)["events"] == (
        proxy.list_events()["events"][1:3]
    )


def test_a_bad_publish_is_a_pushi_error(app):
    proxy = proxy_for(app)
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("global", "")
    assert caught.value.status == 400
    assert caught.value.message == "No data set for event"


# -- subscriptions -----------------------------------------------------------------


def test_subscribe_and_unsubscribe_reach_the_personal_channel(app, connect):
    client = connect(app)
    client.subscribe("personal-ann", app.auth(client.socket_id, "personal-ann"))
    proxy = proxy_for(app)

    subscription = proxy.subscribe("ann", "news")
    assert (subscription["user_id"], subscription["event"]) == ("ann", "news")
    proxy.trigger_event("news", "while subscribed")
    client.expect("message", "news", data="while subscribed")

    assert proxy.unsubscribe("ann", "news") == subscription
    proxy.trigger_event("news", "after unsubscribe")
    assert_nothing(client, "an event of a deleted subscription")


def test_create_and_delete_subscription_records(app):
    proxy = proxy_for(app)
    created = proxy.create_subscription("bob", "sport")
    assert (created["user_id"], created["event"]) == ("bob", "sport")
    assert created["instance"] == app.ident
    assert {"_id", "id", "created", "modified"} <= set(created)
    assert proxy.create_subscription("bob", "sport") == created  # the existing one
    assert proxy.list_subscriptions(user_id="bob") == {"subscriptions": [created]}
    assert proxy.delete_subscription("bob", "sport") == created
    assert proxy.list_subscriptions(user_id="bob") == {"subscriptions": []}


def test_list_subscriptions_filters(app):
    proxy = proxy_for(app)
    proxy.subscribe("ann", "a")
    proxy.subscribe("ann", "b")
    proxy.subscribe("bob", "a")
    assert pairs(proxy.list_subscriptions()) == [
        ("ann", "a"),
        ("ann", "b"),
        ("bob", "a"),
    ]
    assert pairs(proxy.list_subscriptions(user_id="ann")) == [
        ("ann", "a"),
        ("ann", "b"),
    ]
    assert pairs(proxy.list_subscriptions(event="a")) == [("ann", "a"), ("bob", "a")]
    assert pairs(proxy.list_subscriptions(user_id="bob", event="a")) == [("bob", "a")]


def test_user_ids_with_reserved_characters(app):
    proxy = proxy_for(app)
    created = proxy.subscribe("a+b@x.com", "news")
    assert created["user_id"] == "a+b@x.com"
    assert proxy.unsubscribe("a+b@x.com", "news") == created
    assert proxy.list_subscriptions() == {"subscriptions": []}


def test_channels_outside_the_delete_route_cannot_be_unsubscribed(app):
    # the route takes `[.\w-]+` only (contract §2): `:` `&` `=` `,` `;` are refused
    proxy = proxy_for(app)
    created = proxy.subscribe("ann", "private-room:a&b")
    with pytest.raises(pushi.PushiError) as caught:
        proxy.unsubscribe("ann", "private-room:a&b")
    assert caught.value.status == 404
    assert proxy.list_subscriptions() == {"subscriptions": [created]}


def test_missing_subscription_is_success_unless_forced(app):
    proxy = proxy_for(app)
    assert proxy.unsubscribe("nobody", "nothing") == SUCCESS
    with pytest.raises(pushi.PushiError) as caught:
        proxy.delete_subscription("nobody", "nothing", force=True)
    assert caught.value.status == 404
    created = proxy.subscribe("ann", "news")
    assert proxy.delete_subscription("ann", "news", force=True) == created


# -- live sockets ----------------------------------------------------------------------


def test_sockets_and_their_channels(app, other_app, connect):
    client = connect(app)
    client.subscribe("news")
    client.subscribe_signed("private-room")
    connect(other_app).subscribe("elsewhere")
    proxy = proxy_for(app)
    assert proxy.get_socket(client.socket_id) == {"channels": ["news", "private-room"]}
    assert proxy.get_socket(str(uuid.uuid4())) == {"channels": []}
    assert proxy.list_sockets() == {
        "sockets": [
            {"socket_id": client.socket_id, "channel": ["news", "private-room"]}
        ]
    }


# -- channel auth --------------------------------------------------------------------


def test_authenticate_private_channel_is_accepted(app, connect):
    client = connect(app)
    proxy = proxy_for(app)
    auth = proxy.authenticate("private-room", client.socket_id)
    assert isinstance(auth, str) and auth.startswith(app.key + ":")
    assert auth == app.auth(client.socket_id, "private-room")
    assert client.subscribe("private-room", auth) == {
        "name": "private-room",
        "members": {},
        "alias": [],
        "events": [],
    }
    assert proxy.auth_response("private-room", client.socket_id) == {"auth": auth}

    # the server does check: a signature for another socket is refused
    other = connect(app)
    other.send("pusher:subscribe", {"channel": "private-room", "auth": auth})
    assert other.expect("pusher:error")["channel"] == "private-room"

    proxy.trigger_event("private-room", "secret")
    client.expect("message", "private-room", data="secret")


def test_authenticate_presence_channel_with_user_info(app, connect):
    proxy = proxy_for(app)
    ann, bob = connect(app), connect(app)
    ann_data = {"user_id": "ann", "user_info": {"name": "Ann"}}
    signed = proxy.authenticate("presence-room", ann.socket_id, ann_data)
    assert set(signed) == {"auth", "channel_data"}
    assert json.loads(signed["channel_data"]) == ann_data
    joined = ann.subscribe("presence-room", signed["auth"], signed["channel_data"])
    assert joined["members"] == {"ann": ann_data}

    # a string is signed and returned exactly as given
    bob_data = '{"user_id": "bob", "user_info": {"name": "Bob"}}'
    response = proxy.auth_response("presence-room", bob.socket_id, bob_data)
    assert response["channel_data"] == bob_data
    joined = bob.subscribe("presence-room", response["auth"], response["channel_data"])
    assert set(joined["members"]) == {"ann", "bob"}
    added = ann.expect("pusher:member_added", "presence-room")
    assert json.loads(added["member"])["user_info"] == {"name": "Bob"}


# -- apps ----------------------------------------------------------------------------


def test_create_app_then_publish_with_its_credentials(server, monkeypatch, connect):
    without_pushi_env(monkeypatch)
    name = unique("made by the proxy")
    created = pushi.Pushi(base_url=server.api).create_app(name)
    assert created["name"] == name
    assert {"ident", "key", "secret"} <= set(created)
    assert created["instance"] == created["ident"]
    client = connect(server.ws_url(created["key"]))
    client.subscribe("global")
    proxy = pushi.Pushi(
        app_id=created["ident"],
        app_key=created["key"],
        app_secret=created["secret"],
        base_url=server.api,
    )
    proxy.trigger_event("global", "from a new app")
    client.expect("message", "global", data="from a new app")


def test_create_app_with_a_taken_name_is_a_400(server, app):
    with pytest.raises(pushi.PushiError) as caught:
        pushi.Pushi(base_url=server.api).create_app(app.info["name"])
    assert caught.value.status == 400
    assert caught.value.read_json()["errors"] == {"name": ["value is duplicate"]}


def test_update_app_renames(app):
    proxy = proxy_for(app)
    renamed, again = unique("renamed"), unique("again")
    assert proxy.update_app(name=renamed) == renamed.encode()
    listed = app.request("GET", "apps")
    assert listed.status_code == 200, listed.text
    assert [a["name"] for a in listed.json()["apps"]] == [renamed]
    assert proxy.get_app()["name"] == renamed
    assert proxy.get_app()["secret"] == app.secret
    assert proxy.update_app(app.ident, name=again) == again.encode()
    assert [a["name"] for a in proxy.list_apps()["apps"]] == [again]


# -- session -------------------------------------------------------------------------


def test_session_is_reused(app):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.trigger_event("global", "one")
    token = proxy.token
    assert proxy.get_token() == token
    proxy.trigger_event(["a", "b"], "two")
    proxy.list_events()
    proxy.subscribe("ann", "news")
    proxy.list_subscriptions()
    proxy.unsubscribe("ann", "news")
    proxy.update_app(name=unique("same session"))
    proxy.list_sockets()
    assert len(logins) == 1
    assert proxy.token == token


def test_get_token_logs_in_once(app):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    token = proxy.get_token()
    assert proxy.get_token() == token == proxy.token
    assert len(logins) == 1


def test_concurrent_first_calls_log_in_once(app):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    barrier = threading.Barrier(8)
    errors: list = []

    def publish(n: int) -> None:
        barrier.wait()
        try:
            proxy.trigger_event("global", "thread %d" % n)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(logins) == 1
    assert len(stored(proxy, 8, "eight events")) == 8


def test_logout_ends_the_session_and_next_call_logs_in(app, connect):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.list_events()
    old = proxy.token
    assert proxy.logout() is None
    assert proxy.token is None
    stale = requests.get(app.server.api + "events", params={"sid": old}, timeout=10)
    assert stale.status_code == 403, stale.text
    assert proxy.logout() is None  # no session: nothing to do
    client = connect(app)
    client.subscribe("global")
    proxy.trigger_event("global", "after logout")
    client.expect("message", "global", data="after logout")
    assert len(logins) == 2


def test_invalid_session_logs_in_again_once(app, connect):
    proxy = proxy_for(app)
    proxy.list_events()
    logins = count_logins(proxy)
    proxy.token = "0" * 64  # a session the server does not know
    client = connect(app)
    client.subscribe("global")
    proxy.trigger_event("global", "after a bad session")
    client.expect("message", "global", data="after a bad session")
    assert len(logins) == 1
    assert proxy.token != "0" * 64


def test_failed_relogin_is_a_pushi_error(app):
    proxy = proxy_for(app)
    proxy.list_events()
    proxy.token = "0" * 64
    proxy.app_secret = "1" * 64
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("global", "never sent")
    assert caught.value.status == 404
    assert caught.value.message == "App not found"
    assert app.request("GET", "events").json() == {"events": []}


def test_another_apps_ident_is_a_404_without_relogin(app, other_app):
    proxy = proxy_for(app)
    proxy.list_events()
    logins = count_logins(proxy)
    with pytest.raises(pushi.PushiError) as caught:
        proxy.update_app(other_app.ident, name="not mine")
    assert caught.value.status == 404
    assert caught.value.message == "App not found"
    assert len(logins) == 0
    shown = other_app.request("GET", "apps").json()["apps"][0]
    assert shown["name"] == other_app.info["name"]


def test_server_restart_expires_session_and_proxy_logs_in(start_server, connect):
    server = start_server()
    app = AppClient(server)
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.trigger_event("global", "before restart")
    stored(proxy, 1, "the event before the restart")
    assert len(logins) == 1
    server.restart()
    client = connect(app)
    client.subscribe("global")
    proxy.trigger_event("global", "after restart")
    client.expect("message", "global", data="after restart")
    assert len(logins) == 2
    assert payloads(stored(proxy, 2, "both events")) == [
        "after restart",
        "before restart",
    ]


# -- errors --------------------------------------------------------------------------


def test_wrong_secret_is_a_404(app):
    proxy = pushi.Pushi(
        app_id=app.ident, app_key=app.key, app_secret="0" * 64, base_url=app.server.api
    )
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("global", "never sent")
    error = caught.value
    assert error.status == 404
    assert error.code == 404
    assert error.message == "App not found"
    assert proxy.token is None
    # still what 0.6.10 callers caught
    assert isinstance(error, appier.exceptions.HTTPError)
    body = error.read_json()
    assert (body["result"], body["name"], body["message"]) == (
        "error",
        "NotFoundError",
        "App not found",
    )


def test_invalid_channel_is_a_400_with_the_server_message(app):
    proxy = proxy_for(app)
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("not a valid channel!", "never sent")
    assert caught.value.status == 400
    assert caught.value.code == 400
    assert caught.value.message == caught.value.read_json()["message"]


def test_unreachable_server_is_a_pushi_error():
    proxy = pushi.Pushi(
        app_id="a",
        app_key="k",
        app_secret="s",
        base_url="http://127.0.0.1:%d/" % free_port(),
    )
    with pytest.raises(pushi.PushiError) as caught:
        proxy.list_events()
    assert caught.value.status is None


def test_missing_credentials_is_a_pushi_error(server, monkeypatch):
    without_pushi_env(monkeypatch)
    with pytest.raises(pushi.PushiError):
        pushi.Pushi(base_url=server.api).trigger_event("global", "never sent")
    with pytest.raises(pushi.PushiError):
        pushi.Pushi(base_url=server.api).authenticate("private-x", "1.2")
