"""The RFC 6455 layer and the Pushi connection, against the real server.

Normal traffic goes through the `Client` helper (the websockets library); malformed
traffic through `RawSocket`, a hand-written client that builds frames byte by byte
and parses the server's frames, so the tests see exactly what travels on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import ssl
import struct

import pytest
import requests
from conftest import ROOT, WAIT_SECONDS, AppClient, Client, assert_nothing
from contract import is_uuid4
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CERT = os.path.join(ROOT, "extras", "ssl", "server.crt")
KEY = os.path.join(ROOT, "extras", "ssl", "server.key")


# -- a raw client ----------------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
) -> bytes:
    """One WebSocket frame as a client would send it (masked unless told not to)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
    if not mask:
        return header + payload
    key = secrets.token_bytes(4)
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return header + key + masked


def text(message, fin: bool = True) -> bytes:
    """A masked text frame holding a message (a dict is JSON-encoded)."""
    if not isinstance(message, (str, bytes)):
        message = json.dumps(message)
    if isinstance(message, str):
        message = message.encode("utf-8")
    return frame(OP_TEXT, message, fin=fin)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame."""
    return struct.pack("!H", code) + reason.encode("utf-8")


class RawSocket:
    """A TCP client that speaks WebSocket by hand, frame by frame."""

    def __init__(self, port: int, timeout: float = WAIT_SECONDS) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}

    # -- handshake ----------------------------------------------------------------

    def request(self, path: str, method: str = "GET", **headers: str | None) -> bytes:
        """Sends a handshake request; headers given as None are left out."""
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        fields = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        for name, value in headers.items():
            fields[name.replace("_", "-")] = value
        lines = ["%s /%s HTTP/1.1" % (method, path)]
        lines += ["%s: %s" % (k, v) for k, v in fields.items() if v is not None]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return key.encode()

    def read_response(self) -> int:
        """Reads the handshake response head; returns its status code."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self._recv()
            if not chunk:
                raise AssertionError(
                    "expected an HTTP response, the server closed after %r"
                    % self.buffer
                )
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.status

    def handshake(self, path: str) -> None:
        """Opens the WebSocket: request, 101, a valid `Sec-WebSocket-Accept`."""
        key = self.request(path)
        status = self.read_response()
        assert status == 101, "expected 101 Switching Protocols, got %d %r" % (
            status,
            self.headers,
        )
        accept = base64.b64encode(
            hashlib.sha1(key + WS_GUID.encode()).digest()
        ).decode()
        assert (
            self.headers.get("sec-websocket-accept") == accept
        ), "expected Sec-WebSocket-Accept %r, got %r" % (accept, self.headers)

    def open(self, path: str) -> str:
        """Handshake plus `pusher:connection_established`; returns the socket id."""
        self.handshake(path)
        message = self.message()
        assert (
            message.get("event") == "pusher:connection_established"
        ), "expected pusher:connection_established, got %r" % (message,)
        return json.loads(message["data"])["socket_id"]

    # -- frames -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Writes bytes as they are."""
        self.sock.sendall(data)

    def send_message(self, message) -> None:
        """Sends one message in one masked text frame."""
        self.send(text(message))

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            try:
                chunk = self._recv()
            except socket.timeout:
                raise AssertionError(
                    "expected %d more bytes of a frame, got none in %.1f s"
                    % (count - len(self.buffer), self.sock.gettimeout())
                ) from None
            if not chunk:
                raise EOFError("connection closed; unread bytes %r" % self.buffer)
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        """The next server frame: (fin, opcode, payload); server frames are unmasked."""
        first, second = self._exactly(2)
        assert first & 0x70 == 0, "server frame with RSV bits set: %#x" % first
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return bool(first & 0x80), first & 0x0F, self._exactly(length)

    def message(self) -> dict:
        """The next text message, decoded (fails on any other frame)."""
        fin, opcode, payload = self.read_frame()
        assert (
            opcode == OP_TEXT and fin
        ), "expected a text message, got opcode %d %r" % (
            opcode,
            payload,
        )
        return json.loads(payload.decode("utf-8"))

    def expect_close(self) -> tuple[int, str, list]:
        """Reads up to the server's close frame: (code, reason, frames before it)."""
        before = []
        while True:
            try:
                fin, opcode, payload = self.read_frame()
            except EOFError as error:
                raise AssertionError(
                    "expected a close frame, the connection ended after %r (%s)"
                    % (before, error)
                ) from None
            if opcode == OP_CLOSE:
                code = (
                    struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                )
                return code, payload[2:].decode("utf-8", "replace"), before
            before.append((opcode, payload))

    def expect_eof(self) -> bytes:
        """Waits (bounded by the socket timeout) until the server closes TCP."""
        received = self.buffer
        self.buffer = b""
        while True:
            try:
                chunk = self._recv()
            except socket.timeout:
                raise AssertionError(
                    "expected the server to close the connection within %.1f s, "
                    "it stayed open (received %r)" % (self.sock.gettimeout(), received)
                ) from None
            except OSError:
                return received
            if not chunk:
                return received
            received += chunk

    def close(self) -> None:
        """Closes the TCP socket."""
        self.sock.close()


def port_of(server) -> int:
    """The WebSocket port of a server handle."""
    return server.server_port


def assert_closed_with(raw: RawSocket, expected: int) -> list:
    """The server sends a close frame with `expected` and then closes TCP."""
    code, reason, before = raw.expect_close()
    assert (
        code == expected
    ), "expected close code %d, got %r (%r), frames before: %r" % (
        expected,
        code,
        reason,
        before,
    )
    raw.expect_eof()
    return before


@pytest.fixture
def raw(server):
    """A raw socket to the shared server, closed after the test."""
    handle = RawSocket(port_of(server))
    yield handle
    handle.close()


# -- connecting ------------------------------------------------------------------------


def test_connection_established_is_exactly_the_published_frame(app):
    """`{"event", "data": "{\"socket_id\": \"<uuid4>\"}"}`: no channel, no more."""
    with connect(app.server.ws_url(app.key), open_timeout=WAIT_SECONDS) as ws:
        message = json.loads(ws.recv(timeout=WAIT_SECONDS))
    assert sorted(message) == ["data", "event"], message
    assert message["event"] == "pusher:connection_established", message
    assert isinstance(message["data"], str), "data must be string-encoded: %r" % (
        message,
    )
    socket_id = json.loads(message["data"]).get("socket_id")
    assert is_uuid4(socket_id), "expected a uuid4 socket_id, got %r" % (message,)
    # json.dumps defaults: `": "`, and nothing but the socket id
    assert message["data"] == '{"socket_id": "%s"}' % socket_id, message


def test_nothing_comes_unprompted_after_connecting(app):
    client = app.socket()
    assert_nothing(client, "anything after pusher:connection_established")


def test_socket_ids_are_unique_across_connections(app):
    clients = [app.socket() for _ in range(20)]
    try:
        ids = [client.socket_id for client in clients]
        assert all(is_uuid4(i) for i in ids), ids
        assert len(set(ids)) == len(ids), (
            "expected 20 distinct socket ids, got %r" % ids
        )
    finally:
        for client in clients:
            client.close()


def test_the_key_is_the_text_after_the_last_slash(app):
    client = Client(app.server.ws_url("any/prefix/here/" + app.key))
    try:
        client.subscribe("prefixed")
        app.publish("prefixed", "through a prefixed path")
        assert client.expect("message", "prefixed")["data"] == "through a prefixed path"
    finally:
        client.close()


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_hex(32),
        secrets.token_hex(32).upper(),
        secrets.token_hex(32)[:63],
        secrets.token_hex(32) + "0",
        "not-a-key",
        "app/unknown",
        "",
    ],
    ids=[
        "well-formed-64-hex",
        "uppercase-64-hex",
        "63-chars",
        "65-chars",
        "garbage",
        "garbage-with-slash",
        "empty",
    ],
)
def test_unknown_app_key_gets_error_4001_then_close_4001(raw, app, key):
    """Contract §4.2: no connected message; the original drops or connects."""
    raw.handshake(key)
    message = raw.message()
    assert sorted(message) == ["channel", "data", "event"], message
    assert (message["event"], message["channel"]) == ("pusher:error", ""), message
    assert message["data"]["code"] == 4001, message
    assert isinstance(message["data"]["message"], str), message
    assert_closed_with(raw, 4001)


def test_the_key_of_another_path_segment_is_not_taken(raw, app):
    """The key must be the last segment: `/<key>/x` names the key `x`."""
    raw.handshake(app.key + "/x")
    message = raw.message()
    assert (message["event"], message["data"]["code"]) == ("pusher:error", 4001)
    assert_closed_with(raw, 4001)


def test_query_string_is_not_part_of_the_key(app):
    client = Client(app.server.ws_url(app.key + "?protocol=7&client=js&version=8.4"))
    try:
        assert is_uuid4(client.socket_id), client.socket_id
        client.subscribe("qs-channel")
        app.publish("qs-channel", "through a query-string url")
        got = client.expect("message", "qs-channel")
        assert got["data"] == "through a query-string url", got
    finally:
        client.close()


# -- control frames --------------------------------------------------------------------


def test_ping_frame_gets_pong_with_same_payload(raw, app):
    raw.open(app.key)
    payload = b"are-you-there-\x00\xff"
    raw.send(frame(OP_PING, payload))
    fin, opcode, got = raw.read_frame()
    assert (fin, opcode, got) == (
        True,
        OP_PONG,
        payload,
    ), "expected a pong frame with %r, got fin=%r opcode=%d payload=%r" % (
        payload,
        fin,
        opcode,
        got,
    )


@pytest.mark.parametrize(
    "message",
    [
        {"event": "pusher:ping", "data": {}},
        {"event": "pusher:ping"},
        {"event": "pusher_ping", "data": "anything"},
    ],
    ids=["colon", "no-data", "underscore"],
)
def test_pusher_ping_message_gets_pusher_pong(app, message):
    """Contract §4.3 (the original drops the connection)."""
    client = app.socket()
    try:
        client.ws.send(json.dumps(message))
        got = client.next()
        assert got == {"event": "pusher:pong", "data": {}}, got
        client.subscribe("after-ping")
    finally:
        client.close()


def test_close_handshake_answers_close_and_ends_tcp(raw, app):
    raw.open(app.key)
    raw.send(frame(OP_CLOSE, close_payload(1000, "bye")))
    code, reason, before = raw.expect_close()
    assert code == 1000, "expected the close frame to echo 1000, got %r %r" % (
        code,
        reason,
    )
    assert before == [], "expected nothing before the close, got %r" % before
    raw.expect_eof()


def test_close_handshake_through_websockets_client(app):
    client = app.socket()
    client.close()
    assert (
        client.ws.close_code == 1000
    ), "expected the server to answer the close with 1000, got %r (%r)" % (
        client.ws.close_code,
        client.ws.close_reason,
    )


# -- fragmentation ---------------------------------------------------------------------


def test_fragmented_subscribe_with_interleaved_ping_is_reassembled(raw, app):
    raw.open(app.key)
    message = json.dumps(
        {
            "event": "pusher:subscribe",
            "data": {"channel": "fragmented"},
            "note": "ünïcødé ✓ split",
        },
        ensure_ascii=False,
    ).encode("utf-8")
    # cut inside a multi-byte character too: reassembly works on bytes
    cut = message.index("ü".encode("utf-8")) + 1
    parts = [message[:20], message[20:cut], message[cut:]]
    raw.send(frame(OP_TEXT, parts[0], fin=False))
    raw.send(frame(OP_PING, b"between-fragments"))
    fin, opcode, payload = raw.read_frame()
    assert (opcode, payload) == (
        OP_PONG,
        b"between-fragments",
    ), "expected a pong while a message is in flight, got opcode %d %r" % (
        opcode,
        payload,
    )
    raw.send(frame(OP_CONTINUATION, parts[1], fin=False))
    raw.send(frame(OP_CONTINUATION, parts[2], fin=True))
    reply = raw.message()
    assert reply == {
        "event": "pusher_internal:subscription_succeeded",
        "data": '{"name": "fragmented", "members": {}, "alias": [], "events": []}',
        "channel": "fragmented",
    }, "expected the reassembled subscribe to succeed, got %r" % (reply,)
    # and the subscription is real: a publish reaches the raw socket
    app.publish("fragmented", "after fragments")
    delivered = raw.message()
    assert delivered.get("channel") == "fragmented", delivered
    assert delivered.get("data") == "after fragments", delivered


# -- protocol violations ---------------------------------------------------------------


def test_invalid_utf8_text_closes_1007(raw, app):
    raw.open(app.key)
    raw.send(frame(OP_TEXT, b'{"event":"pusher:ping","data":"\xff\xfe"}'))
    assert_closed_with(raw, 1007)


def test_invalid_utf8_split_across_fragments_closes_1007(raw, app):
    raw.open(app.key)
    raw.send(frame(OP_TEXT, b'{"event":"x","data":"\xc3', fin=False))
    raw.send(frame(OP_CONTINUATION, b'("}', fin=True))  # \xc3 then ( is not UTF-8
    assert_closed_with(raw, 1007)


PROTOCOL_ERRORS = {
    "unmasked-text": frame(OP_TEXT, b'{"event":"pusher:ping"}', mask=False),
    "rsv1-set": frame(OP_TEXT, b'{"event":"pusher:ping"}', rsv=0b100),
    "rsv3-set": frame(OP_TEXT, b'{"event":"pusher:ping"}', rsv=0b001),
    "reserved-data-opcode-3": frame(0x3, b"x"),
    "reserved-control-opcode-b": frame(0xB, b"x"),
    "continuation-without-start": frame(OP_CONTINUATION, b"x"),
    "fragmented-ping": frame(OP_PING, b"x", fin=False),
    "ping-over-125-bytes": frame(OP_PING, b"x" * 126),
}


@pytest.mark.parametrize(
    "bad", list(PROTOCOL_ERRORS.values()), ids=list(PROTOCOL_ERRORS)
)
def test_protocol_error_closes_1002(raw, app, bad):
    raw.open(app.key)
    raw.send(bad)
    assert_closed_with(raw, 1002)


def test_binary_message_closes_1003(raw, app):
    raw.open(app.key)
    raw.send(frame(OP_BINARY, b"\x00\x01binary"))
    assert_closed_with(raw, 1003)


def padded_ping(size: int) -> bytes:
    """A valid `pusher:ping` message of exactly `size` bytes."""
    head, tail = '{"event":"pusher:ping","data":"', '"}'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


def test_message_under_default_limit_is_handled(app):
    client = app.socket()
    try:
        client.ws.send(padded_ping(60 * 1024).decode())
        client.expect("pusher:pong")
    finally:
        client.close()


def test_message_over_default_limit_closes_1009(raw, app):
    raw.open(app.key)
    raw.send(frame(OP_TEXT, padded_ping(64 * 1024 + 1024)))
    assert_closed_with(raw, 1009)


@pytest.fixture
def small_server(start_server):
    """A private server that accepts messages of at most 1 KiB."""
    return start_server(env={"PUSHI_MAX_MESSAGE": "1024"})


def test_configured_limit_accepts_512_bytes(small_server):
    app = AppClient(small_server)
    client = app.socket()
    try:
        client.ws.send(padded_ping(512).decode())
        client.expect("pusher:pong")
    finally:
        client.close()


def test_configured_limit_refuses_2k_with_1009(small_server):
    app = AppClient(small_server)
    raw = RawSocket(port_of(small_server))
    try:
        raw.open(app.key)
        raw.send(frame(OP_TEXT, padded_ping(2048)))
        assert_closed_with(raw, 1009)
    finally:
        raw.close()


def test_configured_limit_counts_all_fragments(small_server):
    app = AppClient(small_server)
    raw = RawSocket(port_of(small_server))
    try:
        raw.open(app.key)
        message = padded_ping(1800)
        raw.send(frame(OP_TEXT, message[:600], fin=False))
        raw.send(frame(OP_CONTINUATION, message[600:1200], fin=False))
        raw.send(frame(OP_CONTINUATION, message[1200:], fin=True))
        assert_closed_with(raw, 1009)
    finally:
        raw.close()


# -- bad messages keep the connection (contract §4.1) ----------------------------------


@pytest.mark.parametrize(
    "payload,channel",
    [
        ("{not json", ""),
        ("[1, 2, 3]", ""),
        ('"text"', ""),
        ('{"data": {"channel": "x"}}', ""),
        ('{"event": 5}', ""),
        ('{"event": "pusher:subscribe"}', ""),
        ('{"event": "pusher:subscribe", "data": 5}', ""),
        ('{"event": "pusher:subscribe", "data": "not json"}', ""),
        ('{"event": "pusher:subscribe", "data": {}}', ""),
        ('{"event": "pusher:latest", "data": []}', ""),
        ('{"event": "chat"}', ""),
        ('{"event": "chat", "data": "no channel"}', ""),
        ('{"event": "chat", "channel": "room"}', "room"),
    ],
    ids=[
        "malformed-json",
        "json-array",
        "json-string",
        "no-event",
        "event-not-string",
        "subscribe-no-data",
        "subscribe-data-number",
        "subscribe-data-not-json",
        "subscribe-no-channel",
        "latest-data-array",
        "client-event-nothing",
        "client-event-no-channel",
        "client-event-no-data",
    ],
)
def test_bad_message_gets_an_error_and_the_connection_stays(app, payload, channel):
    client = app.socket()
    try:
        client.ws.send(payload)
        message = client.next()
        assert sorted(message) == ["channel", "data", "event"], message
        assert (message["event"], message["channel"]) == (
            "pusher:error",
            channel,
        ), "expected pusher:error on %r for %r, got %r" % (channel, payload, message)
        assert sorted(message["data"]) == ["code", "message"], message
        assert message["data"]["code"] == 4000, "expected code 4000 for %r, got %r" % (
            payload,
            message,
        )
        assert isinstance(message["data"]["message"], str), message
        assert_nothing(client, "more than one answer to %r" % payload)
        client.subscribe("still-here")
        app.publish("still-here", "alive")
        assert client.expect("message", "still-here")["data"] == "alive"
    finally:
        client.close()


# -- handshakes ------------------------------------------------------------------------


def read_http_rejection(raw: RawSocket) -> tuple[int, dict]:
    """A refused handshake: a non-101 response, then the server closes TCP."""
    status = raw.read_response()
    raw.expect_eof()
    return status, raw.headers


@pytest.mark.parametrize(
    "method,headers",
    [
        ("POST", {}),
        ("GET", {"Upgrade": None}),
        ("GET", {"Upgrade": "h2c"}),
        ("GET", {"Connection": None}),
        ("GET", {"Sec-WebSocket-Key": None}),
        ("GET", {"Sec-WebSocket-Version": "8"}),
    ],
    ids=[
        "post",
        "no-upgrade",
        "upgrade-not-websocket",
        "no-connection-upgrade",
        "no-key",
        "version-8",
    ],
)
def test_bad_handshake_gets_4xx_and_close(raw, app, method, headers):
    raw.request(app.key, method=method, **headers)
    status, got = read_http_rejection(raw)
    assert 400 <= status < 500, "expected an HTTP 4xx, got %d %r" % (status, got)


def test_unsupported_version_names_version_13(raw, app):
    raw.request(app.key, **{"Sec-WebSocket-Version": "8"})
    status, headers = read_http_rejection(raw)
    assert status == 426, "expected 426 Upgrade Required, got %d %r" % (status, headers)
    assert headers.get("sec-websocket-version") == "13", (
        "expected the response to name version 13, got %r" % headers
    )


def test_oversized_handshake_is_refused(raw, app):
    raw.request(app.key, **{"X-Filler": "a" * (64 * 1024)})
    try:
        status = raw.read_response()
    except AssertionError:
        status = None  # closed without an answer: refused all the same
    assert status != 101, "expected a 64 KiB handshake to be refused, got 101"
    if status is not None:
        assert 400 <= status < 500, "expected an HTTP 4xx, got %d" % status
    raw.expect_eof()


def test_idle_and_partial_handshakes_time_out(start_server):
    timed = start_server(env={"PUSHI_HANDSHAKE_TIMEOUT": "0.5"})
    app = AppClient(timed)
    upgraded = app.socket()
    silent = RawSocket(port_of(timed), timeout=10)
    partial = RawSocket(port_of(timed), timeout=10)
    try:
        partial.send(("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % app.key).encode())
        silent.expect_eof()
        partial.expect_eof()
        # a finished handshake is not subject to the timer
        upgraded.roundtrip()
    finally:
        silent.close()
        partial.close()
        upgraded.close()


# -- TLS -------------------------------------------------------------------------------


def test_wss_and_https_with_verified_certificate(start_server):
    assert os.path.exists(CERT) and os.path.exists(
        KEY
    ), "expected the sample TLS files in extras/ssl"
    secure = start_server(
        env={
            "SERVER_SSL": "1",
            "SERVER_SSL_KEY": KEY,
            "SERVER_SSL_CER": CERT,
            "APP_SSL": "1",
            "APP_SSL_KEY": KEY,
            "APP_SSL_CER": CERT,
        }
    )
    assert secure.api.startswith("https://") and secure.ws_url("x").startswith("wss://")

    # verify=CERT on every request: a Session-level verify loses to REQUESTS_CA_BUNDLE
    def call(method, path, **kwargs):
        return requests.request(
            method, secure.api + path, verify=CERT, timeout=10, **kwargs
        )

    created = call("POST", "apps", json={"name": "tls"})
    assert created.status_code == 200, created.text
    app = created.json()
    login = call(
        "GET",
        "login",
        params=dict(app_id=app["ident"], app_key=app["key"], app_secret=app["secret"]),
    )
    assert login.status_code == 200, login.text
    sid = login.json()["token"]

    context = ssl.create_default_context(cafile=CERT)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    client = Client(secure.ws_url(app["key"]), ssl=context)
    try:
        assert is_uuid4(client.socket_id), client.socket_id
        client.subscribe("tls")
        sent = call(
            "POST",
            "events",
            params={"sid": sid},
            json={"channel": "tls", "data": "over tls"},
        )
        assert sent.status_code == 200, sent.text
        got = client.expect("message", "tls")
        assert got["data"] == "over tls", got
    finally:
        client.close()

    # plain WebSocket on the TLS port gets no WebSocket handshake
    with pytest.raises((InvalidHandshake, OSError)):
        with connect(
            "ws://127.0.0.1:%d/%s" % (secure.server_port, app["key"]),
            open_timeout=WAIT_SECONDS,
        ) as ws:
            ws.recv(timeout=WAIT_SECONDS)


def test_wss_refuses_an_untrusted_client_context(start_server):
    """Verification is really on: a context without the sample CA fails."""
    secure = start_server(
        env={
            "SERVER_SSL": "1",
            "SERVER_SSL_KEY": KEY,
            "SERVER_SSL_CER": CERT,
        }
    )
    app = AppClient(secure)
    context = ssl.create_default_context()  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(secure.ws_url(app.key), ssl=context, open_timeout=WAIT_SECONDS)


def test_unknown_key_close_code_seen_by_websockets_client(app):
    """websockets sees the server's own close frames too (unknown key, via a client)."""
    with connect(
        app.server.ws_url(secrets.token_hex(32)), open_timeout=WAIT_SECONDS
    ) as ws:
        message = json.loads(ws.recv(timeout=WAIT_SECONDS))
        assert message == {
            "event": "pusher:error",
            "channel": "",
            "data": {"code": 4001, "message": message["data"]["message"]},
        }, message
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_SECONDS)
    assert (
        closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    ), "expected a close frame with 4001, got %r" % (closed.value,)


# -- slow readers ------------------------------------------------------------------


def test_slow_reader_is_dropped_and_others_keep_receiving(start_server):
    """A socket that never reads is cut off at the send buffer limit, alone."""
    server = start_server(env={"PUSHI_MAX_SEND_BUFFER": "65536"})
    app = AppClient(server)
    slow = RawSocket(port_of(server))
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_id = slow.open(app.key)
    slow.send_message({"event": "pusher:subscribe", "data": {"channel": "flood"}})
    assert slow.message()["event"] == "pusher_internal:subscription_succeeded"
    healthy = app.socket()
    healthy.subscribe("flood")
    payload = "x" * 32 * 1024
    dropped, publishes = False, 0
    while not dropped and publishes < 300:  # 300 x 32 KiB: past any kernel buffer
        publishes += 1
        app.publish("flood", payload, persist=False)
        assert healthy.expect("message", "flood")["data"] == payload
        sockets = app.request("GET", "sockets").json()["sockets"]
        dropped = slow_id not in {entry["socket_id"] for entry in sockets}
    assert dropped, "the slow reader was still connected after %d publishes" % publishes
    app.publish("flood", "after", persist=False)
    assert healthy.expect("message", "flood")["data"] == "after"
    slow.close()
