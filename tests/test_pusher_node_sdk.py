"""The official Pusher server SDK for Node.js (`pusher` on npm) against the real server.

`tests/node/pusher_server.js` runs one SDK call sequence per command and prints its
results; this test hands its signatures to a Pusher-dialect socket (so the server
accepts what the SDK signs: private and presence channels, user sign-in) and checks
that its HTTP API calls (trigger with `info`, sendToUser, channel and user queries,
terminateUserConnections) reach the socket and answer as Pusher does.
Needs `npm ci --prefix tests/node`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from test_pusher_http import PusherApp, expect_closed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_DIR = os.path.join(ROOT, "tests", "node")
SCRIPT = os.path.join(NODE_DIR, "pusher_server.js")
SDK = os.path.join(NODE_DIR, "node_modules", "pusher", "package.json")


@pytest.fixture
def papp(server) -> PusherApp:
    return PusherApp(server, name="node-sdk")


def run_sdk(papp: PusherApp, *args: str) -> dict:
    """One command of the Node SDK script, its printed JSON result."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed for the Node SDK tests (node not on PATH)")
    if not os.path.exists(SDK):
        pytest.fail("the pusher SDK is not installed: run `npm ci --prefix tests/node`")
    env = dict(
        os.environ,
        PUSHER_APP_ID=papp.app_id,
        PUSHER_KEY=papp.key,
        PUSHER_SECRET=papp.secret,
        PUSHER_HOST="127.0.0.1",
        PUSHER_PORT=str(papp.server.app_port),
    )
    done = subprocess.run(
        ["node", SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, "node %s: %s %s" % (args, done.stdout, done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_node_sdk_signs_publishes_queries_and_terminates(papp, closing):
    client = papp.pusher_socket(closing)
    signed = run_sdk(papp, "auth", client.socket_id)

    client.subscribe("private-node", signed["private"]["auth"])
    presence = client.subscribe(
        "presence-node",
        signed["presence"]["auth"],
        signed["presence"]["channel_data"],
    )["presence"]
    assert presence["ids"] == ["node-user"] and presence["count"] == 1, presence
    assert presence["hash"] == {"node-user": {"name": "Node"}}, presence
    client.send(
        "pusher:signin",
        {"auth": signed["user"]["auth"], "user_data": signed["user"]["user_data"]},
    )
    client.expect("pusher:signin_success")

    results = run_sdk(papp, "publish")
    assert results["triggered"] == {
        "status": 200,
        "body": {
            "channels": {
                "private-node": {"subscription_count": 1},
                "presence-node": {"subscription_count": 1},
            }
        },
    }, results["triggered"]
    event = client.expect("from-node")
    assert event["channel"] == "private-node", event  # one copy, the first channel
    assert json.loads(event["data"]) == {"n": 1}, event
    note = client.expect("note", channel="#server-to-user-node-user")
    assert json.loads(note["data"]) == {"hi": True}, note
    assert results["sent"]["status"] == 200, results["sent"]
    assert results["channels"] == {
        "status": 200,
        "body": {"channels": {"presence-node": {"user_count": 1}}},
    }, results["channels"]
    assert results["users"] == {
        "status": 200,
        "body": {"users": [{"id": "node-user"}]},
    }, results["users"]
    client.expect_silence()  # the trigger to two channels came once

    terminated = run_sdk(papp, "terminate")["terminated"]
    assert terminated["status"] == 200, terminated
    expect_closed(client)
