"""Apps declared in configuration (`PUSHI_APPS`, `PUSHI_APPS_FILE`).

The declaration is checked at start (a bad one stops the process with one
line and exit status 2), upserted before State loads the apps, and then works
with the Pusher SDK, both WebSocket dialects, `/login` and the Pushi REST API.
A changed declaration updates the stored app at the next start. Apps of older
versions, stored without an `app_id`, get one at start.
"""

from __future__ import annotations

import json
import os
import re

import pusher
import pytest
import requests
from conftest import Client, Server, mongo_url
from contract import APP_FIELDS

from pushi.base.config import ConfigError, parse_apps

HEX64 = re.compile(r"[0-9a-f]{64}")

DECLARED = {
    "app_id": "424242",
    "key": "app-key",
    "secret": "app-secret",
    "name": "declared-one",
    "webhooks": [
        {"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"]}
    ],
    "max_payload": 500,
    "persist": True,
}
SECOND = {"app_id": 77, "key": "Other_Key-2", "secret": "s2"}


def sdk(server: Server, app_id: str, key: str, secret: str) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=app_id,
        key=key,
        secret=secret,
        host="127.0.0.1",
        port=server.app_port,
        ssl=False,
    )


def login(server: Server, app_id: str, key: str, secret: str) -> requests.Response:
    return requests.get(
        server.api + "login",
        params=dict(app_id=app_id, app_key=key, app_secret=secret),
        timeout=10,
    )


def session(server: Server, app_id: str, key: str, secret: str) -> requests.Session:
    """A REST session of an app, logged in with its numeric app_id."""
    response = login(server, app_id, key, secret)
    assert response.status_code == 200, response.text
    http = requests.Session()
    http.params = {"sid": response.json()["token"]}
    return http


def socket(server: Server, key: str, closing, dialect: str = "pushi") -> Client:
    path = key if dialect == "pushi" else "app/%s?protocol=7&client=t&version=1" % key
    client = Client(server.ws_url(path))
    closing.append(client)
    return client


def refused_start(server: Server) -> str:
    """Starts a server expected to refuse its configuration: its one line."""
    before = len(server.log()) if os.path.exists(server.log_path) else 0
    with pytest.raises(AssertionError, match="exited at start"):
        server.start()
    code = server.process.returncode
    server.process = None
    log = server.log()[before:]
    assert code == 2, "expected exit status 2, got %r:\n%s" % (code, log)
    assert "Traceback" not in log, log
    lines = [line for line in log.splitlines() if "bad configuration" in line]
    assert len(lines) == 1, log
    return lines[0]


# -- the declaration, checked ------------------------------------------------------


def test_a_declaration_gets_defaults():
    first, second = parse_apps(json.dumps([DECLARED, SECOND]))
    assert first == dict(DECLARED, client_events=True), first
    assert second == {
        "app_id": "77",
        "key": "Other_Key-2",
        "secret": "s2",
        "name": "app-77",
        "client_events": True,
        "max_payload": 10240,
        "persist": False,
        "webhooks": [],
    }, second


@pytest.mark.parametrize(
    "apps, reason",
    [
        ("[{", "not valid JSON"),
        ('{"app_id": "1"}', "JSON array"),
        ("[1]", "JSON object"),
        ([{"key": "k", "secret": "s"}], "missing field(s) app_id"),
        ([{"app_id": "1", "secret": "s"}], "missing field(s) key"),
        ([{"app_id": "1", "key": "k"}], "missing field(s) secret"),
        ([dict(SECOND, app_id="12a")], "app_id must be"),
        ([dict(SECOND, app_id="")], "app_id must be"),
        ([dict(SECOND, app_id=True)], "app_id must be"),
        ([dict(SECOND, key="has space")], "key must be"),
        ([dict(SECOND, key="k" * 65)], "key must be"),
        ([dict(SECOND, key="")], "key must be"),
        ([dict(SECOND, secret="")], "secret must be"),
        ([dict(SECOND, name="")], "name must be"),
        ([dict(SECOND, colour="blue")], "unknown field(s) colour"),
        ([dict(SECOND, client_events="yes")], "client_events must be"),
        ([dict(SECOND, persist=1)], "persist must be"),
        ([dict(SECOND, max_payload=0)], "max_payload"),
        ([dict(SECOND, max_payload="big")], "max_payload"),
        ([dict(SECOND, webhooks=[{"url": "x"}])], "webhooks"),
        (
            [dict(SECOND, webhooks=[{"url": "http://a", "event_types": ["x"]}])],
            "event_types",
        ),
        ([SECOND, dict(DECLARED, app_id="77")], "duplicate app_id '77'"),
        ([SECOND, dict(DECLARED, key=SECOND["key"])], "duplicate key"),
        ([dict(SECOND, name="n"), dict(DECLARED, name="n")], "duplicate name"),
    ],
)
def test_bad_declarations_are_named(apps, reason):
    text = apps if isinstance(apps, str) else json.dumps(apps)
    with pytest.raises(ConfigError) as raised:
        parse_apps(text)
    message = str(raised.value)
    assert reason in message and "\n" not in message, message


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"PUSHI_APPS": "[{"}, "PUSHI_APPS is not valid JSON"),
        ({"PUSHI_APPS": json.dumps([SECOND, SECOND])}, "duplicate app_id"),
        ({"PUSHI_APPS": json.dumps([dict(SECOND, key="a/b")])}, "key must be"),
        ({"PUSHI_APPS": "[]", "PUSHI_APPS_FILE": "/x"}, "not both"),
        ({"PUSHI_APPS_FILE": "/nonexistent/apps.json"}, "cannot read"),
    ],
)
def test_bad_configuration_stops_the_start(tmp_path, env, reason):
    line = refused_start(Server(str(tmp_path), env))
    assert reason in line, line


# -- declared apps at work -----------------------------------------------------------


def test_declared_apps_work_with_every_client(start_server, closing):
    server = start_server({"PUSHI_APPS": json.dumps([DECLARED, SECOND])})
    pushi_socket = socket(server, "app-key", closing)
    pushi_socket.subscribe("news")
    pusher_socket = socket(server, "app-key", closing, dialect="pusher")
    pusher_socket.subscribe("news")
    client = sdk(server, "424242", "app-key", "app-secret")
    assert client.trigger("news", "ev", "hi") == {}
    for subscriber in (pushi_socket, pusher_socket):
        got = subscriber.expect("ev", channel="news")
        assert got["data"] == "hi" and "mid" in got, got  # persist is on
    assert client.channels_info(attributes=["subscription_count"]) == {
        "channels": {"news": {"subscription_count": 2}}
    }
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        client.trigger("news", "ev", "x" * 501)
    # the REST API, logged in with the numeric app_id (or the ident)
    http = session(server, "424242", "app-key", "app-secret")
    listed = http.get(server.api + "apps", timeout=10).json()["apps"]
    assert len(listed) == 1, listed
    record = listed[0]
    assert set(record) == APP_FIELDS, record
    shown = {name: record[name] for name in DECLARED}
    assert shown == DECLARED and record["client_events"] is True, record
    assert HEX64.fullmatch(record["ident"]), record
    assert login(server, record["ident"], "app-key", "app-secret").status_code == 200
    assert login(server, "424242", "app-key", "wrong").status_code == 404
    published = http.post(
        server.api + "events", json={"channel": "news", "data": "rest"}, timeout=10
    )
    assert published.status_code == 200, published.text
    assert pushi_socket.expect("message", channel="news")["data"] == "rest"
    stored = http.get(server.api + "events", timeout=10).json()["events"]
    assert [event["data"]["data"] for event in stored] == ["rest", "hi"], stored
    # the second app is another tenant, with the defaults
    other = sdk(server, "77", "Other_Key-2", "s2")
    assert other.channels_info() == {"channels": {}}
    record = session(server, "77", "Other_Key-2", "s2").get(server.api + "apps")
    assert record.json()["apps"][0]["name"] == "app-77"


def test_declared_apps_from_a_file(start_server, tmp_path, closing):
    path = tmp_path / "apps.json"
    path.write_text(json.dumps([SECOND]))
    server = start_server({"PUSHI_APPS_FILE": str(path)})
    subscriber = socket(server, "Other_Key-2", closing)
    subscriber.subscribe("filed")
    assert sdk(server, "77", "Other_Key-2", "s2").trigger("filed", "ev", "ok") == {}
    got = subscriber.expect("ev", channel="filed")
    assert got == {"channel": "filed", "event": "ev", "data": "ok"}, got


def test_a_restart_applies_a_changed_declaration(tmp_path, closing):
    server = Server(str(tmp_path), {"PUSHI_APPS": json.dumps([DECLARED])})
    try:
        server.start()
        ident = session(server, "424242", "app-key", "app-secret").get(
            server.api + "apps"
        )
        ident = ident.json()["apps"][0]["ident"]
        changed = dict(
            DECLARED, key="new-key", secret="new-secret", name="renamed", max_payload=50
        )
        changed.pop("persist")
        server.extra_env["PUSHI_APPS"] = json.dumps([changed])
        server.restart()
        assert login(server, "424242", "app-key", "app-secret").status_code == 404
        http = session(server, "424242", "new-key", "new-secret")
        record = http.get(server.api + "apps").json()["apps"][0]
        assert (record["ident"], record["key"], record["name"]) == (
            ident,
            "new-key",
            "renamed",
        ), record
        assert (record["max_payload"], record["persist"]) == (50, False), record
        with pytest.raises(pusher.errors.PusherBadAuth):
            sdk(server, "424242", "app-key", "app-secret").trigger("c", "e", "d")
        client = sdk(server, "424242", "new-key", "new-secret")
        subscriber = socket(server, "new-key", closing)
        subscriber.subscribe("c")
        assert client.trigger("c", "e", "d") == {}
        got = subscriber.expect("e", channel="c")
        assert "mid" not in got, "persist is off again: %r" % (got,)
        with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
            client.trigger("c", "e", "x" * 51)
        # an app left out of the declaration stays, as any stored app
        server.extra_env.pop("PUSHI_APPS")
        server.restart()
        assert login(server, "424242", "new-key", "new-secret").status_code == 200
    finally:
        server.stop()


def test_a_declaration_cannot_take_an_api_apps_id(tmp_path):
    server = Server(str(tmp_path))
    try:
        server.start()
        created = requests.post(server.api + "apps", json={"name": "api-made"})
        assert created.status_code == 200, created.text
        app_id = created.json()["app_id"]
        server.stop()
        server.extra_env["PUSHI_APPS"] = json.dumps([dict(SECOND, app_id=app_id)])
        line = refused_start(server)
        assert "belongs to an app created through the API" in line, line
        taken = dict(SECOND, name="api-made")
        server.extra_env["PUSHI_APPS"] = json.dumps([taken])
        line = refused_start(server)
        assert "name" in line and "duplicate" in line, line
        server.extra_env.pop("PUSHI_APPS")
        server.start()  # the store is as it was
        again = login(server, app_id, created.json()["key"], created.json()["secret"])
        assert again.status_code == 200, again.text
    finally:
        server.stop()


# -- apps of older versions --------------------------------------------------------


def _strip_app_ids(server: Server) -> None:
    """Removes every app's app_id in the stopped server's store."""
    url = mongo_url(server.database)
    if url:
        import pymongo

        client = pymongo.MongoClient(url)
        try:
            client.get_default_database()["app"].update_many(
                {}, {"$unset": {"app_id": ""}}
            )
        finally:
            client.close()
        return
    from pushi.store.embedded import EmbeddedAdapter

    adapter = EmbeddedAdapter(os.path.join(server.data_dir, "store"))
    try:
        collection = adapter.collection("app")
        for document in collection.find({}):
            collection.update({"_id": document["_id"]}, {"$unset": {"app_id": ""}})
    finally:
        adapter.close()


def test_stored_apps_without_an_app_id_get_one(tmp_path):
    server = Server(str(tmp_path))
    try:
        server.start()
        created = requests.post(server.api + "apps", json={"name": "old"}).json()
        server.stop()
        _strip_app_ids(server)
        server.start()
        http = session(server, created["ident"], created["key"], created["secret"])
        record = http.get(server.api + "apps").json()["apps"][0]
        app_id = record["app_id"]
        assert re.fullmatch(r"[0-9]{9}", app_id or ""), record
        assert app_id != created["app_id"], "the store still had the old app_id"
        client = sdk(server, app_id, created["key"], created["secret"])
        assert client.channels_info() == {"channels": {}}
        server.restart()  # and keep it
        again = session(server, app_id, created["key"], created["secret"])
        assert again.get(server.api + "apps").json()["apps"][0]["app_id"] == app_id
    finally:
        server.stop()
