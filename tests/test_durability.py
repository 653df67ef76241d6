"""Acknowledged means stored: kill -9 after acknowledged publishes, a full
store queue refuses (503, nothing delivered), and retention deletes old events
with their associations. Each runs on the store the suite runs on (embedded, or
MongoDB with MONGO_URL); the full-queue test stalls the embedded store's writer
and runs on it only.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sqlite3
import time

import pytest
import requests
from conftest import AppClient, mongo_url, unique, until_pong

PUBLISHERS, EACH = 8, 40


def _session(app: AppClient) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.verify = False
    http.params = {"sid": app.sid}
    return http


def _publish_all(app: AppClient, channel: str, datas: list[str]) -> dict[str, int]:
    """Publishes each data (persisted) from its own thread's keep-alive session;
    answers each data's status code."""

    def run(part: list[str]) -> dict[str, int]:
        http = _session(app)
        codes = {}
        for data in part:
            response = http.post(
                app.server.api + "events",
                json=dict(channel=channel, data=data, event="e"),
                timeout=30,
            )
            codes[data] = response.status_code
        return codes

    parts = [datas[index::PUBLISHERS] for index in range(PUBLISHERS)]
    codes: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(PUBLISHERS) as pool:
        for found in pool.map(run, parts):
            codes.update(found)
    return codes


def _stored_datas(app: AppClient, channel: str) -> list[str]:
    datas, skip = [], 0
    while True:
        response = app.request(
            "GET", "events", params=dict(channel=channel, skip=skip, count=100)
        )
        assert response.status_code == 200, response.text
        page = response.json()["events"]
        datas += [event["data"]["data"] for event in page]
        if len(page) < 100:
            return datas
        skip += 100


def _associations(server) -> int:
    """Association records in the server's store (read directly, server stopped)."""
    url = mongo_url(server.database)
    if url:
        import pymongo

        client = pymongo.MongoClient(url)
        try:
            return client.get_default_database()["association"].count_documents({})
        finally:
            client.close()
    path = os.path.join(server.data_dir, "store", "pushi.db")
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM association").fetchone()[0]


def test_acknowledged_publishes_survive_kill_9(start_server, tmp_path):
    server = start_server(data_dir=str(tmp_path))
    app = AppClient(server)
    app.subscribe_user("alice", "news")
    datas = ["d%03d" % index for index in range(PUBLISHERS * EACH)]
    blocker = None
    if not os.environ.get("MONGO_URL"):
        # the embedded store's writer is stalled while the publishes come in:
        # one answered before its commit would be lost by the kill below
        blocker = sqlite3.connect(
            os.path.join(server.data_dir, "store", "pushi.db"), isolation_level=None
        )
        blocker.execute("BEGIN IMMEDIATE")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(_publish_all, app, "news", datas)
        if blocker is not None:
            try:
                running.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                blocker.execute("ROLLBACK")  # nothing answered yet: go on
            blocker.close()
        codes = running.result(timeout=60)
    # killed the moment the last publisher is answered: no clean stop
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.process = None
    acknowledged = [data for data, code in codes.items() if code == 200]
    assert len(acknowledged) == len(datas), "refused: %r" % {
        d: c for d, c in codes.items() if c != 200
    }

    server.start()
    app.login()  # the app survived: its credentials still log in
    stored = _stored_datas(app, "news")
    missing = sorted(set(acknowledged) - set(stored))
    assert not missing, "%d acknowledged events lost: %r" % (len(missing), missing[:10])
    assert len(stored) == len(set(stored)), "an event was stored twice"
    subscriptions = app.request("GET", "subscriptions").json()["subscriptions"]
    assert [(s["user_id"], s["event"]) for s in subscriptions] == [("alice", "news")]
    server.stop()
    assert _associations(server) == len(acknowledged), "one per event for alice"


@pytest.mark.skipif(
    bool(os.environ.get("MONGO_URL")),
    reason="stalls the embedded store's writer with a SQLite lock",
)
def test_a_full_store_queue_refuses_with_503_and_delivers_nothing(
    start_server, tmp_path, connect
):
    server = start_server(env={"PUSHI_STORE_QUEUE": "1"}, data_dir=str(tmp_path))
    app = AppClient(server)
    channel = unique("busy")
    client = connect(app)
    client.subscribe(channel)
    # another process holds the database's write lock: the worker's next
    # commit waits, so the queue (one trigger) fills up behind it
    blocker = sqlite3.connect(
        os.path.join(server.data_dir, "store", "pushi.db"), isolation_level=None
    )
    blocker.execute("BEGIN IMMEDIATE")
    pool = concurrent.futures.ThreadPoolExecutor(16)
    try:
        pending, refused = {}, []
        for index in range(16):
            data = "q%02d" % index
            http = _session(app)
            pending[data] = pool.submit(
                http.post,
                server.api + "events",
                json=dict(channel=channel, data=data, event="e"),
                timeout=30,
            )
            # a refusal answers at once; accepted publishes wait for a commit
            try:
                response = pending[data].result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                continue
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["result"] == "error" and body["code"] == 503, body
            refused.append(data)
            if len(refused) == 2:
                break
        assert refused, "no publish was refused with a one-trigger queue"
        accepted = [data for data in pending if data not in refused]
        assert accepted, "the first publishes must be queued"
        assert all(
            not pending[data].done() for data in accepted
        ), "an accepted publish answered before its commit"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for data in accepted:
        response = pending[data].result(timeout=30)
        assert response.status_code == 200, response.text
    pool.shutdown()
    delivered = [
        message["data"] for message in until_pong(client) if message.get("event") == "e"
    ]
    assert sorted(delivered) == sorted(accepted), "a refused event was delivered"
    assert sorted(_stored_datas(app, channel)) == sorted(accepted)


def _await(condition, what: str, seconds: float = 15.0):
    """Awaits a condition the store worker makes true on its own schedule."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out awaiting " + what)
        time.sleep(0.1)  # retention passes run every second: polled


def test_max_events_keeps_each_apps_newest(start_server, tmp_path):
    server = start_server(env={"PUSHI_MAX_EVENTS": "5"}, data_dir=str(tmp_path))
    app, other = AppClient(server), AppClient(server, "other")
    app.subscribe_user("alice", "news")
    for index in range(12):
        app.publish("news", "n%02d" % index)
    other.publish("news", "kept")
    newest = ["n%02d" % index for index in range(11, 6, -1)]
    _await(lambda: _stored_datas(app, "news") == newest, "the 5 newest only")
    assert _stored_datas(other, "news") == ["kept"], "another app's events stay"
    server.stop()
    assert _associations(server) == 5, "the deleted events' associations go too"


def test_event_ttl_deletes_old_events_and_their_associations(start_server, tmp_path):
    server = start_server(env={"PUSHI_EVENT_TTL": "2"}, data_dir=str(tmp_path))
    app = AppClient(server)
    app.subscribe_user("alice", "news")
    for index in range(3):
        app.publish("news", "old%d" % index)
    assert len(_stored_datas(app, "news")) == 3, "stored until their TTL"
    _await(lambda: not _stored_datas(app, "news"), "the expired events to go")
    app.publish("news", "fresh")
    assert _stored_datas(app, "news") == ["fresh"]
    server.stop()
    assert _associations(server) == 1, "the expired events' associations go too"
