"""Process behaviour: entry points, the store log line, signals, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests
from conftest import AppClient, Client, Server
from websockets.exceptions import ConnectionClosed

EXIT_SECONDS = 20


class StateModuleServer(Server):
    """The same process started as `python -m pushi.base.state`."""

    module = "pushi.base.state"


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
    return [event["mid"] for event in response.json()]


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
        sent = app.publish("entry", "from pushi.base.state")
        got = client.expect("message", "entry")
        assert got["data"] == "from pushi.base.state", got
        assert got["mid"] == sent["mid"], (got, sent)
    finally:
        client.close()


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
    sent = [app.publish("burst", "event %d" % i)["mid"] for i in range(50)]
    # one last call queues 50 more writes at once, right before the signal
    fanout = app.request(
        "POST",
        "events",
        json={"channel": ["burst-%d" % i for i in range(50)], "data": "fan-out"},
    )
    assert fanout.status_code == 200, fanout.text
    also = [event["mid"] for event in fanout.json()["events"]]
    assert len(also) == 50, fanout.json()

    handle.process.send_signal(signal.SIGTERM)
    code, before = await_close(client)
    assert code == 1001, "expected close code 1001 on SIGTERM, got %r" % code
    delivered = [m.get("mid") for m in before if m.get("channel") == "burst"]
    assert delivered == sent, "expected all 50 events delivered in order before close"
    status = exit_code(handle)
    log = handle.log()

    handle.start()
    app.login()
    stored = stored_mids(app, count=100)
    missing = [mid for mid in sent + also if mid not in stored]
    assert (
        not missing
    ), "expected all 100 events stored after restart, %d missing" % len(missing)
    assert stored == (sent + also)[::-1], "expected the 100 events newest first"
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
    sent = [app.publish("news", "headline %d" % i)["mid"] for i in range(3)]
    # the store answers reads after the writes queued before them
    assert stored_mids(app, channel="news") == sent[::-1]

    handle.restart()

    # apps: the same credentials log in
    app.login()
    assert app.request("GET", "apps/" + app.ident).status_code == 200

    # subscriptions
    listed = app.request(
        "GET", "subscriptions", params=dict(app.http.params, user_id="alice")
    )
    assert listed.status_code == 200, listed.text
    assert {"user_id": "alice", "event": "news"} in listed.json(), (
        "expected alice's subscription to news after restart, got %r" % listed.json()
    )

    # events: pusher:latest answers the stored ones, newest first
    client = app.socket()
    try:
        client.subscribe("news")
        client.send("pusher:latest", {"channel": "news"})
        reply = client.expect("pusher_internal:latest", "news")
        events = json.loads(reply["data"])["events"]
        assert [e["mid"] for e in events] == sent[
            ::-1
        ], "expected %r newest first, got %r" % (sent[::-1], events)
        assert [e["data"] for e in events] == ["headline 2", "headline 1", "headline 0"]

        # the personal channel still aliases news and carries its events
        personal = client.subscribe_signed("personal-alice")
        assert "news" in personal.get("alias", []), personal
        assert [e["mid"] for e in personal.get("events", [])] == sent[::-1], personal
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


def test_sigterm_flushes_a_large_backlog(start_server):
    """Writes acknowledged while publishers race the signal are all stored."""
    handle = start_server()
    app = AppClient(handle)
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def publisher(number: int) -> None:
        http = requests.Session()
        http.trust_env = False
        url = handle.api + "events"
        for call in range(100):
            try:
                response = http.post(
                    url,
                    params={"sid": app.sid},
                    json={
                        "channel": ["backlog-%d" % i for i in range(100)],
                        "data": "publisher %d call %d" % (number, call),
                    },
                    timeout=10,
                )
            except requests.RequestException:
                return  # the server went away mid-call: nothing acknowledged
            if response.status_code != 200:
                return
            with lock:
                acknowledged.extend(e["mid"] for e in response.json()["events"])
                if len(acknowledged) >= 2000:
                    enough.set()
        enough.set()

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), "expected 2000 acknowledged events, got %d" % len(
        acknowledged
    )
    handle.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    status = exit_code(handle)
    log = handle.log()
    with lock:
        sent = list(acknowledged)

    handle.start()
    app.login()
    stored: set[str] = set()
    for skip in range(0, len(sent) + 100, 100):
        page = stored_mids(app, count=100, skip=skip)
        stored.update(page)
        if len(page) < 100:
            break
    missing = set(sent) - stored
    assert not missing, "expected all %d acknowledged events stored, %d missing" % (
        len(sent),
        len(missing),
    )
    assert status == 0, "expected exit code 0 on SIGTERM, got %r:\n%s" % (
        status,
        log[-3000:],
    )
