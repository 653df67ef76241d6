"""The Python proxy (`pushi.Pushi` / `pushi.API`) against the real server, over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import appier
import pytest
import requests
from conftest import AppClient, Client, free_port

import pushi


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


# -- quick start, configuration ----------------------------------------------------


def test_quick_start_reaches_subscriber(server, app):
    client = app.socket()
    client.subscribe("global")
    proxy = pushi.Pushi(
        app_id=app.ident, app_key=app.key, app_secret=app.secret, base_url=server.api
    )
    result = proxy.trigger_event(channel="global", data="hello world", event="message")
    got = client.expect("message", "global", data="hello world")
    assert got["mid"] == result["mid"]


def test_api_is_the_same_proxy():
    assert pushi.API is pushi.Pushi
    assert issubclass(pushi.PushiError, Exception)


def test_credentials_and_url_from_environment(app, monkeypatch):
    monkeypatch.setenv("PUSHI_ID", app.ident)
    monkeypatch.setenv("PUSHI_KEY", app.key)
    monkeypatch.setenv("PUSHI_SECRET", app.secret)
    monkeypatch.setenv("PUSHI_URL", app.server.api.rstrip("/"))
    proxy = pushi.API()
    assert proxy.base_url == app.server.api
    client = app.socket()
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
        "print(sorted(m for m in ('netius', 'wsproto', 'neosqlite', 'pushi.net', "
        "'pushi.app', 'pushi.base.state') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- events --------------------------------------------------------------------------


def test_publish_on_a_list_of_channels(app):
    alpha, beta = app.socket(), app.socket()
    alpha.subscribe("alpha")
    beta.subscribe("beta")
    result = proxy_for(app).trigger_event(["alpha", "beta"], "to both", event="news")
    assert sorted(e["channel"] for e in result["events"]) == ["alpha", "beta"]
    alpha.expect("news", "alpha", data="to both")
    beta.expect("news", "beta", data="to both")


def test_extra_fields_are_delivered(app):
    client = app.socket()
    client.subscribe("global")
    proxy_for(app).trigger_event("global", {"n": 1}, event="news", author="ann")
    got = client.expect("news", "global", author="ann")
    assert json.loads(got["data"]) == {"n": 1}


def test_persist_false_has_no_mid_and_is_not_stored(app):
    client = app.socket()
    client.subscribe("global")
    proxy = proxy_for(app)
    transient = proxy.trigger_event("global", "transient", persist=False)
    assert "mid" not in transient
    got = client.expect("message", "global", data="transient")
    assert "mid" not in got
    stored = proxy.trigger_event("global", "stored")
    assert stored["mid"]
    assert client.expect("message", "global", data="stored")["mid"] == stored["mid"]
    assert [e["data"] for e in proxy.list_events(count=10)] == ["stored"]


def test_list_events_newest_first_and_counted(app):
    proxy = proxy_for(app)
    mids = [proxy.trigger_event("global", "event %d" % i)["mid"] for i in range(3)]
    events = proxy.list_events(count=2)
    assert [e["mid"] for e in events] == [mids[2], mids[1]]
    assert len(proxy.list_events()) == 3


# -- subscriptions -----------------------------------------------------------------


def test_subscribe_and_unsubscribe_reach_the_personal_channel(app):
    client = app.socket()
    client.subscribe("personal-ann", app.auth(client.socket_id, "personal-ann"))
    client.subscribe("control")
    proxy = proxy_for(app)

    assert proxy.subscribe("ann", "news") == {"user_id": "ann", "event": "news"}
    proxy.trigger_event("news", "while subscribed")
    client.expect("message", "news", data="while subscribed")

    proxy.unsubscribe("ann", "news")
    cut = len(client.seen)
    proxy.trigger_event("news", "after unsubscribe")
    proxy.trigger_event("control", "marker")
    client.expect("message", "control", data="marker")
    late = [m for m in client.seen[cut:] if m.get("channel") == "news"]
    assert late == [], "unsubscribed socket still got %r" % late


def test_create_and_delete_subscription_names(app):
    proxy = proxy_for(app)
    assert proxy.create_subscription("bob", "sport") == {
        "user_id": "bob",
        "event": "sport",
    }
    assert proxy.create_subscription("bob", "sport")["event"] == "sport"  # idempotent
    assert proxy.list_subscriptions(user_id="bob") == [
        {"user_id": "bob", "event": "sport"}
    ]
    deleted = proxy.delete_subscription("bob", "sport")
    assert deleted["deleted"] is True
    assert proxy.list_subscriptions(user_id="bob") == []


def pairs(found: list) -> list:
    """(user_id, event) of subscriptions, sorted."""
    return sorted((s["user_id"], s["event"]) for s in found)


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


def test_unsubscribe_channel_with_reserved_characters(app):
    # `&`, `=`, `,`, `;` are valid in channel names (peer channels use `&`)
    proxy = proxy_for(app)
    proxy.subscribe("ann", "private-room:ann&bob=1,2;3")
    assert proxy.unsubscribe("ann", "private-room:ann&bob=1,2;3")["deleted"] is True
    assert proxy.list_subscriptions(user_id="ann") == []


# -- channel auth --------------------------------------------------------------------


def test_authenticate_private_channel_is_accepted(app):
    client = app.socket()
    proxy = proxy_for(app)
    auth = proxy.authenticate("private-room", client.socket_id)
    assert isinstance(auth, str) and auth.startswith(app.key + ":")
    assert client.subscribe("private-room", auth)["name"] == "private-room"
    assert proxy.auth_response("private-room", client.socket_id) == {"auth": auth}

    # the server does check: a signature for another socket is refused
    other = app.socket()
    other.send("pusher:subscribe", {"channel": "private-room", "auth": auth})
    other.expect("pusher:error")

    proxy.trigger_event("private-room", "secret")
    client.expect("message", "private-room", data="secret")


def test_authenticate_presence_channel_with_user_info(app):
    proxy = proxy_for(app)
    ann, bob = app.socket(), app.socket()
    ann_data = {"user_id": "ann", "user_info": {"name": "Ann"}}
    signed = proxy.authenticate("presence-room", ann.socket_id, ann_data)
    assert set(signed) == {"auth", "channel_data"}
    assert json.loads(signed["channel_data"]) == ann_data
    joined = ann.subscribe("presence-room", signed["auth"], signed["channel_data"])
    assert joined["members"]["ann"]["user_info"] == {"name": "Ann"}

    # a string is signed and returned exactly as given
    bob_data = '{"user_id": "bob", "user_info": {"name": "Bob"}}'
    response = proxy.auth_response("presence-room", bob.socket_id, bob_data)
    assert response["channel_data"] == bob_data
    joined = bob.subscribe("presence-room", response["auth"], response["channel_data"])
    assert set(joined["members"]) == {"ann", "bob"}
    added = ann.expect("pusher:member_added", "presence-room")
    assert json.loads(added["member"])["user_info"] == {"name": "Bob"}


# -- apps ----------------------------------------------------------------------------


def test_create_app_then_publish_with_its_credentials(server, monkeypatch):
    without_pushi_env(monkeypatch)
    created = pushi.Pushi(base_url=server.api).create_app("made by the proxy")
    assert created["name"] == "made by the proxy"
    assert {"ident", "key", "secret"} <= set(created)
    client = Client(server.ws_url(created["key"]))
    client.subscribe("global")
    proxy = pushi.Pushi(
        app_id=created["ident"],
        app_key=created["key"],
        app_secret=created["secret"],
        base_url=server.api,
    )
    proxy.trigger_event("global", "from a new app")
    client.expect("message", "global", data="from a new app")


def test_update_app_renames(app):
    proxy = proxy_for(app)
    assert proxy.update_app(name="renamed")["name"] == "renamed"
    listed = app.request("GET", "apps")
    assert listed.status_code == 200, listed.text
    assert [a["name"] for a in listed.json()] == ["renamed"]
    assert proxy.get_app()["name"] == "renamed"
    assert proxy.update_app(app.ident, name="again")["name"] == "again"
    assert [a["name"] for a in proxy.list_apps()] == ["again"]


# -- session -------------------------------------------------------------------------


def test_session_is_reused(app):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.trigger_event("global", "one")
    token = proxy.token
    proxy.trigger_event(["a", "b"], "two")
    proxy.list_events()
    proxy.subscribe("ann", "news")
    proxy.list_subscriptions()
    proxy.unsubscribe("ann", "news")
    proxy.update_app(name="same session")
    assert len(logins) == 1
    assert proxy.token == token


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
    assert len(proxy.list_events(count=100)) == 8


def test_logout_ends_the_session_and_next_call_logs_in(app):
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.list_events()
    old = proxy.token
    assert proxy.logout() == {"logout": True}
    assert proxy.token is None
    stale = requests.get(app.server.api + "events", params={"sid": old}, timeout=10)
    assert stale.status_code == 401, stale.text
    client = app.socket()
    client.subscribe("global")
    proxy.trigger_event("global", "after logout")
    client.expect("message", "global", data="after logout")
    assert len(logins) == 2


def test_invalid_session_logs_in_again_once(app):
    proxy = proxy_for(app)
    proxy.list_events()
    logins = count_logins(proxy)
    proxy.token = "0" * 64  # a session the server does not know
    client = app.socket()
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
    assert caught.value.status == 403
    assert caught.value.message == "invalid app credentials"
    assert app.request("GET", "events").json() == []


def test_refused_call_is_retried_only_once(app, other_app):
    proxy = proxy_for(app)
    proxy.list_events()
    logins = count_logins(proxy)
    with pytest.raises(pushi.PushiError) as caught:
        proxy.update_app(other_app.ident, name="not mine")
    assert caught.value.status == 403
    assert caught.value.message == "not your app"
    assert len(logins) == 1
    assert other_app.request("GET", "apps").json()[0]["name"] == "other"


def test_server_restart_expires_session_and_proxy_logs_in(start_server):
    server = start_server()
    app = AppClient(server)
    proxy = proxy_for(app)
    logins = count_logins(proxy)
    proxy.trigger_event("global", "before restart")
    assert len(logins) == 1
    server.restart()
    client = app.socket()
    client.subscribe("global")
    proxy.trigger_event("global", "after restart")
    client.expect("message", "global", data="after restart")
    assert len(logins) == 2
    assert [e["data"] for e in proxy.list_events()] == [
        "after restart",
        "before restart",
    ]


# -- errors --------------------------------------------------------------------------


def test_wrong_secret_is_a_403(app):
    proxy = pushi.Pushi(
        app_id=app.ident, app_key=app.key, app_secret="0" * 64, base_url=app.server.api
    )
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("global", "never sent")
    error = caught.value
    assert error.status == 403
    assert error.code == 403
    assert error.message == "invalid app credentials"
    assert proxy.token is None
    # still what 0.6.10 callers caught
    assert isinstance(error, appier.exceptions.HTTPError)
    assert error.read_json()["message"] == "invalid app credentials"


def test_invalid_channel_is_a_400_with_the_server_message(app):
    proxy = proxy_for(app)
    with pytest.raises(pushi.PushiError) as caught:
        proxy.trigger_event("not a valid channel!", "never sent")
    assert caught.value.status == 400
    assert caught.value.code == 400
    assert caught.value.message == "invalid channel name(s)"


def test_missing_subscription_is_a_404(app):
    with pytest.raises(pushi.PushiError) as caught:
        proxy_for(app).unsubscribe("nobody", "nothing")
    assert caught.value.status == 404
    assert caught.value.message == "subscription not found"


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
