"""Unmodified pusher-js 8 (npm, under Node.js) against the real server.

Each client is `tests/node/pusher_client.js`: a `new Pusher(key, {wsHost, wsPort,
forceTLS: false, enabledTransports: ['ws'], cluster})` whose channel and user
authorisers sign with Node's crypto and the app's secret (passed through the
environment), driven by JSON-line commands on stdin and reporting what the
library emits as JSON lines on stdout, which the tests await.

Needs `npm ci --prefix tests/node` (pusher-js pinned by tests/node/package-lock.json).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time

import pytest
from conftest import ROOT, WAIT_SECONDS, AppClient

NODE_DIR = os.path.join(ROOT, "tests", "node")
SCRIPT = os.path.join(NODE_DIR, "pusher_client.js")
PUSHER_JS = os.path.join(NODE_DIR, "node_modules", "pusher-js", "package.json")
SOCKET_ID = re.compile(r"\d+\.\d+")


def require_pusher_js() -> None:
    """Fails (not skips) without Node.js or pusher-js: CI must install them."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed for the pusher-js tests (node not on PATH)")
    if not os.path.exists(PUSHER_JS):
        pytest.fail(
            "pusher-js is not installed: run `npm ci --prefix tests/node` first"
        )


class NodeClient:
    """One pusher-js client in its own Node.js process."""

    def __init__(self, app: AppClient, user: str = "node-user", **env) -> None:
        require_pusher_js()
        self.app = app
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        environment = dict(os.environ)
        environment.update(
            PUSHER_KEY=app.key,
            PUSHER_SECRET=app.secret,
            PUSHER_PORT=str(app.server.server_port),
            PUSHER_USER=user,
            **env,
        )
        self.process = subprocess.Popen(
            ["node", SCRIPT],
            cwd=NODE_DIR,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"type": "noise", "line": line})
        self.lines.put({"type": "exit"})

    def command(self, op: str, **fields) -> None:
        """Sends one command to the script."""
        self.process.stdin.write(json.dumps(dict(op=op, **fields)) + "\n")
        self.process.stdin.flush()

    def expect(self, timeout: float = WAIT_SECONDS, **match) -> dict:
        """Waits for the first record (after those already taken) with these fields."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            try:
                record = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(
                    "pusher-js: expected %r, got only %r (stderr: %s)"
                    % (match, skipped, self._stderr())
                ) from None
            self.seen.append(record)
            if record.get("type") == "exit" and match.get("type") != "exit":
                raise AssertionError(
                    "pusher-js exited while expecting %r after %r (stderr: %s)"
                    % (match, skipped, self._stderr())
                )
            if all(record.get(k) == v for k, v in match.items()):
                return record
            skipped.append(record)

    def _stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()

    def connected(self) -> str:
        """Waits for the connection; returns the socket id."""
        return self.expect(type="connected")["socket_id"]

    def subscribe(self, channel: str) -> dict:
        """Subscribes and waits for `pusher:subscription_succeeded`."""
        self.command("subscribe", channel=channel)
        return self.expect(
            type="event", channel=channel, event="pusher:subscription_succeeded"
        )

    def close(self) -> None:
        """Ends the Node.js process."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def node(closing):
    """Starts pusher-js clients of an app, ended after the test."""

    def start(app: AppClient, **kwargs) -> NodeClient:
        client = NodeClient(app, **kwargs)
        closing.append(client)
        return client

    return start


def test_connects_with_a_pusher_socket_id(app, node):
    client = node(app)
    assert SOCKET_ID.fullmatch(client.connected())


def test_public_channel_receives_rest_events(app, node):
    client = node(app)
    client.connected()
    client.subscribe("js-news")
    app.publish("js-news", {"headline": "hi"}, event="story")
    got = client.expect(type="event", channel="js-news", event="story")
    assert got["data"] == {"headline": "hi"}, got


def test_private_channel_client_events_between_two_clients(app, node):
    alice, bob = node(app, user="alice"), node(app, user="bob")
    for client in (alice, bob):
        client.connected()
        client.subscribe("private-js")
    alice.command("trigger", channel="private-js", event="client-wave", data={"n": 1})
    assert alice.expect(type="triggered")["ok"] is True
    got = bob.expect(type="event", channel="private-js", event="client-wave")
    assert got["data"] == {"n": 1}, got


def test_presence_members_and_client_event_user_id(app, node):
    alice = node(app, user="alice")
    alice.connected()
    joined = alice.subscribe("presence-js")
    assert joined["data"]["count"] == 1, joined
    assert joined["data"]["me"]["id"] == "alice", joined
    bob = node(app, user="bob")
    bob.connected()
    second = bob.subscribe("presence-js")
    assert second["data"]["count"] == 2, second
    assert sorted(second["data"]["members"]) == ["alice", "bob"], second
    added = alice.expect(
        type="event", channel="presence-js", event="pusher:member_added"
    )
    assert added["data"] == {"id": "bob", "info": {"name": "bob"}}, added
    alice.command("bind", channel="presence-js", event="client-hi")
    alice.expect(type="bind_done")
    bob.command("trigger", channel="presence-js", event="client-hi", data="yo")
    got = alice.expect(type="bound", channel="presence-js", event="client-hi")
    assert (got["data"], got["metadata"]) == ("yo", {"user_id": "bob"}), got
    bob.command("disconnect")
    removed = alice.expect(
        type="event", channel="presence-js", event="pusher:member_removed"
    )
    assert removed["data"]["id"] == "bob", removed


def test_client_event_on_public_channel_is_refused_by_the_server(app, node):
    """pusher-js lets `trigger` through on a public channel; the server refuses."""
    sender, other = node(app), node(app)
    for client in (sender, other):
        client.connected()
        client.subscribe("js-public")
    sender.command("trigger", channel="js-public", event="client-x", data={})
    error = sender.expect(type="error")
    assert error["error"]["data"]["code"] == 4009, error
    app.publish("js-public", "after", event="marker")
    got = other.expect(type="event", channel="js-public")
    assert got["event"] == "marker", "the refused client event arrived: %r" % got


def test_signin_and_server_to_user_events(app, node):
    client = node(app, user="user-42")
    client.connected()
    client.command("signin")
    done = client.expect(type="signin_done")
    assert done["user_data"]["id"] == "user-42", done
    # pusher-js subscribes #server-to-user-<id> itself once signed in
    client.expect(type="user_channel_subscribed")
    app.publish("#server-to-user-user-42", {"private": True}, event="note")
    got = client.expect(type="user_event", event="note")
    assert got["data"] == {"private": True}, got


def test_cache_channel_miss_then_last_event(app, node):
    name = "cache-js-%s" % secrets.token_hex(4)
    first = node(app)
    first.connected()
    first.command("subscribe", channel=name)
    first.expect(type="event", channel=name, event="pusher:cache_miss")
    app.publish(name, {"v": 1}, event="state")
    first.expect(type="event", channel=name, event="state")
    late = node(app)
    late.connected()
    late.command("subscribe", channel=name)
    got = late.expect(type="event", channel=name, event="state")
    assert got["data"] == {"v": 1}, got


def test_encrypted_channel_decrypts_what_the_server_relayed(app, node):
    secret_box = pytest.importorskip("nacl.secret")
    key = secrets.token_bytes(32)
    client = node(app, PUSHER_SHARED_SECRET=base64.b64encode(key).decode())
    client.connected()
    client.subscribe("private-encrypted-js")
    nonce = secrets.token_bytes(24)
    sealed = secret_box.SecretBox(key).encrypt(
        json.dumps({"plain": "text"}).encode(), nonce
    )
    data = json.dumps(
        {
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
        }
    )
    app.publish("private-encrypted-js", data, event="sealed")
    got = client.expect(type="event", channel="private-encrypted-js", event="sealed")
    assert got["data"] == {"plain": "text"}, got


def test_unknown_key_is_refused_with_4001(server, node):
    class Unknown:
        key = "no-such-app"
        secret = "x"

    Unknown.server = server
    client = node(Unknown)
    error = client.expect(type="error")
    assert error["error"]["data"]["code"] == 4001, error


def test_pusher_js_answers_the_servers_pings(start_server, node):
    """With a 1 s activity timeout the server pings; pusher-js's pongs keep
    the connection: two events published 2.5 s apart both arrive on the
    first connection (no reconnect, the same socket id)."""
    server = start_server({"PUSHI_ACTIVITY_TIMEOUT": "1", "PUSHI_PONG_TIMEOUT": "1"})
    app = AppClient(server)
    client = node(app)
    socket_id = client.connected()
    client.subscribe("alive")
    with pytest.raises(AssertionError):
        # nothing may happen to the connection for longer than a probe cycle
        client.expect(type="state", timeout=2.5)
    sockets = app.request("GET", "sockets").json()["sockets"]
    assert [s["socket_id"] for s in sockets] == [socket_id], sockets
