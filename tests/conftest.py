"""Fixtures: the real Pushi process on free loopback ports, and real clients.

The store under test follows `MONGO_URL`: unset, the embedded store in a temporary
directory; set, MongoDB at that URL with a database of its own for each server.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests
from websockets.sync.client import connect as ws_connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSL_DIR = os.path.join(ROOT, "extras", "ssl")
STARTUP_SECONDS = 30
WAIT_SECONDS = 5.0


def free_port() -> int:
    """A TCP port nobody listens on right now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mongo_url(database: str) -> str | None:
    """MONGO_URL from the environment, pointed at a database of our own."""
    base = os.environ.get("MONGO_URL")
    if not base:
        return None
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


class Server:
    """One `python -m pushi.base` process, started and stopped by a test."""

    module = "pushi.base"

    def __init__(self, data_dir: str, env: dict | None = None) -> None:
        self.data_dir = data_dir
        self.database = "pushi_test_" + secrets.token_hex(4)
        self.extra_env = dict(env or {})
        self.app_port = free_port()
        self.server_port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(data_dir, "server.log")

    @property
    def api(self) -> str:
        """Base URL of the REST API, with its trailing slash."""
        scheme = "https" if self.extra_env.get("APP_SSL") == "1" else "http"
        return "%s://127.0.0.1:%d/" % (scheme, self.app_port)

    def ws_url(self, path: str) -> str:
        """URL of the WebSocket endpoint for a path (an app key, say)."""
        scheme = "wss" if self.extra_env.get("SERVER_SSL") == "1" else "ws"
        return "%s://127.0.0.1:%d/%s" % (scheme, self.server_port, path)

    def environment(self) -> dict:
        """The process environment: ports, data directory, store."""
        env = {k: v for k, v in os.environ.items() if k != "MONGO_URL"}
        env.update(
            APP_HOST="127.0.0.1",
            APP_PORT=str(self.app_port),
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.server_port),
            PUSHI_DATA=os.path.join(self.data_dir, "store"),
            PYTHONUNBUFFERED="1",
        )
        url = mongo_url(self.database)
        if url:
            env["MONGO_URL"] = url
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        """The command line that starts the process (`-m` of `module`)."""
        return [sys.executable, "-m", self.module]

    def workdir(self) -> str:
        """The directory the process starts in."""
        return self.data_dir

    def start(self) -> "Server":
        """Starts the process and waits until it answers `/health/ready`."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir(),
        )
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("server exited at start:\n" + self.log())
            try:
                response = requests.get(
                    self.api + "health/ready", timeout=1, verify=False
                )
                if response.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)  # polling a starting process: no event to await
        self.stop()
        raise AssertionError("server did not become ready:\n" + self.log())

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stops the process with a signal and returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code, self.process = self.process.returncode, None
        return code

    def restart(self) -> "Server":
        """Stops and starts again on the same ports and data."""
        self.stop()
        return self.start()

    def log(self) -> str:
        """What the process printed so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return file.read()


class AppClient:
    """An app registered on a server, with a logged-in REST session."""

    def __init__(self, server: Server, name: str = "test") -> None:
        self.server = server
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False  # CA bundle variables would override verify
        # app names are unique on a server (contract §2): each gets a suffix
        self.name = "%s-%s" % (name, secrets.token_hex(4))
        created = self.http.post(server.api + "apps", json={"name": self.name})
        assert created.status_code == 200, created.text
        self.info = created.json()
        self.ident = self.info["ident"]
        self.key = self.info["key"]
        self.secret = self.info["secret"]
        self.login()

    def login(self) -> str:
        """Opens a REST session for the app; its token rides along afterwards."""
        response = self.http.get(
            self.server.api + "login",
            params=dict(app_id=self.ident, app_key=self.key, app_secret=self.secret),
        )
        assert response.status_code == 200, response.text
        self.sid = response.json()["token"]
        self.http.params = {"sid": self.sid}
        return self.sid

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """A REST call on this app's session."""
        return self.http.request(method, self.server.api + path, timeout=10, **kwargs)

    def publish(self, channel="global", data="hello", event="message", **extra) -> dict:
        """`POST /events`, asserting success."""
        body = dict(channel=channel, data=data, event=event, **extra)
        response = self.request("POST", "events", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def subscribe_user(self, user_id: str, channel: str) -> dict:
        """`POST /subscriptions`, asserting success."""
        response = self.request(
            "POST", "subscriptions", json=dict(user_id=user_id, event=channel)
        )
        assert response.status_code == 200, response.text
        return response.json()

    def auth(
        self, socket_id: str, channel: str, channel_data: str | None = None
    ) -> str:
        """The signature a back end's auth endpoint would hand the client."""
        from pushi.base.auth import channel_auth

        return channel_auth(self.key, self.secret, socket_id, channel, channel_data)

    def socket(self, **kwargs) -> "Client":
        """A connected WebSocket client of this app."""
        return Client(self.server.ws_url(self.key), app=self, **kwargs)


class Client:
    """A real WebSocket client that awaits the messages a test expects."""

    def __init__(self, url: str, app: AppClient | None = None, **kwargs) -> None:
        self.app = app
        self.ws = ws_connect(url, open_timeout=WAIT_SECONDS, **kwargs).__enter__()
        self.seen: list[dict] = []
        established = self.expect("pusher:connection_established")
        self.socket_id = json.loads(established["data"])["socket_id"]

    def send(self, event: str, data=None, **fields) -> None:
        """Sends one protocol message."""
        message = dict(event=event, **fields)
        if data is not None:
            message["data"] = data
        self.ws.send(json.dumps(message))

    def next(self, timeout: float = WAIT_SECONDS) -> dict:
        """The next message, decoded."""
        message = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(message)
        return message

    def expect(
        self, event: str, channel: str | None = None, timeout=WAIT_SECONDS, **match
    ):
        """Reads until a message with that event (and channel, fields) comes."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            try:
                message = self.next(timeout=max(left, 0.001))
            except TimeoutError:
                raise AssertionError(
                    "expected %r on %r %r, got only %r"
                    % (event, channel, match, skipped)
                ) from None
            if (
                message.get("event") == event
                and (channel is None or message.get("channel") == channel)
                and all(message.get(k) == v for k, v in match.items())
            ):
                return message
            skipped.append(message)

    def expect_silence(self, timeout: float = 0.3) -> None:
        """Asserts nothing arrives for a while (use after a round trip proves order)."""
        try:
            message = self.next(timeout=timeout)
        except TimeoutError:
            return
        raise AssertionError("expected no message, got %r" % (message,))

    def roundtrip(self) -> None:
        """Waits for a ping's pong: everything sent before it was processed."""
        self.send("pusher:ping", {})
        self.expect("pusher:pong")

    def subscribe(
        self, channel: str, auth: str | None = None, channel_data=None
    ) -> dict:
        """Subscribes and returns the decoded success data (or fails)."""
        data = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        while True:
            message = self.next()
            if message.get("event") == "pusher:error":
                raise AssertionError("subscribe %s failed: %r" % (channel, message))
            if (
                message.get("event") == "pusher_internal:subscription_succeeded"
                and message.get("channel") == channel
            ):
                return json.loads(message["data"])

    def subscribe_signed(self, channel: str, channel_data: dict | None = None) -> dict:
        """Subscribes to a protected channel with a valid signature."""
        data_s = json.dumps(channel_data) if channel_data is not None else None
        return self.subscribe(
            channel, self.app.auth(self.socket_id, channel, data_s), data_s
        )

    def close(self) -> None:
        """Closes the connection."""
        self.ws.close()


def until_pong(client: Client) -> list[dict]:
    """Sends a ping and returns every message that came before its pong."""
    client.send("pusher:ping", {})
    got: list[dict] = []
    while True:
        try:
            message = client.next()
        except TimeoutError:
            raise AssertionError("expected pusher:pong, got only %r" % (got,)) from None
        if message.get("event") == "pusher:pong":
            return got
        got.append(message)


def assert_nothing(client: Client, what: str) -> None:
    """Asserts (by a round trip) that no message reached the socket."""
    got = until_pong(client)
    assert got == [], "expected no message for %s, got %r" % (what, got)


@pytest.fixture
def closing():
    """Clients to close after the test, whatever its outcome."""
    opened: list = []
    yield opened
    for client in opened:
        try:
            client.close()
        except Exception:  # already closed or broken: nothing left to free
            pass


def rss_kib(server: Server) -> int:
    """A server process's resident memory (VmRSS), in KiB."""
    with open("/proc/%d/status" % server.process.pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for the server")


def parse_response(received: bytes):
    """`(status, headers, body, rest)` of the first whole HTTP response in
    `received` (header names lower-case), or None while it is incomplete."""
    if b"\r\n\r\n" not in received:
        return None
    head, rest = received.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    if not 0 <= length <= len(rest):
        return None
    return int(lines[0].split(" ")[1]), headers, rest[:length], rest[length:]


def unique(prefix: str) -> str:
    """A name no other test uses (app names are unique on a server)."""
    return "%s-%s" % (prefix, secrets.token_hex(4))


@pytest.fixture
def connect(closing):
    """Opens WebSocket clients of an app (or of a URL), closed after the test."""

    def open_client(app_or_url) -> Client:
        if isinstance(app_or_url, str):
            client = Client(app_or_url)
        else:
            client = app_or_url.socket()
        closing.append(client)
        return client

    return open_client


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the whole session; tests isolate themselves by app."""
    handle = Server(str(tmp_path_factory.mktemp("pushi"))).start()
    yield handle
    handle.stop()


@pytest.fixture
def start_server(tmp_path):
    """Starts a private server (for restarts or special settings); stops it after."""
    started = []

    def start(env: dict | None = None, data_dir: str | None = None) -> Server:
        handle = Server(data_dir or str(tmp_path), env).start()
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def app(server) -> AppClient:
    """A fresh app on the shared server."""
    return AppClient(server)


@pytest.fixture
def other_app(server) -> AppClient:
    """A second app, to check isolation."""
    return AppClient(server, name="other")
