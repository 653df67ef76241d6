"""pushi.js in a real browser: headless Chromium against the real server.

Driver: Playwright (Python), on Debian's Chromium (`executable_path`), never a
browser Playwright downloads. Chosen over Selenium + chromedriver because its
`wait_for_function` awaits a JavaScript condition in the page (what every test
here does), it captures uncaught page errors, and one browser serves isolated
contexts with several tabs (two users chatting) without a driver process per tab.

Each test creates its own app. Pages come from a small HTTP server of the test
(`PageServer`, Python's http.server on a free loopback port) that fills in
tests/browser/*.html and implements a back end's `/auth` with
`pushi.base.auth.channel_auth`; pushi.js itself is loaded from the Pushi API at
`/static/js/pushi.js`, as applications load it.

Pages record every frame the server sends them (`wire`); when a test ends, the
frames of each page still open are checked against the contract's WebSocket
shapes (pushi-contract.md §3), and against what the original pushi.js reads of
every message (a `channel` string: it calls `json.channel.startsWith`).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest
import requests
from conftest import ROOT, AppClient, Server, free_port

from pushi.base.auth import channel_auth

CHROMIUM = os.environ.get("PUSHI_CHROMIUM", "/usr/bin/chromium")
# as root Chromium needs --no-sandbox; the rest keep it off the (closed) network
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PAGES_DIR = os.path.join(ROOT, "tests", "browser")
PUSHI_JS = os.path.join(ROOT, "src", "pushi", "app", "static", "js", "pushi.js")
EXTRAS_JS = os.path.join(ROOT, "extras", "js", "pushi.js")
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
WAIT_MS = 10_000
RESTART_WAIT_MS = 30_000


# -- the back end of the test pages ----------------------------------------------------


class PageServer:
    """Serves the test pages of one app and its auth endpoint, on loopback.

    `/auth` behaves like an application's back end: it signs `socket_id` and
    `channel_name` with the app secret, refuses channels named `*forbidden*`
    (403), and for presence channels answers `channel_data` of its own making
    (its own JSON spacing and an extra field), so a client that does not send
    the endpoint's string exactly as received fails the signature check.
    A real back end would take the user from its session; this one trusts the
    `channel_data` the page proposes.
    """

    def __init__(self, app: AppClient) -> None:
        self.app = app
        self.auth_requests: list[dict] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._page(self)

            def do_POST(self) -> None:
                owner._auth(self)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, page: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, page)

    def values(self) -> dict:
        server = self.app.server
        return {
            "{{APP_KEY}}": self.app.key,
            "{{BASE_URL}}": "ws://127.0.0.1:%d" % server.server_port,
            "{{PUSHI_JS}}": server.api + "static/js/pushi.js",
        }

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _reply(self, handler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def _page(self, handler) -> None:
        name = urllib.parse.urlsplit(handler.path).path.lstrip("/")
        path = os.path.join(PAGES_DIR, name)
        if "/" in name or not name.endswith(".html") or not os.path.isfile(path):
            self._reply(handler, 404, b"not found", "text/plain")
            return
        with open(path, encoding="utf-8") as file:
            text = file.read()
        for key, value in self.values().items():
            text = text.replace(key, value)
        self._reply(handler, 200, text.encode(), "text/html; charset=utf-8")

    def _auth(self, handler) -> None:
        if urllib.parse.urlsplit(handler.path).path != "/auth":
            self._reply(handler, 404, b"not found", "text/plain")
            return
        length = int(handler.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(
            handler.rfile.read(length).decode(), keep_blank_values=True
        )
        socket_id = form.get("socket_id", [""])[0]
        channel = form.get("channel_name", [""])[0]
        channel_data = form.get("channel_data", [None])[0]
        self.auth_requests.append(
            dict(
                socket_id=socket_id,
                channel=channel,
                channel_data=channel_data,
                content_type=handler.headers.get("Content-Type"),
            )
        )

        def answer(status: int, body: dict) -> None:
            self._reply(handler, status, json.dumps(body).encode(), "application/json")

        if not socket_id or not channel or "forbidden" in channel:
            answer(403, {"error": "forbidden"})
            return
        key, secret = self.app.key, self.app.secret
        if not channel.startswith("presence-"):
            answer(200, {"auth": channel_auth(key, secret, socket_id, channel)})
            return
        try:
            proposed = json.loads(channel_data or "")
            user_id = str(proposed["user_id"])
        except (ValueError, KeyError, TypeError):
            answer(400, {"error": "presence needs channel_data with a user_id"})
            return
        signed = {"user_id": user_id, "user_info": proposed.get("user_info") or {}}
        if proposed.get("peer"):
            signed["peer"] = True
        signed["via"] = "auth endpoint"
        data = json.dumps(signed, separators=(", ", ": "), sort_keys=True)
        answer(
            200,
            {
                "auth": channel_auth(key, secret, socket_id, channel, data),
                "channel_data": data,
            },
        )

    def auth_for(self, socket_id: str) -> dict[str, dict]:
        """The auth requests made with a socket id, by channel."""
        return {
            r["channel"]: r for r in self.auth_requests if r["socket_id"] == socket_id
        }


class FakePushi:
    """A scripted Pushi-dialect server: greets, pings, records, never answers pings."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.messages: queue.Queue = queue.Queue()
        self.connections = 0
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d" % self.port

    def _handle(self, websocket) -> None:
        self.connections += 1
        number = self.connections
        hello = {"socket_id": "1.%d" % number}  # like Pushi: no activity_timeout
        websocket.send(
            json.dumps(
                {"event": "pusher:connection_established", "data": json.dumps(hello)}
            )
        )
        websocket.send(json.dumps({"event": "pusher:ping", "data": {}}))
        try:
            for text in websocket:
                message = json.loads(text)
                message["connection"] = number
                self.messages.put(message)
        except Exception:  # the client dropped us: what the test is about
            pass

    def expect(self, event: str, timeout: float = WAIT_MS / 1000) -> dict:
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            try:
                message = self.messages.get(
                    timeout=max(deadline - time.monotonic(), 0.001)
                )
            except queue.Empty:
                raise AssertionError(
                    "expected %r from the client, got %r" % (event, skipped)
                ) from None
            if message.get("event") == event:
                return message
            skipped.append(message)

    def close(self) -> None:
        self.server.shutdown()


# -- browser fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (one for the session)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            "no Chromium at %s: apt-get install -y chromium chromium-driver" % CHROMIUM
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright is missing: pip install playwright (no browser download)"
        )
    with sync_playwright() as playwright:
        handle = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield handle
        handle.close()


REPLIES = (
    "pusher_internal:subscription_succeeded",
    "pusher_internal:unsubscription_succeeded",
    "pusher_internal:latest",
)
CHANNEL_INFO = ["alias", "events", "members", "name"]


def parsed(value):
    """A JSON string decoded, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def wire_problems(frames: list[dict]) -> list[str]:
    """What in the frames from the server a client of the contract could not read."""
    problems = []
    for index, frame in enumerate(frames):
        event = frame.get("event")
        where = "frame %d %r" % (index, frame)
        if event == "pusher:connection_established":
            hello = parsed(frame.get("data"))
            if not isinstance(hello, dict) or list(hello) != ["socket_id"]:
                problems.append(where + ": data is not {socket_id} string-encoded")
            continue
        if event == "pusher:pong":
            continue  # only an answer to our ping; the original pushi.js never pings
        if not isinstance(frame.get("channel"), str):
            problems.append(where + ": no channel string (pushi.js reads it)")
        if event in REPLIES:
            info = parsed(frame.get("data"))
            if not isinstance(info, dict) or sorted(info) != CHANNEL_INFO:
                problems.append(where + ": data is not {name, members, alias, events}")
        elif event in ("pusher:member_added", "pusher:member_removed"):
            member = parsed(frame.get("member"))
            if not isinstance(member, dict) or "user_id" not in member:
                problems.append(where + ": member is not channel_data string-encoded")
        elif event == "pusher:error":
            error = frame.get("data")
            if not (
                isinstance(error, dict)
                and isinstance(error.get("code"), int)
                and isinstance(error.get("message"), str)
            ):
                problems.append(where + ": data is not {code, message}")
    return problems


class Tabs:
    """One browser context (a fresh profile) and its tabs; records page errors
    and checks what the real server sent to each harness page still open."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.wire: list[str] = []

    def open(self, url: str):
        page = self.context.new_page()
        page.on(
            "pageerror", lambda error: self.errors.append("%s: %s" % (page.url, error))
        )
        page.goto(url)
        return page

    def close(self) -> None:
        for page in self.context.pages:
            try:
                frames = page.evaluate(
                    "() => typeof wire === 'object' && window.pushi"
                    " && pushi.baseUrl === BASE_URL ? wire : null"
                )
            except Exception as error:  # a page gone: nothing left to check
                frames = None
                self.errors.append("%s: %s" % (page.url, error))
            self.wire.extend(wire_problems(frames or []))
        self.context.close()


@pytest.fixture
def tabs(browser):
    """Tabs of a fresh browser profile; fails the test on an uncaught page error
    or on a frame from the server that the contract's clients could not read."""
    handle = Tabs(browser)
    yield handle
    handle.close()
    assert not handle.errors, "uncaught errors in the pages: %r" % handle.errors
    assert not handle.wire, "frames off the contract: %r" % handle.wire[:20]


def new_app(server: Server) -> AppClient:
    """An app of its own on a server (app names are unique)."""
    return AppClient(server, name="js-" + secrets.token_hex(6))


@pytest.fixture
def app(server) -> AppClient:
    """A fresh app on the shared server."""
    return new_app(server)


@pytest.fixture
def pages(app):
    """The test pages and auth endpoint of this test's app."""
    handle = PageServer(app)
    yield handle
    handle.close()


def wait(page, predicate: str, expected: str, arg=None, timeout: int = WAIT_MS):
    """Awaits a JavaScript condition in the page; fails saying what the page saw."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(
            predicate, arg=arg, timeout=timeout, polling=100
        )
        return handle.json_value()
    except PlaywrightTimeout:
        seen = page.evaluate(
            "() => JSON.stringify(typeof log === 'object' && Array.isArray(log)"
            " ? log : document.body.innerText)"
        )
        raise AssertionError(
            "expected %s; the page saw: %s" % (expected, seen[-4000:])
        ) from None


def until(condition, expected: str, timeout: float = WAIT_MS / 1000):
    """Awaits a condition checked from the test (the REST side), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("expected %s" % expected)
        time.sleep(0.05)  # polling the server over HTTP: nothing to await on


def harness(tabs: Tabs, pages: PageServer, script: str, arg=None):
    """A harness tab whose page ran `script` (a function taking `arg`)."""
    page = tabs.open(pages.url("harness.html"))
    page.evaluate(script, arg)
    return page


SUBSCRIBED = (
    "names => names.every(n => pushi.channel(n) && pushi.channel(n).subscribed)"
)
PEERS = "expected => JSON.stringify(peers()) === JSON.stringify(expected)"


def stored_events(app: AppClient) -> list[dict]:
    """The app's stored event records, newest first (`GET /events`)."""
    response = app.request("GET", "events", params={"count": 100})
    assert response.status_code == 200, response.text
    return response.json()["events"]


def stored(app: AppClient, what: str, **fields) -> dict:
    """Awaits the stored record whose delivered message has these fields."""

    def find():
        for record in stored_events(app):
            if all(record["data"].get(k) == v for k, v in fields.items()):
                return record
        return None

    return until(find, "a stored event with %r (%s)" % (fields, what))


def socket_channels(app: AppClient, socket_id: str) -> list[str]:
    """The channels the server has a socket in (`POST /sockets/<id>`)."""
    response = app.request("POST", "sockets/" + socket_id)
    assert response.status_code == 200, response.text
    return response.json()["channels"]


def server_peers(app: AppClient, page) -> list[str]:
    """The peer channels the server has a page's socket in, sorted."""
    socket_id = page.evaluate("() => pushi.socketId")
    return sorted(c for c in socket_channels(app, socket_id) if c.startswith("peer-"))


# -- serving ---------------------------------------------------------------------------


def test_api_serves_pushi_js_and_demo(server):
    """Appier serves app/static at /static; extras/js/pushi.js links to pushi.js."""
    response = requests.get(server.api + "static/js/pushi.js", timeout=10)
    assert response.status_code == 200, response.status_code
    assert "javascript" in response.headers.get("Content-Type", ""), response.headers
    with open(PUSHI_JS, "rb") as file:
        assert response.content == file.read()
    for name in ("index.html", "demo.js", "demo.css"):
        demo = requests.get(server.api + "static/demo/" + name, timeout=10)
        assert demo.status_code == 200, (name, demo.status_code)
    assert os.path.islink(EXTRAS_JS), "extras/js/pushi.js should be a symlink"
    assert os.readlink(EXTRAS_JS) == "../../src/pushi/app/static/js/pushi.js"
    with open(EXTRAS_JS, "rb") as link, open(PUSHI_JS, "rb") as canonical:
        assert link.read() == canonical.read()


def test_pushi_js_loads_with_require(pages, tabs):
    """The UMD wrapper exports the constructor to CommonJS (browser and Node)."""
    page = tabs.open(pages.url("harness.html"))
    result = page.evaluate(
        """async (url) => {
            const source = await (await fetch(url)).text();
            const module = { exports: {} };
            new Function("module", "exports", source)(module, module.exports);
            const Exported = module.exports;
            const client = new Exported("k".repeat(64),
                { autoConnect: false, channel: false });
            return [typeof Exported, Exported.VERSION, client.state,
                Exported === window.Pushi];
        }""",
        pages.app.server.api + "static/js/pushi.js",
    )
    assert result[0] == "function" and result[1] and result[2] == "initialized", result
    assert result[3] is False, "a CommonJS load must not need the global"
    node = shutil.which("node")
    if node:
        check = (
            "const Pushi = require(process.argv[1]);"
            "const p = new Pushi('k'.repeat(64), {autoConnect: false});"
            "if (typeof Pushi !== 'function' || !p.channel('global')) process.exit(1);"
        )
        done = subprocess.run(
            [node, "-e", check, PUSHI_JS], capture_output=True, timeout=30
        )
        assert done.returncode == 0, done.stderr.decode()


# -- connecting and receiving ----------------------------------------------------------


def test_quick_start_page_shows_rest_event(app, pages, tabs):
    """The README's page: `new Pushi(KEY, {baseUrl})` + bind("message") shows it."""
    page = tabs.open(pages.url("quickstart.html"))
    wait(
        page,
        "() => window.pushi && pushi.state === 'connected'"
        " && pushi.channel('global').subscribed",
        "the quick start page connected and subscribed to 'global'",
    )
    app.publish(data="hello world")
    wait(
        page,
        "() => document.getElementById('message').textContent === 'hello world'",
        "'hello world' on the page",
    )


def test_connection_and_replies_have_the_contract_shapes(app, pages, tabs):
    """The socket id is a uuid4; replies carry exactly name, members, alias, events."""
    page = harness(tabs, pages, "() => { open(); watch(pushi.subscribe('news')); }")
    wait(page, SUBSCRIBED, "'global' and 'news' subscribed", ["global", "news"])
    socket_id = page.evaluate("() => pushi.socketId")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        socket_id,
    ), socket_id
    info = page.evaluate(
        "() => log.find(e => e.source === 'channel:news'"
        " && e.event === 'subscribed').data"
    )
    assert info == {"name": "news", "members": {}, "alias": [], "events": []}, info
    # no activity_timeout from the server: the client pings after 120 s of silence
    assert page.evaluate("() => pushi._activityTimeout") == 120_000


def test_channel_events_json_latest_and_unsubscribe(app, pages, tabs):
    """Channel handlers, JSON decoding, client events, `latest`, leaving a channel."""
    page = harness(tabs, pages, "() => { open(); watch(pushi.subscribe('news')); }")
    wait(page, SUBSCRIBED, "'global' and 'news' subscribed", ["global", "news"])
    app.publish(
        channel="news", event="update", data={"n": 1, "text": "héllo"}, tag="first"
    )
    message = wait(
        page,
        """() => { const e = log.find(e => e.source === 'channel:news'
                && e.event === 'update');
            return e && e; }""",
        "the JSON event on the channel's handler",
    )
    assert message["data"] == {"n": 1, "text": "héllo"}, message
    assert message["channel"] == "news", message
    # REST events echo the whole body: the extra `tag` too, plus mid and timestamp
    meta = message["message"]
    assert meta["tag"] == "first" and meta["channel"] == "news", meta
    assert isinstance(meta["mid"], str) and isinstance(meta["timestamp"], float), meta
    frame = page.evaluate(
        "() => wire.find(f => f.event === 'update' && f.channel === 'news')"
    )
    # on the wire: Python's json.dumps defaults, that clients compare as strings
    assert frame["data"] == json.dumps({"n": 1, "text": "héllo"}), frame
    record = stored(app, "the REST event", event="update", tag="first")
    assert record["mid"] == meta["mid"], (record, meta)
    wait(
        page,
        "() => seen(e => e.source === 'global' && e.event === 'update'"
        " && e.channel === 'news')",
        "the event on the global handler too, with its channel",
    )
    app.publish(channel="news", event="update", data="plain text")
    wait(
        page,
        "() => seen(e => e.source === 'channel:news' && e.data === 'plain text')",
        "a string that is not JSON delivered as the string",
    )
    sent = page.evaluate("() => pushi.channel('news').send('note', {x: 2}, true)")
    assert sent is True
    echoed = wait(
        page,
        "() => { const e = log.find(e => e.source === 'channel:news'"
        " && e.event === 'note'); return e && e.message; }",
        "the echoed client event",
    )
    assert sorted(echoed) == ["channel", "data", "event", "mid", "timestamp"], echoed
    assert echoed["data"] == {"x": 2}, echoed
    # stored events, newest first (ask until the store has written all three)
    events = wait(
        page,
        """() => {
            pushi.channel('news').latest(0, 10, events => { window.latest = events; });
            return window.latest && window.latest.length >= 3 && window.latest;
        }""",
        "three stored events from latest()",
    )
    assert [e["event"] for e in events[:3]] == ["note", "update", "update"], events
    assert events[0]["data"] == {"x": 2} and events[2]["data"]["n"] == 1, events
    assert events[2]["tag"] == "first" and events[2]["mid"] == meta["mid"], events
    # each keeps the stored record: its id, the sender's socket (null for REST)
    socket_id = page.evaluate("() => pushi.socketId")
    records = [e["record"] for e in events[:3]]
    assert [r["owner_id"] for r in records] == [socket_id, None, None], records
    assert records[0]["id"] > records[1]["id"] > records[2]["id"], records
    assert records[0]["data"]["data"] == json.dumps({"x": 2}), records[0]

    # leaving: the server drops the socket from the channel
    page.evaluate("() => pushi.unsubscribe('news')")
    until(
        lambda: "news" not in socket_channels(app, socket_id),
        "the socket to have left 'news'",
    )
    app.publish(channel="news", event="update", data="after leaving")
    app.publish(channel="global", event="message", data="marker")
    wait(page, "() => seen(e => e.data === 'marker')", "the marker on 'global'")
    assert not page.evaluate("() => seen(e => e.data === 'after leaving')")
    assert page.evaluate(
        "() => wire.some(f => f.event === 'pusher_internal:unsubscription_succeeded'"
        " && f.channel === 'news')"
    ), "the server confirmed the unsubscription"


def test_names_that_are_object_properties(app, pages, tabs):
    """Channel, event and user names like __proto__ or constructor are just names."""
    page = harness(
        tabs,
        pages,
        """() => { open({channel: false}); watch(pushi.subscribe('__proto__'));
            watch(pushi.subscribe('presence-toString',
                {channelData: {user_id: '__proto__'}})); }""",
    )
    wait(page, SUBSCRIBED, "both channels", ["__proto__", "presence-toString"])
    app.publish(channel="__proto__", event="constructor", data="odd but valid")
    wait(
        page,
        "() => seen(e => e.source === 'channel:__proto__' && e.event === 'constructor'"
        " && e.data === 'odd but valid')",
        "the event named constructor on channel __proto__",
    )
    members = page.evaluate(
        "() => Object.keys(pushi.channel('presence-toString').members)"
    )
    assert members == ["__proto__"], members


def test_server_refusals_reach_the_channel_and_keep_the_connection(app, pages, tabs):
    """`pusher:error` names its channel ("" for none); the socket stays connected."""
    page = harness(
        tabs,
        pages,
        """() => {
            open({channel: false, authorizer: (request, callback) =>
                callback(null, {auth: APP_KEY + ':' + '0'.repeat(64)})});
            watch(pushi.subscribe('private-forged'));
        }""",
    )
    failure = wait(
        page,
        """() => { const e = log.find(e => e.source === 'channel:private-forged'
                && e.event === 'error');
            return e && pushi.channel('private-forged').state === 'failed' && e; }""",
        "the forged signature refused on its channel",
    )
    assert failure["data"]["code"] == 4009, failure
    assert failure["message"]["channel"] == "private-forged", failure
    socket_id = page.evaluate("() => pushi.socketId")
    assert "private-forged" not in socket_channels(app, socket_id)

    # a client event without a channel, one on a channel not joined, a ping
    page.evaluate("""() => {
            pushi._send({event: 'note', data: 'no channel'});
            pushi._send({event: 'note', channel: 'elsewhere', data: 'not joined'});
            pushi._send({event: 'pusher:ping', data: {}});
            watch(pushi.subscribe('news'));
        }""")
    wait(page, SUBSCRIBED, "a channel subscribed after the refusals", ["news"])
    errors = page.evaluate(
        "() => wire.filter(f => f.event === 'pusher:error').map(f => f.channel)"
    )
    assert errors == ["private-forged", "", "elsewhere"], errors
    assert page.evaluate(
        "() => seen(e => e.source === 'global' && e.event === 'error'"
        " && e.channel === null && e.data.code >= 4000)"
    ), "the channel-less error reaches the global handler"
    assert page.evaluate("() => wire.some(f => f.event === 'pusher:pong')")
    assert page.evaluate("() => pushi.socketId") == socket_id, "same connection"
    assert page.evaluate("() => pushi.state") == "connected"


def test_unknown_app_key_is_not_retried(pages, tabs):
    """4001 (unknown app) closes for good: an error event and no reconnection."""
    page = harness(tabs, pages, "key => open({}, key)", "0" * 64)
    wait(
        page,
        """() => seen(e => e.event === 'error' && e.data.code === 4001)
            && seen(e => e.event === 'disconnected' && e.data.reconnect === false)
            && pushi.state === 'disconnected' && !pushi.retrying""",
        "error 4001 and a disconnection without retry",
    )


def test_backoff_grows_with_jitter_and_stays_bounded(pages, tabs):
    """Failed attempts back off exponentially, jittered, never past maxDelay."""
    settings = {"minDelay": 20, "maxDelay": 160, "factor": 2, "jitter": 0.5}
    page = harness(
        tabs,
        pages,
        """([url, reconnect]) => open({baseUrl: url, channel: false, reconnect})""",
        ["ws://127.0.0.1:%d" % free_port(), settings],
    )
    delays = wait(
        page,
        """() => { const d = log.filter(e => e.event === 'disconnected')
                                .map(e => e.data.delay);
                   return d.length >= 8 && d; }""",
        "eight failed attempts against a closed port",
    )
    for attempt, delay in enumerate(delays):
        base = min(settings["maxDelay"], settings["minDelay"] * 2**attempt)
        assert base * (1 - settings["jitter"]) - 1 <= delay <= base, (attempt, delays)
    # still trying: a retry is scheduled, or the next attempt is under way
    assert page.evaluate(
        "() => pushi.state !== 'connected'"
        " && (pushi.retrying || pushi.state === 'connecting')"
    )
    page.evaluate("() => pushi.disconnect()")
    wait(
        page,
        "() => !pushi.retrying && pushi.state === 'disconnected'",
        "disconnect() to stop the retries",
    )


def test_answers_server_ping_and_pings_when_idle(pages, tabs):
    """pusher:ping gets pusher:pong; silence gets a ping; no pong: reconnect at once."""
    fake = FakePushi()
    try:
        page = harness(
            tabs,
            pages,
            """url => open({baseUrl: url, channel: false, timeout: 1000,
                            activityTimeout: 1000})""",
            fake.url,
        )
        fake.expect("pusher:pong")  # the answer to the server's ping
        fake.expect("pusher:ping")  # a second of silence: the client asks
        # the fake never answers: the client drops it and connects again
        until(lambda: fake.connections >= 2, "a new connection after the missing pong")
        wait(
            page,
            "() => seen(e => e.event === 'disconnected' && e.data.code === 4201"
            " && e.data.reconnect === true) && pushi.socketId === '1.2'",
            "a disconnection for the missing pong, then the second connection",
        )
    finally:
        fake.close()


# -- protected channels ----------------------------------------------------------------


def test_private_and_presence_through_auth_endpoint(app, pages, tabs):
    """Protected channels get their signature from `authEndpoint` (form POST)."""
    page = harness(
        tabs,
        pages,
        """() => {
            open();
            watch(pushi.subscribe('private-team'));
            watch(pushi.subscribe('presence-room',
                {channelData: {user_id: 'alice', user_info: {name: 'Alice'}}}));
            watch(pushi.subscribe('private-forbidden'));
        }""",
    )
    wait(
        page, SUBSCRIBED, "both channels subscribed", ["private-team", "presence-room"]
    )
    wait(
        page,
        """() => seen(e => e.source === 'channel:private-forbidden'
            && e.event === 'error' && e.data.status === 403)
            && pushi.channel('private-forbidden').state === 'failed'""",
        "the refused channel failing with the endpoint's 403",
    )
    socket_id = page.evaluate("() => pushi.socketId")
    requests_ = pages.auth_for(socket_id)
    assert requests_["private-team"]["channel_data"] is None, requests_
    assert requests_["private-team"]["content_type"].startswith(
        "application/x-www-form-urlencoded"
    ), requests_
    proposed = json.loads(requests_["presence-room"]["channel_data"])
    assert proposed == {"user_id": "alice", "user_info": {"name": "Alice"}}, proposed
    assert "global" not in requests_, "public channels need no auth"

    room = page.evaluate(
        "() => { const c = pushi.channel('presence-room');"
        " return {members: c.members, userId: c.userId, me: c.me}; }"
    )
    assert room["userId"] == "alice", room
    assert room["members"]["alice"]["via"] == "auth endpoint", room
    assert room["members"]["alice"]["user_info"] == {"name": "Alice"}, room
    info = page.evaluate(
        "() => log.find(e => e.source === 'channel:presence-room'"
        " && e.event === 'subscribed').data"
    )
    assert sorted(info) == CHANNEL_INFO and info["alias"] == [], info
    assert info["members"]["alice"]["via"] == "auth endpoint", info

    app.publish(channel="private-team", data="secret plan")
    wait(
        page,
        "() => seen(e => e.source === 'channel:private-team'"
        " && e.data === 'secret plan')",
        "the private channel's event",
    )


def test_presence_member_events_between_two_pages(app, pages, tabs):
    """Two pages on one presence channel see each other arrive and leave."""
    join = """user => { open({channel: false});
        watch(pushi.subscribe('presence-lobby',
            {channelData: {user_id: user,
                           user_info: {name: user.toUpperCase()}}})); }"""
    alice = harness(tabs, pages, join, "alice")
    wait(alice, SUBSCRIBED, "alice on the lobby", ["presence-lobby"])
    bob = harness(tabs, pages, join, "bob")
    wait(
        bob,
        "() => { const c = pushi.channel('presence-lobby');"
        " return c.subscribed"
        " && Object.keys(c.members).sort().join() === 'alice,bob'; }",
        "bob seeing alice and himself",
    )
    wait(
        alice,
        """() => seen(e => e.source === 'channel:presence-lobby'
            && e.event === 'member_added' && e.data.user_id === 'bob'
            && e.data.user_info.name === 'BOB')
            && 'bob' in pushi.channel('presence-lobby').members""",
        "alice told that bob arrived",
    )
    bob.close()
    wait(
        alice,
        """() => seen(e => e.source === 'channel:presence-lobby'
            && e.event === 'member_removed' && e.data.user_id === 'bob')
            && Object.keys(pushi.channel('presence-lobby').members).join()
                === 'alice'""",
        "alice told that bob left",
    )
    assert alice.evaluate("() => peers()") == [], "no peer flag, no peer channel"


# -- peer channels -----------------------------------------------------------------


def test_peer_chat_between_two_pages(app, pages, tabs):
    """Presence with peer: true opens peer-<base>:alice&bob on both pages; they chat."""
    join = """user => { open({channel: false});
        watch(pushi.subscribe('presence-chat',
            {channelData: {user_id: user, peer: true}})); }"""
    peer = "peer-chat:alice&bob"
    alice = harness(tabs, pages, join, "alice")
    wait(alice, SUBSCRIBED, "alice on presence-chat", ["presence-chat"])
    bob = harness(tabs, pages, join, "bob")
    for page, me, other in ((alice, "alice", "bob"), (bob, "bob", "alice")):
        wait(
            page,
            """([peer, me, other]) => seen(e => e.event === 'peer'
                    && e.data.channel === peer)
                && pushi.channel(peer) && pushi.channel(peer).subscribed
                && pushi.channel(peer).implicit
                && pushi.channel(peer).userId === me
                && pushi.channel(peer).peerUser === other
                && pushi.channel(peer).presence === 'presence-chat'""",
            "%s given the peer channel with %s" % (me, other),
            [peer, me, other],
        )
        assert server_peers(app, page) == [peer], me
    # the server joined them without a word: no reply for the peer channel
    for page in (alice, bob):
        assert not page.evaluate(
            "p => wire.some(f => f.channel === p)", peer
        ), "a frame about the peer channel before any event"
    assert alice.evaluate("p => pushi.channel(p).send('chat', {text: 'hi bob'})", peer)
    line = wait(
        bob,
        """peer => { const e = log.find(e => e.source === 'channel:' + peer
                && e.event === 'chat' && e.data.text === 'hi bob');
            return e && e.message; }""",
        "bob receiving alice's line",
        peer,
    )
    assert sorted(line) == ["channel", "data", "event", "mid", "timestamp"], line
    assert bob.evaluate(
        "p => pushi.channel(p).send('chat', {text: 'hello alice'})", peer
    )
    wait(
        alice,
        """peer => seen(e => e.source === 'channel:' + peer && e.event === 'chat'
            && e.data.text === 'hello alice')""",
        "alice receiving bob's answer",
        peer,
    )
    assert not alice.evaluate(
        "() => seen(e => e.event === 'chat' && e.data.text === 'hi bob')"
    ), "without echo the sender does not get its own line back"
    history = wait(
        alice,
        """peer => {
            pushi.channel(peer).latest(0, 10, e => { window.chatHistory = e; });
            const got = window.chatHistory;
            return got && got.length >= 2 && got;
        }""",
        "the conversation from latest()",
        peer,
    )
    assert [e["data"]["text"] for e in history[:2]] == [
        "hello alice",
        "hi bob",
    ], history
    senders = [page.evaluate("() => pushi.socketId") for page in (bob, alice)]
    assert [e["record"]["owner_id"] for e in history[:2]] == senders, history

    # leaving the presence channel leaves the pair, on both sides (alice flagged)
    alice.evaluate("() => pushi.unsubscribe('presence-chat')")
    wait(
        bob,
        """peer => seen(e => e.source === 'channel:' + peer
            && e.event === 'unsubscribed') && !pushi.channel(peer)""",
        "bob out of the pair once alice left",
        peer,
    )
    assert alice.evaluate("() => peers()") == []
    assert server_peers(app, bob) == [] and server_peers(app, alice) == []


def test_peer_channels_follow_the_servers_rules(app, pages, tabs):
    """The server announces no peer join: each page derives its pairs from presence
    data, and holds exactly the pairs the server has its socket in."""
    join = """([user, peer]) => { open({channel: false});
        watch(pushi.subscribe('presence-team',
            {channelData: {user_id: user, peer: peer}})); }"""

    def agree(page, expected: list[str], what: str) -> None:
        wait(page, PEERS, what, expected)
        assert server_peers(app, page) == expected, what + " (on the server)"

    alice = harness(tabs, pages, join, ["alice", True])
    wait(alice, SUBSCRIBED, "alice on presence-team", ["presence-team"])
    agree(alice, [], "alice alone: no pair")

    # a joiner without the flag creates nothing, even with a flagged member there
    bob = harness(tabs, pages, join, ["bob", False])
    wait(bob, SUBSCRIBED, "bob on presence-team", ["presence-team"])
    wait(
        alice,
        "() => seen(e => e.event === 'member_added' && e.data.user_id === 'bob')",
        "alice told that bob arrived",
    )
    agree(bob, [], "bob (no flag) in no pair")
    agree(alice, [], "alice in no pair with bob")

    # a flagged joiner pairs with every member, flagged or not
    carol = harness(tabs, pages, join, ["carol", True])
    agree(
        carol,
        ["peer-team:alice&carol", "peer-team:bob&carol"],
        "carol paired with alice and bob",
    )
    agree(alice, ["peer-team:alice&carol"], "alice paired with carol")
    agree(bob, ["peer-team:bob&carol"], "bob (no flag) paired with carol")
    events = carol.evaluate(
        "() => log.filter(e => e.source === 'global' && e.event === 'peer')"
        ".map(e => e.data.channel)"
    )
    assert sorted(events) == ["peer-team:alice&carol", "peer-team:bob&carol"], events

    assert carol.evaluate(
        "() => pushi.channel('peer-team:bob&carol').send('chat', 'psst')"
    )
    wait(
        bob,
        "() => seen(e => e.source === 'channel:peer-team:bob&carol'"
        " && e.data === 'psst')",
        "bob reading carol's line on their pair",
    )
    assert not alice.evaluate("() => seen(e => e.data === 'psst')")

    # an unflagged user leaving: the flagged ones keep the pair
    bob.close()
    wait(
        carol,
        "() => seen(e => e.event === 'member_removed' && e.data.user_id === 'bob')",
        "carol told that bob left",
    )
    agree(
        carol,
        ["peer-team:alice&carol", "peer-team:bob&carol"],
        "carol keeping her pairs after bob (no flag) left",
    )

    # a flagged user leaving: the others leave its pairs
    carol.evaluate("() => pushi.unsubscribe('presence-team')")
    wait(
        alice,
        "() => seen(e => e.event === 'member_removed' && e.data.user_id === 'carol')",
        "alice told that carol left",
    )
    agree(alice, [], "alice out of the pair with carol")
    agree(carol, [], "carol out of her own pairs")
    assert alice.evaluate(
        "() => seen(e => e.source === 'channel:peer-team:alice&carol'"
        " && e.event === 'unsubscribed')"
    ), "the pair channel told it ended"


def test_peer_channel_names_follow_the_servers_rule(pages, tabs):
    """Ids sorted by code point (as Python sorts), 200 characters at most, no space."""
    page = tabs.open(pages.url("harness.html"))
    cases = [
        ("chat", "bob", "alice"),
        ("x", "\uffff", "\U0001f600"),
        ("x", "é", "z"),
        ("x", "a b", "c"),
        ("x", "\u00a0", "c"),
        ("x", "\ufeff", "c"),
        ("x", "same", "same"),
        ("x", "u" * 180, "v" * 10),
        ("x", "u" * 185, "v" * 10),
        ("x", "\U0001f600" * 150, "a"),
    ]
    expected = []
    for base, first, second in cases:
        a, b = sorted((first, second))
        name = "peer-%s:%s&%s" % (base, a, b)
        fit = first != second and len(name) <= 200
        expected.append(name if fit and not re.search(r"[\s\x00-\x1f]", name) else None)
    got = page.evaluate(
        "cases => cases.map(([b, x, y]) => Pushi.peerChannel('presence-' + b, x, y))",
        [list(case) for case in cases],
    )
    assert got == expected, list(zip(cases, got, expected, strict=True))


# -- personal channels ---------------------------------------------------------------


def test_personal_channel_delivers_history_and_live_events(app, pages, tabs):
    """History since each subscription arrives on connect; live ones follow, also on
    channels subscribed while connected; no reply per alias."""
    app.publish(channel="news", data={"headline": "before the subscription"})
    stored(app, "the early event", channel="news")
    app.subscribe_user("carol", "news")
    app.subscribe_user("carol", "sports")
    app.publish(channel="news", data={"headline": "while you were away"})
    away = stored(
        app, "the news while away", data=json.dumps({"headline": "while you were away"})
    )
    app.publish(channel="sports", data="a goal")
    goal = stored(app, "the sports while away", channel="sports")
    page = harness(
        tabs,
        pages,
        "() => { open({channel: false}); watch(pushi.subscribe('personal-carol')); }",
    )
    wait(
        page,
        """mid => seen(e => e.source === 'channel:personal-carol'
            && e.event === 'message' && e.channel === 'news'
            && e.data.headline === 'while you were away'
            && e.message.stored === true && e.message.mid === mid)
            && seen(e => e.source === 'channel:personal-carol'
                && e.data === 'a goal')""",
        "the events stored while away replayed on the personal channel",
        away["mid"],
    )
    order = page.evaluate(
        "() => log.filter(e => e.source === 'channel:personal-carol'"
        " && e.message && e.message.stored).map(e => e.channel)"
    )
    assert order == ["news", "sports"], "replayed oldest first: %r" % order
    assert not page.evaluate(
        "() => seen(e => e.data && e.data.headline === 'before the subscription')"
    ), "history starts at the subscription"
    channel = page.evaluate(
        "() => { const c = pushi.channel('personal-carol');"
        " return {aliases: c.aliases, news: !!pushi.channel('news')}; }"
    )
    assert channel == {"aliases": ["news", "sports"], "news": False}, channel
    info = page.evaluate(
        "() => log.find(e => e.source === 'channel:personal-carol'"
        " && e.event === 'subscribed').data"
    )
    assert sorted(info) == CHANNEL_INFO and info["alias"] == ["news", "sports"], info
    assert [e["mid"] for e in info["events"]] == [goal["mid"], away["mid"]], info
    assert info["events"][1]["data"]["channel"] == "news", info
    replies = page.evaluate(
        "() => wire.filter(f => f.event.indexOf('pusher_internal:') === 0)"
        ".map(f => f.channel)"
    )
    assert replies == ["personal-carol"], "one reply, none per alias: %r" % replies
    assert pages.auth_for(page.evaluate("() => pushi.socketId"))["personal-carol"]

    app.publish(channel="news", data={"headline": "live"})
    wait(
        page,
        """() => seen(e => e.source === 'channel:personal-carol'
            && e.channel === 'news' && e.data.headline === 'live'
            && !e.message.stored)""",
        "a live event of the aliased channel on the personal channel",
    )
    # a subscription made while connected applies to the live socket at once
    app.subscribe_user("carol", "weather")
    app.publish(channel="weather", data="sunny")
    wait(
        page,
        """() => seen(e => e.source === 'channel:personal-carol'
            && e.channel === 'weather' && e.data === 'sunny')""",
        "the event of a channel subscribed while connected",
    )
    count = page.evaluate(
        "() => log.filter(e => e.source === 'global' && e.data"
        " && e.data.headline === 'while you were away').length"
    )
    assert count == 1, "the stored event is delivered once"


# -- reconnecting ----------------------------------------------------------------------


def test_reconnect_after_server_restart(start_server, tabs):
    """A restart drops the socket; the client reconnects, re-auths and re-subscribes."""
    server: Server = start_server()
    app = new_app(server)
    pages = PageServer(app)
    try:
        page = harness(
            tabs,
            pages,
            """() => {
                open();
                watch(pushi.subscribe('news'));
                watch(pushi.subscribe('private-ops'));
                watch(pushi.subscribe('presence-ops',
                    {channelData: {user_id: 'dana'}}));
            }""",
        )
        names = ["global", "news", "private-ops", "presence-ops"]
        wait(page, SUBSCRIBED, "every channel subscribed", names)
        first = page.evaluate("() => pushi.socketId")

        server.restart()
        app.login()  # REST sessions live in the server's memory

        wait(
            page,
            """([first, names]) => pushi.state === 'connected' && pushi.socketId
                && pushi.socketId !== first && seen(e => e.event === 'disconnected')
                && names.every(n => pushi.channel(n).subscribed)""",
            "a new connection with every channel subscribed again",
            [first, names],
            timeout=RESTART_WAIT_MS,
        )
        second = page.evaluate("() => pushi.socketId")
        fresh = pages.auth_for(second)
        assert {"private-ops", "presence-ops"} <= set(fresh), pages.auth_requests
        members = page.evaluate(
            "() => Object.keys(pushi.channel('presence-ops').members)"
        )
        assert members == ["dana"], members

        app.publish(channel="private-ops", data="after the restart")
        app.publish(channel="news", data="news after the restart")
        wait(
            page,
            """() => seen(e => e.source === 'channel:private-ops'
                    && e.data === 'after the restart')
                && seen(e => e.source === 'channel:news'
                    && e.data === 'news after the restart')""",
            "new events on the re-subscribed channels",
        )
    finally:
        pages.close()


# -- the demo page ---------------------------------------------------------------------


def test_demo_signs_like_the_server(app, tabs):
    """The demo's local-only HMAC (WebCrypto and its fallback) matches the server's."""
    page = tabs.open(app.server.api + "static/demo/index.html")
    cases = [
        (app.secret, "123.456:private-x"),
        ("k" * 100, "1.2:presence-room:" + json.dumps({"user_id": "é"})),
        ("short", "x" * 55),
        ("short", "x" * 56),
        ("short", "y" * 64),
        ("", "z" * 119),
    ]
    for key, message in cases:
        expected = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
        got = page.evaluate(
            "([k, m]) => Promise.all("
            "[PushiDemo.hmacHex(k, m), PushiDemo.hmacHex(k, m, true)])",
            [key, message],
        )
        assert got == [expected, expected], (key, message, got)


def test_demo_page_chat_between_two_tabs(app, tabs):
    """The demo: connect, presence, peer chat between two tabs, events; screenshot."""
    server = app.server
    query = urllib.parse.urlencode(
        {"key": app.key, "url": "ws://127.0.0.1:%d" % server.server_port}
    )
    url = server.api + "static/demo/index.html?" + query
    alice, bob = tabs.open(url), tabs.open(url)
    for page, user, name in ((alice, "alice", "Alice"), (bob, "bob", "Bob")):
        page.fill("#app-secret", app.secret)
        page.fill("#user-id", user)
        page.fill("#user-name", name)
        page.click("#connect")
        wait(
            page,
            "() => document.getElementById('status').textContent === 'connected'",
            "%s connected" % user,
        )
        page.fill("#channel-name", "presence-lobby")
        page.click("#subscribe")
    wait(
        alice,
        "() => document.querySelector('#presence li[data-user=\"bob\"]')"
        " && document.querySelector('#chat-peers button')"
        " && !document.getElementById('chat-text').disabled",
        "alice seeing bob present and a chat with him",
    )
    wait(
        bob,
        "() => document.querySelector('#presence li[data-user=\"alice\"]')"
        " && !document.getElementById('chat-text').disabled",
        "bob seeing alice present and a chat with her",
    )
    alice.fill("#chat-text", "hi bob")
    alice.click("#chat-send")
    wait(
        bob,
        "() => document.getElementById('chat-log').innerText.includes('hi bob')",
        "bob reading alice's line",
    )
    bob.fill("#chat-text", "hello alice")
    bob.click("#chat-send")
    wait(
        alice,
        "() => document.getElementById('chat-log').innerText.includes('hello alice')",
        "alice reading bob's line",
    )

    app.publish(data="hello world")
    wait(
        alice,
        "() => document.getElementById('log').innerText.includes('hello world')",
        "the REST event in the log",
    )

    alice.fill("#publish-channel", "presence-lobby")
    alice.fill("#publish-event", "wave")
    alice.fill("#publish-data", '{"text": "waving from the demo"}')
    alice.click("#publish")
    wait(
        bob,
        "() => document.getElementById('log').innerText"
        ".includes('waving from the demo')",
        "bob seeing the client event",
    )

    os.makedirs(ARTIFACTS, exist_ok=True)
    alice.screenshot(path=os.path.join(ARTIFACTS, "demo.png"), full_page=True)

    # bob (peer chat on) goes: his chat with alice ends on her page
    bob.close()
    wait(
        alice,
        "() => !document.querySelector('#presence li[data-user=\"bob\"]')"
        " && !document.querySelector('#chat-peers button')"
        " && document.getElementById('chat-text').disabled",
        "alice's page without bob and without the chat with him",
    )
