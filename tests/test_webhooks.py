"""Pusher-style webhooks end to end: the real server posting to a local receiver.

The receiver (http.server on loopback, a thread) records every request, checks
its `X-Pusher-Signature` with the secret of the app its `X-Pusher-Key` names,
and answers as a test asks: 200, a list of statuses first, or not at all (it
hangs until the test ends). Tests await the requests they expect through a
condition with a timeout. A URL gets its events in order, one request after
the other, so a last "sentinel" event proves that nothing else came before it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest
from conftest import WAIT_SECONDS, AppClient, Client, unique

from pushi.base.auth import channel_auth
from pushi.base.config import WEBHOOK_EVENTS

QUERY = "?protocol=7&client=js&version=8.4.0"


class Receiver:
    """A webhook receiver on loopback that records and verifies what it gets."""

    def __init__(self, statuses=(), hang: bool = False) -> None:
        self.statuses = list(statuses)  # the first replies; 200 afterwards
        self.hang = hang
        self.release = threading.Event()
        self.secrets: dict[str, str] = {}  # app key -> secret
        self.requests: list[dict] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._received(self)

            def log_message(self, *args) -> None:
                pass  # quiet

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]

    def hook(self, *types: str) -> dict:
        """A webhook setting for this receiver (every type unless named)."""
        return {"url": self.url, "event_types": list(types or WEBHOOK_EVENTS)}

    def _received(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        key = handler.headers.get("X-Pusher-Key", "")
        secret = self.secrets.get(key)
        expected = (
            hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if secret is not None
            else None
        )
        with self.changed:
            status = self.statuses.pop(0) if self.statuses else 200
            record = {
                "path": handler.path,
                "headers": dict(handler.headers),
                "body": body,
                "payload": json.loads(body),
                "signed": expected is not None
                and hmac.compare_digest(
                    expected, handler.headers.get("X-Pusher-Signature", "")
                ),
                "status": None if self.hang else status,
            }
            self.requests.append(record)
            self.changed.notify_all()
        if self.hang:
            self.release.wait(60)
            status = 200
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def accepted(self) -> list[dict]:
        """The events of the requests answered 2xx, in arrival order."""
        with self.changed:
            return [
                event
                for record in self.requests
                if record["status"] is not None and 200 <= record["status"] < 300
                for event in record["payload"]["events"]
            ]

    def wait(self, predicate, what: str, timeout: float = WAIT_SECONDS) -> None:
        """Waits until `predicate(self)` holds; fails saying what came."""
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(
                    "receiver: expected %s, got %r"
                    % (what, [r["payload"] for r in self.requests])
                )

    def until(self, event: dict, timeout: float = WAIT_SECONDS) -> list[dict]:
        """Waits for an accepted event; returns the accepted events before it."""
        self.wait(lambda r: event in r.accepted(), repr(event), timeout)
        events = self.accepted()
        return events[: events.index(event)]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receivers():
    """Opens receivers, closed after the test."""
    opened: list[Receiver] = []

    def open_receiver(**kwargs) -> Receiver:
        receiver = Receiver(**kwargs)
        opened.append(receiver)
        return receiver

    yield open_receiver
    for receiver in opened:
        receiver.close()


def with_hooks(app: AppClient, *receivers_and_hooks) -> None:
    """Sets an app's webhooks (`PUT /apps/<ident>`); receivers learn its secret."""
    hooks = []
    for receiver, hook in receivers_and_hooks:
        receiver.secrets[app.key] = app.secret
        hooks.append(hook)
    response = app.request("PUT", "apps/" + app.ident, json={"webhooks": hooks})
    assert response.status_code == 200, response.text


def pusher_client(app: AppClient, closing, key: str | None = None) -> Client:
    """A Pusher-dialect client (protocol 7) of the app."""
    url = app.server.ws_url("app/%s%s" % (key or app.key, QUERY))
    client = Client(url, app=app)
    closing.append(client)
    return client


def join(client: Client, channel: str, user_id: str) -> dict:
    """Joins a presence channel with signed channel_data."""
    return client.subscribe_signed(channel, {"user_id": user_id})


def occupied(channel: str) -> dict:
    return {"name": "channel_occupied", "channel": channel}


def vacated(channel: str) -> dict:
    return {"name": "channel_vacated", "channel": channel}


def sentinel(app: AppClient, connect, receiver: Receiver) -> list[dict]:
    """Occupies a fresh channel; returns every event accepted before it."""
    name = unique("sentinel")
    client = connect(app)
    client.subscribe(name)
    return receiver.until(occupied(name))


# -- the request -----------------------------------------------------------------------


def test_a_request_is_what_pusher_posts(app, connect, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook()))
    before = int(time.time() * 1000)
    channel = unique("news")
    connect(app).subscribe(channel)
    receiver.until(occupied(channel))
    record = receiver.requests[0]
    after = int(time.time() * 1000)
    assert record["path"] == "/hook"
    assert record["headers"]["Content-Type"] == "application/json"
    assert record["headers"]["X-Pusher-Key"] == app.key
    assert record["signed"], "X-Pusher-Signature is not the body's HMAC"
    payload = record["payload"]
    assert sorted(payload) == ["events", "time_ms"], payload
    assert isinstance(payload["time_ms"], int), payload
    assert before <= payload["time_ms"] <= after, (before, payload, after)
    assert payload["events"] == [occupied(channel)], "one event a request"


# -- occupancy -------------------------------------------------------------------------


def test_occupied_and_vacated_with_both_dialects(app, connect, closing, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook("channel_occupied", "channel_vacated")))
    channel = unique("news")
    pushi = connect(app)
    pushi.subscribe(channel)  # a Pushi socket occupies
    receiver.until(occupied(channel))
    pusher = pusher_client(app, closing)
    pusher.subscribe(channel)
    pushi.close()  # the Pusher socket is still there: no vacated
    pusher.send("pusher:unsubscribe", {"channel": channel})
    receiver.until(vacated(channel))
    other = unique("solo")
    pusher.subscribe(other)  # a Pusher socket alone occupies too
    pusher.close()
    receiver.until(vacated(other))
    assert sentinel(app, connect, receiver) == [
        occupied(channel),
        vacated(channel),
        occupied(other),
        vacated(other),
    ]
    assert all(
        r["signed"] and len(r["payload"]["events"]) == 1 for r in receiver.requests
    )


def test_an_app_without_webhooks_posts_nothing(app, other_app, connect, receivers):
    receiver = receivers()
    with_hooks(other_app, (receiver, receiver.hook()))
    connect(app).subscribe(unique("quiet"))
    assert sentinel(other_app, connect, receiver) == []


# -- presence --------------------------------------------------------------------------


def test_member_added_and_removed_once_per_user(app, connect, closing, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook("member_added", "member_removed")))
    channel = "presence-" + unique("room")
    ann_one, ann_two = pusher_client(app, closing), pusher_client(app, closing)
    bob = connect(app)  # a Pushi-dialect member
    join(ann_one, channel, "ann")
    join(ann_two, channel, "ann")
    join(bob, channel, "bob")
    bob.close()
    ann_one.close()  # ann is still there on her other socket
    ann_two.send("pusher:unsubscribe", {"channel": channel})

    def member(name: str, user_id: str) -> dict:
        return {"name": name, "channel": channel, "user_id": user_id}

    gone = member("member_removed", "ann")
    assert receiver.until(gone) == [
        member("member_added", "ann"),
        member("member_added", "bob"),
        member("member_removed", "bob"),
    ]
    # nothing after it either: a last member of another user closes the list
    last = pusher_client(app, closing)
    join(last, channel, "zoe")
    assert receiver.until(member("member_added", "zoe"))[3:] == [gone]


# -- client events and cache misses ----------------------------------------------------


def test_client_event_on_a_private_channel(app, closing, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook("client_event")))
    channel = "private-" + unique("chat")
    sender, listener = pusher_client(app, closing), pusher_client(app, closing)
    for client in (sender, listener):
        client.subscribe_signed(channel)
    sender.send("client-typing", {"a": 1}, channel=channel)
    listener.expect("client-typing", channel)
    expected = {
        "name": "client_event",
        "channel": channel,
        "event": "client-typing",
        "data": '{"a": 1}',
        "socket_id": sender.socket_id,
    }
    assert receiver.until(expected) == []


def test_client_event_on_a_presence_channel_carries_the_user(app, closing, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook("client_event")))
    channel = "presence-" + unique("chat")
    sender, listener = pusher_client(app, closing), pusher_client(app, closing)
    join(sender, channel, "ann")
    join(listener, channel, "bob")
    sender.send("client-typing", "hi", channel=channel)
    listener.expect("client-typing", channel)
    expected = {
        "name": "client_event",
        "channel": channel,
        "event": "client-typing",
        "data": "hi",
        "socket_id": sender.socket_id,
        "user_id": "ann",
    }
    assert receiver.until(expected) == []


def test_cache_miss(app, closing, receivers):
    receiver = receivers()
    with_hooks(app, (receiver, receiver.hook("cache_miss")))
    channel = "cache-" + unique("prices")
    client = pusher_client(app, closing)
    client.send("pusher:subscribe", {"channel": channel})
    client.expect("pusher:cache_miss", channel)
    assert receiver.until({"name": "cache_miss", "channel": channel}) == []


# -- which URL gets what ---------------------------------------------------------------


def test_each_url_gets_only_the_types_it_asked_for(app, connect, receivers):
    comings, goings = receivers(), receivers()
    with_hooks(
        app,
        (comings, comings.hook("channel_occupied")),
        (goings, goings.hook("channel_vacated")),
    )
    channel, last = unique("news"), unique("last")
    client = connect(app)
    client.subscribe(channel)
    client.send("pusher:unsubscribe", {"channel": channel})
    client.expect("pusher_internal:unsubscription_succeeded", channel)
    client.subscribe(last)
    assert comings.until(occupied(last)) == [occupied(channel)]
    client.close()
    assert goings.until(vacated(last)) == [vacated(channel)]


def test_a_5xx_is_tried_again_a_4xx_is_not(app, connect, receivers):
    flaky, picky = receivers(statuses=[500]), receivers(statuses=[400])
    with_hooks(app, (flaky, flaky.hook()), (picky, picky.hook()))
    channel = unique("news")
    connect(app).subscribe(channel)
    assert flaky.until(occupied(channel)) == []
    first, second = flaky.requests[:2]
    assert (first["status"], second["status"]) == (500, 200)
    assert first["body"] == second["body"] and second["signed"], "not the same request"
    # picky refused it once: the next request it gets is the next event
    later = unique("later")
    connect(app).subscribe(later)
    picky.until(occupied(later))
    got = [(r["status"], r["payload"]["events"]) for r in picky.requests]
    assert got == [(400, [occupied(channel)]), (200, [occupied(later)])], got


def test_a_hanging_url_delays_neither_sockets_nor_other_urls(app, connect, receivers):
    hanging, healthy = receivers(hang=True), receivers()
    with_hooks(app, (hanging, hanging.hook()), (healthy, healthy.hook()))
    channel = unique("news")
    subscriber = connect(app)
    subscriber.subscribe(channel)
    hanging.wait(lambda r: r.requests, "the first request")  # now it hangs
    healthy.until(occupied(channel), timeout=2.0)
    # the hanging URL has work queued behind it; sockets and the other URL
    # go on (a short timeout: a blocked sender would wait 5 s a try)
    app.publish(channel=channel, data="still here", persist=False)
    subscriber.expect("message", channel, timeout=2.0, data="still here")
    others = [unique("more") for _ in range(3)]
    for name in others:
        connect(app).subscribe(name)
    for name in others:
        healthy.until(occupied(name), timeout=2.0)
    assert len(hanging.requests) == 1, "a hanging URL got a second request at once"


# -- batching and declared apps (a server of their own) --------------------------------


def test_batching_gathers_a_urls_events_into_one_request(
    start_server, receivers, closing
):
    receiver = receivers()
    declared = {
        "app_id": "5150",
        "key": "batch-key",
        "secret": "batch-secret",
        "webhooks": [receiver.hook("channel_occupied", "member_added")],
    }
    receiver.secrets["batch-key"] = "batch-secret"
    server = start_server(
        {"PUSHI_APPS": json.dumps([declared]), "PUSHI_WEBHOOK_BATCH_MS": "500"}
    )
    client = Client(server.ws_url("app/batch-key" + QUERY))
    closing.append(client)
    names = ["one", "two", "three"]
    for name in names:  # sent back to back: well inside one window
        client.send("pusher:subscribe", {"channel": name})
    presence = "presence-room"
    channel_data = json.dumps({"user_id": "ann"})
    auth = channel_auth(
        "batch-key", "batch-secret", client.socket_id, presence, channel_data
    )
    client.send(
        "pusher:subscribe",
        {"channel": presence, "auth": auth, "channel_data": channel_data},
    )
    client.expect("pusher_internal:subscription_succeeded", presence)
    added = {"name": "member_added", "channel": presence, "user_id": "ann"}
    assert receiver.until(added) == [occupied(name) for name in names] + [
        occupied(presence)
    ]
    assert len(receiver.requests) == 1, [r["payload"] for r in receiver.requests]
    assert receiver.requests[0]["signed"]
