"""Every WebSocket input is bounded before it is buffered (issue 7, protocol §1).

Raw sockets against the real server: a frame header declaring more than
`PUSHI_MAX_MESSAGE` (alone or as the running total of a fragmented message) is
answered with close 1009 at once, before its payload; a handshake past 16 KiB or
100 header lines gets 431; a `Sec-WebSocket-Key` that is not base64 of 16 bytes
gets 400. Each bound is tried just under (served) and just over (refused).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest
import wsproto.frame_protocol as fp
from conftest import WAIT_SECONDS, AppClient, Server, rss_kib

LIMIT = 1024
""" PUSHI_MAX_MESSAGE of the private server """

MAX_HANDSHAKE = 16 * 1024
MAX_HEADER_LINES = 100
SMALL_HANDSHAKE = 2048
SMALL_HEADER_LINES = 20
""" PUSHI_MAX_HANDSHAKE and PUSHI_MAX_HEADER_LINES of the private server """
KEY = base64.b64encode(b"0123456789abcdef").decode()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A private server whose messages are at most LIMIT bytes."""
    env = {
        "PUSHI_MAX_MESSAGE": str(LIMIT),
        "PUSHI_MAX_HANDSHAKE": str(SMALL_HANDSHAKE),
        "PUSHI_MAX_HEADER_LINES": str(SMALL_HEADER_LINES),
    }
    handle = Server(str(tmp_path_factory.mktemp("bounds")), env).start()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def small_app(small) -> AppClient:
    return AppClient(small)


def head(key: str, extra: list[str] | None = None, key_lines=None) -> bytes:
    """A WebSocket handshake for the app `key`, with extra header lines."""
    lines = [
        "GET /%s HTTP/1.1" % key,
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]
    lines += ["Sec-WebSocket-Key: " + KEY] if key_lines is None else key_lines
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def padded_head(key: str, size: int) -> bytes:
    """A handshake of exactly `size` bytes (a padding header makes up the rest)."""
    bare = len(head(key, ["X-Pad: "]))
    assert size >= bare
    data = head(key, ["X-Pad: " + "a" * (size - bare)])
    assert len(data) == size
    return data


class Raw:
    """A raw TCP client: handshake bytes out, server frames decoded by wsproto."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.server_port))
        self.sock.settimeout(WAIT_SECONDS)
        self.rest = b""
        self.decoder = fp.FrameProtocol(client=True, extensions=[])
        self.encoder = fp.FrameProtocol(client=True, extensions=[])

    def handshake(self, data: bytes) -> int:
        """Sends a handshake and returns the answer's status code."""
        self.sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed before an answer: %r" % answer
            answer += chunk
        answer, self.rest = answer.split(b"\r\n\r\n", 1)
        return int(answer.split(b" ", 2)[1])

    def open(self, app: AppClient) -> None:
        """A valid handshake, then the connection_established message."""
        assert self.handshake(head(app.key)) == 101
        assert self.message()["event"] == "pusher:connection_established"

    def frames(self):
        """Server frames, read as they come (TimeoutError past the wait)."""
        self.decoder.receive_bytes(self.rest)
        self.rest = b""
        while True:
            yield from self.decoder.received_frames()
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.decoder.receive_bytes(chunk)

    def message(self) -> dict:
        """The next text message, decoded."""
        for frame in self.frames():
            if frame.opcode is fp.Opcode.TEXT:
                assert frame.message_finished
                return json.loads(frame.payload)
        raise AssertionError("connection closed before a message")

    def close_code(self) -> int:
        """Reads until the server's close frame and returns its code."""
        for frame in self.frames():
            if frame.opcode is fp.Opcode.CLOSE:
                return frame.payload[0]
        raise AssertionError("connection closed without a close frame")

    def closed(self) -> bool:
        """Whether the server hangs up (EOF or reset) within the wait."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def send_text(self, text: str, fin=True) -> None:
        self.sock.sendall(self.encoder.send_data(text, fin=fin))

    def header(self, opcode: int, length: int, fin=True) -> None:
        """A masked frame header declaring `length` bytes, and no payload."""
        first = (0x80 if fin else 0) | opcode
        if length <= 125:
            data = struct.pack("!BB", first, 0x80 | length)
        elif length <= 0xFFFF:
            data = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            data = struct.pack("!BBQ", first, 0x80 | 127, length)
        self.sock.sendall(data + os.urandom(4))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(closing):
    """Raw clients, closed after the test."""

    def open_raw(server: Server) -> Raw:
        client = Raw(server)
        closing.append(client)
        return client

    return open_raw


def ping_of(size: int) -> str:
    """A `pusher:ping` message of exactly `size` bytes."""
    bare = len(json.dumps({"event": "pusher:ping", "data": {"pad": ""}}))
    text = json.dumps({"event": "pusher:ping", "data": {"pad": "x" * (size - bare)}})
    assert len(text) == size
    return text


# -- message size ------------------------------------------------------------------


def test_message_at_the_limit_is_served(small, small_app, raw):
    client = raw(small)
    client.open(small_app)
    client.send_text(ping_of(LIMIT))
    assert client.message()["event"] == "pusher:pong"


def test_frame_header_over_the_limit_closes_1009_before_its_payload(
    small, small_app, raw
):
    client = raw(small)
    client.open(small_app)
    client.header(0x1, LIMIT + 1)  # no payload byte follows
    assert client.close_code() == 1009


def test_fragments_up_to_the_limit_are_served(small, small_app, raw):
    client = raw(small)
    client.open(small_app)
    text = ping_of(LIMIT)
    third = LIMIT // 3
    client.send_text(text[:third], fin=False)
    client.send_text(text[third : 2 * third], fin=False)
    client.send_text(text[2 * third :], fin=True)
    assert client.message()["event"] == "pusher:pong"


def test_fragmented_total_over_the_limit_closes_1009_at_the_header(
    small, small_app, raw
):
    client = raw(small)
    client.open(small_app)
    text = ping_of(LIMIT)
    client.send_text(text[: LIMIT - 10], fin=False)
    client.header(0x0, 11, fin=True)  # the total would be LIMIT + 1
    assert client.close_code() == 1009


def test_huge_declared_length_closes_at_once_without_memory_growth(
    small, small_app, raw
):
    warm = raw(small)  # the first connection's one-off allocations
    warm.open(small_app)
    warm.send_text(ping_of(LIMIT))
    assert warm.message()["event"] == "pusher:pong"
    before = rss_kib(small)
    client = raw(small)
    client.open(small_app)
    started = time.monotonic()
    client.header(0x1, 2**40)
    try:  # a trickle of payload, less than the limit: only the header can close
        for _ in range(8):
            client.sock.sendall(b"x" * (LIMIT // 16))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert client.close_code() == 1009
    assert time.monotonic() - started < 2.0
    assert client.closed()
    grown = rss_kib(small) - before
    assert grown < 2048, "server RSS grew by %d KiB" % grown
    # the server still serves others
    warm.send_text(ping_of(LIMIT))
    assert warm.message()["event"] == "pusher:pong"


def test_huge_declared_length_then_a_flood_is_not_read(small, small_app, raw):
    warm = raw(small)
    warm.open(small_app)
    warm.send_text(ping_of(LIMIT))
    assert warm.message()["event"] == "pusher:pong"
    before = peak = rss_kib(small)
    client = raw(small)
    client.open(small_app)
    client.header(0x1, 2**40)
    chunk, sent = b"x" * 65536, 0
    with pytest.raises(OSError):  # reset or broken pipe: the server hung up
        while sent < 64 << 20:
            client.sock.sendall(chunk)
            sent += len(chunk)
            peak = max(peak, rss_kib(small))
    peak = max(peak, rss_kib(small))
    assert peak - before < 2048, "server RSS grew by %d KiB" % (peak - before)
    warm.send_text(ping_of(LIMIT))
    assert warm.message()["event"] == "pusher:pong"


def test_default_limit_refuses_a_huge_header_on_the_shared_server(server, app, raw):
    client = raw(server)
    client.open(app)
    client.header(0x1, 2**40)
    assert client.close_code() == 1009


# -- handshake ---------------------------------------------------------------------


def test_handshake_of_16_kib_is_served(app, raw, server):
    client = raw(server)
    assert client.handshake(padded_head(app.key, MAX_HANDSHAKE)) == 101
    assert client.message()["event"] == "pusher:connection_established"


def test_handshake_over_16_kib_gets_431_and_is_closed(app, raw, server):
    client = raw(server)
    assert client.handshake(padded_head(app.key, MAX_HANDSHAKE + 1)) == 431
    assert client.closed()


def test_endless_headers_get_431_without_waiting_for_their_end(app, raw, server):
    client = raw(server)
    data = head(app.key)[:-2]  # the blank line never comes
    data += b"X-Pad: " + b"a" * (MAX_HANDSHAKE + 100) + b"\r\n"
    assert client.handshake(data) == 431
    assert client.closed()


def test_handshake_of_100_header_lines_is_served(app, raw, server):
    base = head(app.key).count(b"\r\n") - 2  # the request line, the blank line
    extra = ["X-Line-%d: a" % i for i in range(MAX_HEADER_LINES - base)]
    client = raw(server)
    assert client.handshake(head(app.key, extra)) == 101
    assert client.message()["event"] == "pusher:connection_established"


def test_handshake_of_101_header_lines_gets_431(app, raw, server):
    base = head(app.key).count(b"\r\n") - 2
    extra = ["X-Line-%d: a" % i for i in range(MAX_HEADER_LINES + 1 - base)]
    client = raw(server)
    assert client.handshake(head(app.key, extra)) == 431
    assert client.closed()


@pytest.mark.parametrize("over", [0, 1], ids=["at", "over"])
def test_handshake_bounds_follow_their_variables(small, small_app, raw, over):
    client = raw(small)
    status = client.handshake(padded_head(small_app.key, SMALL_HANDSHAKE + over))
    assert status == (431 if over else 101)
    base = head(small_app.key).count(b"\r\n") - 2
    extra = ["X-Line-%d: a" % i for i in range(SMALL_HEADER_LINES + over - base)]
    client = raw(small)
    assert client.handshake(head(small_app.key, extra)) == (431 if over else 101)


# -- Sec-WebSocket-Key -------------------------------------------------------------


@pytest.mark.parametrize(
    "key_lines",
    [
        ["Sec-WebSocket-Key: " + base64.b64encode(b"a" * 15).decode()],
        ["Sec-WebSocket-Key: " + base64.b64encode(b"a" * 17).decode()],
        ["Sec-WebSocket-Key: " + "!" * 22 + "=="],
        ["Sec-WebSocket-Key: " + "not a key"],
        ["Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Key: " + KEY],
    ],
    ids=["15-bytes", "17-bytes", "not-base64", "short", "twice"],
)
def test_bad_websocket_key_gets_400_and_is_closed(app, raw, server, key_lines):
    client = raw(server)
    assert client.handshake(head(app.key, key_lines=key_lines)) == 400
    assert client.closed()


def test_websocket_key_of_16_bytes_is_served(app, raw, server):
    key = base64.b64encode(os.urandom(16)).decode()
    client = raw(server)
    status = client.handshake(head(app.key, key_lines=["Sec-WebSocket-Key: " + key]))
    assert status == 101
    assert client.message()["event"] == "pusher:connection_established"
