"""Process behaviour: entry points, the store log line, signals, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT, AppClient, Client, Server, until_pong
from contract import is_uuid4
from test_channels import ask, latest, socket_channels, unstamped
from websockets.exceptions import ConnectionClosed

EXIT_SECONDS = 20


class StateModuleServer(Server):
    """The same process started as `python -m pushi.base.state`."""

    module = "pushi.base.state"


class StateScriptServer(Server):
    """Started the published README's way, by path: `python <src>/pushi/base/state.py`.

    From the directory `cwd`, with the README's environment variables (APP_HOST,
    APP_PORT, SERVER_HOST, SERVER_PORT; plus this test's data directory and
    store) and stdin from /dev/null. PYTHONPATH is dropped: the script finds its
    package itself.
    """

    def __init__(self, data_dir: str, cwd: str, script: str) -> None:
        super().__init__(data_dir)
        self.cwd = cwd
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, self.script]

    def workdir(self) -> str:
        return self.cwd

    def environment(self) -> dict:
        env = super().environment()
        env.pop("PYTHONPATH", None)
        return env


def await_close(
    client: Client, timeout: float = EXIT_SECONDS
) -> tuple[int | None, list]:
    """Reads until the server closes; returns the close code and what came before."""
    before = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            before.append(json.loads(client.ws.recv(timeout=max(left, 0.001))))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd is not None else None), before
        except TimeoutError:
            raise AssertionError(
                "expected the server to close the connection within %.0f s, got only %r"
                % (timeout, before)
            ) from None


def exit_code(server: Server, timeout: float = EXIT_SECONDS) -> int:
    """Waits for the process to end by itself; fails (and kills it) if it does not."""
    process = server.process
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(
            "expected the process to exit within %d s, it did not:\n%s"
            % (timeout, server.log()[-3000:])
        ) from None
    server.process = None
    return code


def stored_mids(app: AppClient, **params) -> list[str]:
    """Mids of the app's stored events (`GET /events`), newest first."""
    response = app.request("GET", "events", params=dict(app.http.params, **params))
    assert response.status_code == 200, response.text
    return [event["mid"] for event in response.json()["events"]]


@pytest.fixture
def state_server(tmp_path):
    """A private server started through `python -m pushi.base.state`."""
    handle = StateModuleServer(str(tmp_path))
    yield handle
    handle.stop()


# -- entry points and the log ----------------------------------------------------------


def test_state_module_starts_a_working_server(state_server):
    state_server.start()
    app = AppClient(state_server)
    client = app.socket()
    try:
        client.subscribe("entry")
        app.publish("entry", "from pushi.base.state")
        got = client.expect("message", "entry")
        assert got["data"] == "from pushi.base.state", got
        assert stored_mids(app) == [got["mid"]]
    finally:
        client.close()


MASKED = ("id", "mid", "timestamp", "created", "modified", "instance", "owner_id")


def masked(record: dict) -> dict:
    """A record without the values that differ from one run to the next."""
    return {k: ("<%s>" % k if k in MASKED else v) for k, v in record.items()}


def transcript(server: Server) -> list:
    """What clients see of one scripted session, values of the run masked.

    Exact frames of every WebSocket reply kind and of the REST replies that
    clients read, so that two servers can be compared line by line.
    """
    app = AppClient(server)
    alice, bob = app.socket(), app.socket()
    seen: list = []
    try:
        established = dict(alice.seen[0])
        assert is_uuid4(alice.socket_id), established
        established["data"] = established["data"].replace(alice.socket_id, "<id>")
        seen.append(("connected", established))

        alice.send("pusher:subscribe", {"channel": "news"})
        seen.append(("subscribe", until_pong(alice)))

        alice.subscribe_signed("presence-room", {"user_id": "alice"})
        data_s = json.dumps({"user_id": "bob", "user_info": {"n": [1, 2]}})
        bob.send(
            "pusher:subscribe",
            {
                "channel": "presence-room",
                "auth": app.auth(bob.socket_id, "presence-room", data_s),
                "channel_data": data_s,
            },
        )
        seen.append(("presence", until_pong(bob), until_pong(alice)))

        body = {"channel": "news", "data": {"k": [1, "é"]}, "event": "ev", "x": 1}
        response = app.request("POST", "events", json=body)
        seen.append(("publish", response.status_code, response.json()))
        seen.append(("delivered", unstamped(alice.next())))

        bob.send("chat", "hi", channel="presence-room", echo=False, persist=True)
        seen.append(("client event", unstamped(alice.next())))
        seen.append(("latest", [masked(e) for e in latest(alice, "news")]))
        seen.append(("sockets", socket_channels(app, alice.socket_id)))

        alice.ws.send("{not json")
        seen.append(("bad message", until_pong(alice)))
        health = requests.get(server.api + "health", timeout=10)
        seen.append(("health", health.status_code, health.json()))
        bob.close()  # its channels are cleaned up after the close: await it
        seen.append(("left", alice.next(), until_pong(alice)))
    finally:
        alice.close()
        bob.close()
    return seen


def test_the_readme_way_by_path_serves_like_the_module(tmp_path):
    """`python src/pushi/base/state.py` from a checkout is `-m pushi.base.state`.

    Run from the repository root and, as the published README does, from its
    parent (`python pushi/src/pushi/base/state.py`). Before the fix the script
    stopped at "attempted relative import with no known parent package".
    """
    (tmp_path / "module").mkdir()
    module = StateModuleServer(str(tmp_path / "module")).start()
    try:
        expected = transcript(module)
    finally:
        assert module.stop() == 0, module.log()[-3000:]
    # the module run itself is right, so that equality below means something
    assert expected[0] == (
        "connected",
        {"event": "pusher:connection_established", "data": '{"socket_id": "<id>"}'},
    ), expected[0]
    assert expected[3] == ("publish", 200, {"result": "success"}), expected[3]
    assert expected[4][1]["data"] == '{"k": [1, "\\u00e9"]}', expected[4]
    assert expected[-1][1]["event"] == "pusher:member_removed", expected[-1]

    parent, name = os.path.split(ROOT)
    script = os.path.join("src", "pushi", "base", "state.py")
    for cwd, path in ((ROOT, script), (parent, os.path.join(name, script))):
        data_dir = tmp_path / ("script-" + os.path.basename(cwd))
        data_dir.mkdir()
        handle = StateScriptServer(str(data_dir), cwd, path)
        try:
            handle.start()
            got = transcript(handle)
        finally:
            code = handle.stop()
        log = handle.log()
        assert "Traceback" not in log, "python %s from %s:\n%s" % (
            path,
            cwd,
            log[-3000:],
        )
        assert got == expected, "python %s from %s served differently:\n%r\n%r" % (
            path,
            cwd,
            got,
            expected,
        )
        assert code == 0, "python %s exited %r on SIGTERM:\n%s" % (
            path,
            code,
            log[-3000:],
        )


def test_log_names_the_store_once(server):
    lines = [line for line in server.log().splitlines() if "store:" in line]
    assert len(lines) == 1, "expected one log line with 'store:', got %r" % lines
    if os.environ.get("MONGO_URL"):
        assert "mongo" in lines[0].lower(), "expected MongoDB named, got %r" % lines[0]
    else:
        assert "embedded" in lines[0].lower(), "expected the embedded store, got %r" % (
            lines[0]
        )
        assert os.path.join(server.data_dir, "store") in lines[0], (
            "expected the data directory in %r" % lines[0]
        )


# -- signals ---------------------------------------------------------------------------


def test_sigterm_closes_sockets_1001_exits_0_and_keeps_events(start_server):
    handle = start_server()
    app = AppClient(handle)
    client = app.socket()
    client.subscribe("burst")
    for index in range(50):
        app.publish("burst", "event %d" % index)
    # one last call queues 50 more writes at once, right before the signal
    fanout = app.request(
        "POST",
        "events",
        json={"channel": ["burst-%d" % i for i in range(50)], "data": "fan-out"},
    )
    assert fanout.status_code == 200, fanout.text

    handle.process.send_signal(signal.SIGTERM)
    code, before = await_close(client)
    assert code == 1001, "expected close code 1001 on SIGTERM, got %r" % code
    delivered = [m for m in before if m.get("channel") == "burst"]
    assert [m["data"] for m in delivered] == [
        "event %d" % i for i in range(50)
    ], "expected all 50 events delivered in order before close"
    status = exit_code(handle)
    log = handle.log()

    handle.start()
    app.login()
    response = app.request("GET", "events", params={"count": 100})
    assert response.status_code == 200, response.text
    stored = [(e["channel"], e["data"]["data"]) for e in response.json()["events"]]
    expected = [("burst", "event %d" % i) for i in range(50)] + [
        ("burst-%d" % i, "fan-out") for i in range(50)
    ]
    missing = [event for event in expected if event not in stored]
    assert (
        not missing
    ), "expected all 100 events stored after restart, %d missing" % len(missing)
    assert stored == expected[::-1], "expected the 100 events newest first"
    burst = [e["mid"] for e in response.json()["events"] if e["channel"] == "burst"]
    assert burst == [m["mid"] for m in delivered][::-1], "stored mids differ"
    # checked last so that a bad exit still shows whether the events survived
    assert status == 0, "expected exit code 0 on SIGTERM, got %r:\n%s" % (
        status,
        log[-3000:],
    )


def test_sigint_stops_cleanly(start_server):
    handle = start_server()
    app = AppClient(handle)
    client = app.socket()
    client.roundtrip()
    handle.process.send_signal(signal.SIGINT)
    code, _ = await_close(client)
    assert code == 1001, "expected close code 1001 on SIGINT, got %r" % code
    status = exit_code(handle)
    assert status == 0, "expected exit code 0 on SIGINT, got %r:\n%s" % (
        status,
        handle.log()[-3000:],
    )
    log = handle.log()
    assert "Traceback" not in log, "expected a clean stop, the log has:\n" + log[-3000:]


# -- restarts --------------------------------------------------------------------------


def test_restart_keeps_apps_subscriptions_and_events(start_server):
    handle = start_server()
    app = AppClient(handle)
    app.subscribe_user("alice", "news")
    watcher = app.socket()
    watcher.subscribe("news")
    sent = []
    for index in range(3):
        app.publish("news", "headline %d" % index)
        sent.append(watcher.expect("message", "news")["mid"])
    # the store answers reads after the writes queued before them
    assert stored_mids(app, channel="news") == sent[::-1]
    watcher.close()

    handle.restart()

    # apps: the same credentials log in
    app.login()
    assert app.request("GET", "apps/" + app.ident).status_code == 200

    # subscriptions
    listed = app.request(
        "GET", "subscriptions", params=dict(app.http.params, user_id="alice")
    )
    assert listed.status_code == 200, listed.text
    pairs = [(s["user_id"], s["event"]) for s in listed.json()["subscriptions"]]
    assert pairs == [("alice", "news")], (
        "expected alice's subscription to news after restart, got %r" % pairs
    )

    # events: pusher:latest answers the stored ones, newest first
    client = app.socket()
    try:
        client.subscribe("news")
        events = latest(client, "news")
        assert [e["mid"] for e in events] == sent[
            ::-1
        ], "expected %r newest first, got %r" % (sent[::-1], events)
        assert [e["data"]["data"] for e in events] == [
            "headline 2",
            "headline 1",
            "headline 0",
        ]

        # the personal channel still aliases news and carries its events
        personal = ask(
            client,
            "pusher:subscribe",
            "personal-alice",
            auth=app.auth(client.socket_id, "personal-alice"),
        )
        assert personal["alias"] == ["news"], personal
        assert [e["mid"] for e in personal["events"]] == sent[::-1], personal
    finally:
        client.close()


def test_restart_keeps_a_socket_key_usable(start_server):
    """An app created before a restart still accepts WebSocket connections after it."""
    handle = start_server()
    app = AppClient(handle)
    handle.restart()
    client = app.socket()
    try:
        client.subscribe("after")
        app.login()
        app.publish("after", "still here")
        assert client.expect("message", "after")["data"] == "still here"
    finally:
        client.close()


def stored_data(client: Client, channel: str) -> set[str]:
    """Every stored event's data on a channel, through `pusher:latest` pages."""
    found: set[str] = set()
    for skip in range(0, 100_000, 100):
        page = latest(client, channel, skip=skip, count=100)
        found.update(event["data"]["data"] for event in page)
        if len(page) < 100:
            return found
    raise AssertionError("more than 100,000 events on %s" % channel)


def test_sigterm_flushes_a_large_backlog(start_server):
    """Writes acknowledged while publishers race the signal are all stored."""
    handle = start_server()
    app = AppClient(handle)
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    channels = ["backlog-%d" % i for i in range(100)]

    def publisher(number: int) -> None:
        http = requests.Session()
        http.trust_env = False
        url = handle.api + "events"
        for call in range(100):
            data = "publisher %d call %d" % (number, call)
            try:
                response = http.post(
                    url,
                    params={"sid": app.sid},
                    json={"channel": channels, "data": data},
                    timeout=10,
                )
            except requests.RequestException:
                return  # the server went away mid-call: nothing acknowledged
            if response.status_code != 200:
                return
            with lock:
                acknowledged.append(data)
                if len(acknowledged) >= 20:  # x 100 channels: 2,000 events
                    enough.set()
        enough.set()

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), "expected 20 acknowledged publishes, got %d" % len(
        acknowledged
    )
    handle.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    status = exit_code(handle)
    log = handle.log()
    with lock:
        sent = set(acknowledged)

    handle.start()
    app.login()
    client = app.socket()
    try:
        # the first and the last channel of each publish: whole triggers stored
        for channel in (channels[0], channels[-1]):
            client.subscribe(channel)
            missing = sent - stored_data(client, channel)
            assert not missing, "%s: %d of %d acknowledged publishes missing" % (
                channel,
                len(missing),
                len(sent),
            )
    finally:
        client.close()
    assert status == 0, "expected exit code 0 on SIGTERM, got %r:\n%s" % (
        status,
        log[-3000:],
    )
