"""The REST port bounds what it reads before it buffers it (issue 7), plain and TLS.

Raw sockets against a private server with a small `PUSHI_MAX_MESSAGE`: a body declared
over the limit is refused from its header (the test never sends it), a chunked body
is cut off while it is read with the server's memory watched, the request line and
headers are capped (414 / 431), and what is just under each limit is served. A refused
connection answers in Appier's error shape and then closes (end of stream).
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import time

import pytest
from conftest import SSL_DIR, AppClient, Server, parse_response, rss_kib

LIMIT = 4096
WAIT = 5.0
LINE_LIMIT = 8192
HEADERS_LIMIT = 16384
HEADERS_COUNT = 100


@pytest.fixture(scope="module", params=["http", "https"])
def bounded(request, tmp_path_factory):
    """A server with PUSHI_MAX_MESSAGE=4096, over plain HTTP or TLS."""
    env = dict(PUSHI_MAX_MESSAGE=str(LIMIT))
    if request.param == "https":
        env.update(
            APP_SSL="1",
            APP_SSL_KEY=os.path.join(SSL_DIR, "server.key"),
            APP_SSL_CER=os.path.join(SSL_DIR, "server.crt"),
        )
    handle = Server(str(tmp_path_factory.mktemp("bounds")), env).start()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def bounded_app(bounded) -> AppClient:
    return AppClient(bounded)


class Raw:
    """One raw HTTP/1.1 connection to the REST port (TLS when the server speaks it)."""

    def __init__(self, server: Server) -> None:
        sock = socket.create_connection(("127.0.0.1", server.app_port), timeout=WAIT)
        self.tls = server.api.startswith("https")
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        self.sock = sock
        self.received = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readable(self) -> bool:
        """Whether the server has written something (without waiting)."""
        if self.tls and self.sock.pending():
            return True
        if not select.select([self.sock], [], [], 0)[0]:
            return False
        if not self.tls:
            return True
        # TLS records that carry no data (session tickets) wake select too
        self.sock.settimeout(0)
        try:
            self.received += self.sock.recv(65536)
        except ssl.SSLWantReadError:
            return False
        except (ConnectionResetError, ssl.SSLError):
            pass
        finally:
            self.sock.settimeout(WAIT)
        return True

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return b""
        except socket.timeout:
            raise AssertionError(
                "expected an answer within %s s, got only %r"
                % (WAIT, self.received[:300])
            ) from None

    def response(self) -> tuple[int, dict, bytes]:
        """The next response: status, headers (lower-case names), body."""
        while True:
            parsed = parse_response(self.received)
            if parsed is not None:
                status, headers, body, self.received = parsed
                return status, headers, body
            chunk = self._recv()
            if not chunk:
                raise AssertionError(
                    "expected an HTTP answer, the server closed after %r"
                    % (self.received[:300],)
                )
            self.received += chunk

    def assert_closed(self) -> None:
        """The server ends the stream (nothing more than the answer comes)."""
        extra = self.received
        while True:
            chunk = self._recv()
            if not chunk:
                break
            extra += chunk
        assert extra == b"", "expected the end of the stream, got %r" % extra[:300]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(bounded):
    opened: list[Raw] = []

    def open_raw() -> Raw:
        connection = Raw(bounded)
        opened.append(connection)
        return connection

    yield open_raw
    for connection in opened:
        connection.close()


def assert_refused(status, headers, body, code: int, what: str, session=None) -> dict:
    """Appier's error shape (contract §2), `X-Error-Id` and the CORS header."""
    assert status == code, "%s: expected HTTP %d, got %d %r" % (
        what,
        code,
        status,
        body[:300],
    )
    decoded = json.loads(body)
    assert decoded.get("result") == "error" and decoded.get("code") == code, decoded
    for field in ("name", "message", "uid"):
        assert isinstance(decoded.get(field), str) and decoded[field], decoded
    assert "session" in decoded, decoded
    assert decoded["session"] == session, (what, decoded)
    assert headers.get("x-error-id") == decoded["uid"], (headers, decoded)
    assert headers.get("access-control-allow-origin") == "*", headers
    assert "json" in headers.get("content-type", ""), headers
    return decoded


def post_head(path: str, length: int | None = None, extra: bytes = b"") -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head = head % path.encode()
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + extra + b"\r\n"


def event_body(size: int) -> bytes:
    """A `POST /events` JSON body of exactly `size` bytes."""
    base = json.dumps(dict(channel="bounds", event="message", data="")).encode()
    body = json.dumps(
        dict(channel="bounds", event="message", data="x" * (size - len(base)))
    ).encode()
    assert len(body) == size
    return body


# -- bodies ----------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_refused_from_the_header(raw, bounded_app):
    """1 GiB declared, 3 bytes sent: 413 at once (the body is never needed), close."""
    connection = raw()
    started = time.monotonic()
    connection.send(post_head("/events?sid=" + bounded_app.sid, 1 << 30) + b'{"a')
    status, headers, body = connection.response()
    elapsed = time.monotonic() - started
    assert_refused(status, headers, body, 413, "1 GiB declared", bounded_app.sid)
    assert elapsed < 2, "the 413 took %.1f s: the server waited for the body" % elapsed
    assert headers.get("connection") == "close", headers
    connection.assert_closed()


def test_body_at_the_limit_is_served_and_one_byte_more_refused(raw, bounded_app):
    connection = raw()
    path = "/events?sid=" + bounded_app.sid
    for _ in range(2):  # the connection stays usable after a served request
        connection.send(post_head(path, LIMIT) + event_body(LIMIT))
        status, headers, body = connection.response()
        assert status == 200, (status, body[:300])
    connection.send(post_head(path, LIMIT + 1))
    status, headers, body = connection.response()
    assert_refused(status, headers, body, 413, "limit + 1 declared", bounded_app.sid)
    connection.assert_closed()


def test_chunked_body_at_the_limit_is_served(raw, bounded_app):
    connection = raw()
    body = event_body(LIMIT)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, LIMIT, 1000)
    )
    head = post_head(
        "/events?sid=" + bounded_app.sid, extra=b"Transfer-Encoding: chunked\r\n"
    )
    connection.send(head + chunks + b"0\r\n\r\n")
    status, headers, answer = connection.response()
    assert status == 200, (status, answer[:300])


def test_chunked_body_past_the_limit_is_cut_off_while_read(raw, bounded, bounded_app):
    """64 MiB of chunks offered: 413 once the limit is passed, memory stays flat.

    The body never ends (no last chunk), so any answer at all is the server's
    cut-off while reading it; how many chunks the client got to send first
    depends only on how busy the machine is (after the refusal the server reads
    and drops what still comes), so it is not asserted."""
    connection = raw()
    connection.send(
        post_head(
            "/events?sid=" + bounded_app.sid, extra=b"Transfer-Encoding: chunked\r\n"
        )
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    before = peak = rss_kib(bounded)
    sent = 0
    try:
        while sent < 1024 and not connection.readable():
            connection.send(chunk)
            sent += 1
            if sent % 16 == 0:
                peak = max(peak, rss_kib(bounded))
    except OSError:  # reset, broken pipe, TLS error, timeout: the answer tells
        pass
    peak = max(peak, rss_kib(bounded))
    grown = (peak - before) // 1024
    assert grown < 16, "the server grew by %d MiB for a refused body" % grown
    status, headers, body = connection.response()
    assert_refused(
        status, headers, body, 413, "chunked past the limit", bounded_app.sid
    )
    connection.assert_closed()


# -- request line and headers ----------------------------------------------------------


def get_head(extra: bytes = b"", path: bytes = b"/health/live") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, extra)


def test_headers_just_under_the_limits_are_served(raw):
    connection = raw()
    lines = HEADERS_COUNT - 2  # Host and one big header
    small = b"".join(b"X-Small-%d: v\r\n" % i for i in range(lines))
    big = b"X-Big: " + b"b" * (HEADERS_LIMIT - 1024 - len(small)) + b"\r\n"
    path = b"/health/live?" + b"q" * (LINE_LIMIT - 100)
    connection.send(get_head(small + big, path))
    status, headers, body = connection.response()
    assert status == 200, (status, body[:300])


@pytest.mark.parametrize(
    "what,code,request_bytes",
    [
        ("one 20 KiB header", 431, get_head(b"X-Big: " + b"b" * 20000 + b"\r\n")),
        (
            "101 header lines",
            431,
            get_head(b"".join(b"X-%d: v\r\n" % i for i in range(HEADERS_COUNT))),
        ),
        ("a 9 KiB request line", 414, get_head(path=b"/?" + b"q" * 9000)),
    ],
    ids=["big-header", "many-headers", "long-line"],
)
def test_oversized_request_head_is_refused(raw, what, code, request_bytes):
    connection = raw()
    connection.send(request_bytes)
    status, headers, body = connection.response()
    assert_refused(status, headers, body, code, what)
    connection.assert_closed()


def test_header_flood_is_cut_off_while_read(raw, bounded):
    """Header lines sent without end: 431 once 16 KiB are in, memory stays flat."""
    connection = raw()
    connection.send(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
    before = rss_kib(bounded)
    sent = 0
    try:
        while sent < 4096 and not connection.readable():
            connection.send(line * 16)
            sent += 1
    except OSError:  # reset, broken pipe, TLS error, timeout: the answer tells
        pass
    grown = (rss_kib(bounded) - before) // 1024
    status, headers, body = connection.response()
    assert_refused(status, headers, body, 431, "header flood")
    assert sent < 4096, "64 MiB of headers were read before the answer"
    assert grown < 16, "the server grew by %d MiB for a header flood" % grown
    connection.assert_closed()


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server with its request-head limits set lower through the environment."""
    env = dict(
        PUSHI_MAX_REQUEST_LINE="1024",
        PUSHI_MAX_REQUEST_HEADERS="4096",
        PUSHI_MAX_HEADER_LINES="20",
    )
    handle = Server(str(tmp_path_factory.mktemp("tight")), env).start()
    yield handle
    handle.stop()


@pytest.mark.parametrize(
    "what,code,request_bytes",
    [
        (
            "a request line under 1 KiB",
            200,
            get_head(path=b"/health/live?" + b"q" * 900),
        ),
        ("a 1.1 KiB request line", 414, get_head(path=b"/health/live?" + b"q" * 1100)),
        ("headers under 4 KiB", 200, get_head(b"X-Big: " + b"b" * 3500 + b"\r\n")),
        ("4.1 KiB of headers", 431, get_head(b"X-Big: " + b"b" * 4200 + b"\r\n")),
        (
            "19 header lines",
            200,
            get_head(b"".join(b"X-%d: v\r\n" % i for i in range(18))),
        ),
        (
            "21 header lines",
            431,
            get_head(b"".join(b"X-%d: v\r\n" % i for i in range(20))),
        ),
    ],
    ids=[
        "line-under",
        "line-over",
        "headers-under",
        "headers-over",
        "lines-under",
        "lines-over",
    ],
)
def test_request_head_limits_follow_their_variables(tight, what, code, request_bytes):
    connection = Raw(tight)
    try:
        connection.send(request_bytes)
        status, headers, body = connection.response()
        if code == 200:
            assert status == 200, "%s: expected 200, got %d %r" % (
                what,
                status,
                body[:200],
            )
        else:
            assert_refused(status, headers, body, code, what)
            connection.assert_closed()
    finally:
        connection.close()
